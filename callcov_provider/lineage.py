"""
OpenLineage facets of the CallCov operators (the ``openlineage`` extra).

The operators' ``get_openlineage_facets_on_complete`` are one line each, calling into this module; the
OpenLineage imports are inside the functions, so nothing here is needed unless the openlineage provider
is installed and calls them.

Naming (the OpenLineage dataset naming conventions):

- a recording given as a local path: namespace ``file``, name the absolute path;
- a recording given as ``audio_url``: namespace ``scheme://host[:port]``, name the path; the query
  string (often a signed token) and any credentials in the URL are dropped;
- a CallCov analysis: namespace ``callcov://<API host>[:port]`` (the account's API), name
  ``analyses/<id>``; the listing reads the collection, named ``analyses``;
- a listing's ``output_uri``: namespace ``scheme://bucket`` (``file`` for local files), name the path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: The name of the analyses collection in a CallCov namespace; one analysis is ``analyses/<id>``.
ANALYSES = "analyses"


def callcov_namespace(base_url: str) -> str:
    """The namespace of a CallCov API: ``callcov://host[:port]`` (no credentials, path or query)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"callcov://{host}:{parts.port}" if parts.port else f"callcov://{host}"


def recording_dataset_name(audio_file: str | None, audio_url: str | None) -> tuple[str, str] | None:
    """``(namespace, name)`` of a recording, or ``None`` when there is none."""
    if audio_file:
        return "file", os.path.abspath(str(audio_file))
    if audio_url:
        parts = urlsplit(str(audio_url))
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{parts.scheme}://{netloc}", parts.path or "/"
    return None


def uri_dataset_name(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of an object storage URI: ``file`` and the path for local files."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", os.path.abspath(parts.path) if parts.path else uri
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}", parts.path.lstrip("/")


def _dataset(namespace: str, name: str) -> Any:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=namespace, name=name)


def _lineage(inputs: list[Any], outputs: list[Any]) -> OperatorLineage[Any, Any]:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=inputs, outputs=outputs)


def submission_lineage(
    base_url: str,
    recordings: Iterable[tuple[str | None, str | None]],
    analysis_ids: Iterable[str],
) -> OperatorLineage[Any, Any]:
    """
    The lineage of a submission (one recording or a batch): recordings in, analyses out.

    The batch operator calls this with its recordings and the ids it created.

    :param base_url: The API base URL (its host names the analyses' namespace).
    :param recordings: ``(audio_file, audio_url)`` per recording.
    :param analysis_ids: The analyses created.
    """
    inputs = []
    seen: set[tuple[str, str]] = set()
    for audio_file, audio_url in recordings:
        named = recording_dataset_name(audio_file, audio_url)
        if named is not None and named not in seen:
            seen.add(named)
            inputs.append(_dataset(*named))
    namespace = callcov_namespace(base_url)
    outputs = [_dataset(namespace, f"{ANALYSES}/{aid}") for aid in dict.fromkeys(analysis_ids) if aid]
    return _lineage(inputs, outputs)


def listing_lineage(base_url: str, output_uri: str | None) -> OperatorLineage[Any, Any]:
    """The lineage of a listing: the analyses collection in, the ``output_uri`` file (if any) out."""
    inputs = [_dataset(callcov_namespace(base_url), ANALYSES)]
    outputs = [_dataset(*uri_dataset_name(output_uri))] if output_uri else []
    return _lineage(inputs, outputs)
