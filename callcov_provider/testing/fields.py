"""
Checking a submission's fields and the list endpoint's query parameters, answered the documented ways:
FastAPI-style ``detail`` lists, pydantic v2 items for a body (the current generation), v1 items for a query
(the listing reference).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from callcov_provider.exceptions import safe_url
from callcov_provider.models import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    LIST_LIMIT_MIN,
    AnalysisStatus,
    CallDirection,
    parse_iso8601,
)
from callcov_provider.testing import errors, safejson

#: Status of an invalid submission body: the current generation documents ``400 Bad Request`` with a
#: ``detail`` list.
BODY_ERROR_STATUS = 400
#: The largest ``offset`` (a signed 64-bit integer, as the database takes it).
MAX_OFFSET = 2**63 - 1
#: Status of an invalid query parameter: the listing reference documents ``422``.
QUERY_ERROR_STATUS = 422
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class Submission:
    """The checked fields of a submission."""

    agent_id: str
    contact_id: str
    call_direction: str | None
    call_timestamp: str | None
    metadata: dict[str, Any] | None
    webhook_url: str | None
    audio_url: str | None

    def fingerprint(self, audio_sha256: str | None) -> str:
        """A digest of the request: tells a replay from a different request with the same key."""
        payload = {**asdict(self), "audio_sha256": audio_sha256}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _echo(fields: Mapping[str, Any], kind: str) -> Any:
    """The ``input`` of a missing-field item: the JSON body, its ``audio_url`` redacted (it may be signed)."""
    if kind != "json":
        return None
    echoed = dict(fields)
    if isinstance(echoed.get("audio_url"), str):
        echoed["audio_url"] = safe_url(echoed["audio_url"])
    return echoed


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_submission(fields: Mapping[str, Any], *, has_file: bool, kind: str) -> Submission:
    """
    Check the fields of a submission.

    :param fields: Form fields (strings) or the JSON object.
    :param has_file: Whether a multipart upload carried an ``audio_file``.
    :param kind: ``multipart`` or ``json``: which field is reported missing when there is no audio.
    :raises ApiError: 400 with every problem in a ``detail`` list.
    """
    problems: list[dict[str, Any]] = []

    def required_id(name: str) -> str:
        value = fields.get(name)
        if value is None:
            problems.append(errors.missing(name, _echo(fields, kind)))
            return ""
        if not isinstance(value, str):
            problems.append(errors.body_item("string_type", name, "Input should be a valid string", value))
            return ""
        if not value.strip():
            problems.append(
                errors.body_item(
                    "string_too_short", name, "String should have at least 1 character", value, min_length=1
                )
            )
        elif len(value) > MAX_ID_LENGTH:
            problems.append(
                errors.body_item(
                    "string_too_long",
                    name,
                    f"String should have at most {MAX_ID_LENGTH} characters",
                    value,
                    max_length=MAX_ID_LENGTH,
                )
            )
        return value.strip()

    def optional_text(name: str) -> str | None:
        value = fields.get(name)
        if _blank(value):
            return None
        if not isinstance(value, str):
            problems.append(errors.body_item("string_type", name, "Input should be a valid string", value))
            return None
        return value.strip()

    agent_id = required_id("agent_id")
    contact_id = required_id("contact_id")

    direction = optional_text("call_direction")
    allowed = [d.value for d in CallDirection]
    if direction is not None and direction.lower() not in allowed:
        problems.append(
            errors.body_item(
                "enum",
                "call_direction",
                "Input should be 'inbound' or 'outbound'",
                direction,
                expected="'inbound' or 'outbound'",
            )
        )
    direction = direction.lower() if direction else None

    timestamp = optional_text("call_timestamp")
    if timestamp is not None:
        try:
            parse_iso8601(timestamp)
        except ValueError:
            problems.append(
                errors.body_item(
                    "datetime_from_date_parsing",
                    "call_timestamp",
                    "Input should be a valid datetime, expected an ISO 8601 timestamp",
                    timestamp,
                )
            )

    metadata: dict[str, Any] | None = None
    raw_metadata = fields.get("metadata")
    if isinstance(raw_metadata, str) and raw_metadata.strip():
        try:
            raw_metadata = safejson.loads(raw_metadata)
        except ValueError as err:
            problems.append(
                errors.body_item("json_invalid", "metadata", f"Invalid JSON: {err}", raw_metadata)
            )
            raw_metadata = None
    if isinstance(raw_metadata, dict):
        metadata = raw_metadata
    elif not _blank(raw_metadata):
        problems.append(
            errors.body_item("dict_type", "metadata", "Input should be a valid dictionary", raw_metadata)
        )

    webhook_url = optional_text("webhook_url")
    if webhook_url is not None and not _http_url(webhook_url):
        problems.append(
            errors.body_item(
                "url_scheme", "webhook_url", "URL scheme should be 'http' or 'https'", webhook_url
            )
        )

    audio_url = optional_text("audio_url")
    if audio_url is not None and not _http_url(audio_url):
        problems.append(
            errors.body_item(
                "url_scheme", "audio_url", "URL scheme should be 'http' or 'https'", "<redacted>"
            )
        )
    if has_file and audio_url is not None:
        problems.append(
            errors.body_item(
                "value_error", "audio_url", "Send either audio_file or audio_url, not both", "<redacted>"
            )
        )
    if not has_file and audio_url is None and not any(p["loc"][-1] == "audio_url" for p in problems):
        problems.append(
            errors.missing("audio_file" if kind == "multipart" else "audio_url", _echo(fields, kind))
        )
    if problems:
        raise errors.validation(BODY_ERROR_STATUS, problems)
    return Submission(agent_id, contact_id, direction, timestamp, metadata, webhook_url, audio_url)


@dataclass(frozen=True)
class ListQuery:
    """The checked parameters of ``GET /analysis/``."""

    status: AnalysisStatus | None
    agent_id: str | None
    contact_id: str | None
    search: str | None
    limit: int
    offset: int


def _int_param(raw: str | None, name: str, default: int, problems: list[dict[str, Any]]) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        problems.append(errors.query_item(name, "value is not a valid integer", "type_error.integer"))
        return default


def check_list_query(params: Mapping[str, str]) -> ListQuery:
    """
    Check the list endpoint's query parameters.

    :raises ApiError: 422 with the listing reference's ``detail`` items, e.g.
        ``value_error.number.not_le`` for ``limit`` over 1000.
    """
    problems: list[dict[str, Any]] = []
    limit = _int_param(params.get("limit"), "limit", LIST_LIMIT_DEFAULT, problems)
    offset = _int_param(params.get("offset"), "offset", 0, problems)
    if limit > LIST_LIMIT_MAX:
        problems.append(
            errors.query_item(
                "limit",
                f"ensure this value is less than or equal to {LIST_LIMIT_MAX}",
                "value_error.number.not_le",
            )
        )
    elif limit < LIST_LIMIT_MIN:
        problems.append(
            errors.query_item(
                "limit",
                f"ensure this value is greater than or equal to {LIST_LIMIT_MIN}",
                "value_error.number.not_ge",
            )
        )
    if offset > MAX_OFFSET:
        problems.append(
            errors.query_item(
                "offset",
                f"ensure this value is less than or equal to {MAX_OFFSET}",
                "value_error.number.not_le",
            )
        )
    elif offset < 0:
        problems.append(
            errors.query_item(
                "offset", "ensure this value is greater than or equal to 0", "value_error.number.not_ge"
            )
        )
    status: AnalysisStatus | None = None
    raw_status = params.get("status_filter")
    if raw_status:
        try:
            status = AnalysisStatus(raw_status)
        except ValueError:
            permitted = ", ".join(f"'{s.value}'" for s in AnalysisStatus)
            problems.append(
                errors.query_item(
                    "status_filter",
                    f"value is not a valid enumeration member; permitted: {permitted}",
                    "type_error.enum",
                )
            )
    if problems:
        raise errors.validation(QUERY_ERROR_STATUS, problems)
    return ListQuery(
        status=status,
        agent_id=params.get("agent_id") or None,
        contact_id=params.get("contact_id") or None,
        search=params.get("search") or None,
        limit=limit,
        offset=offset,
    )
