"""
Idempotency keys that follow what is submitted.

A submission's key names the task instance that sends it *and* the recording it sends: a retry, a cleared
task or a re-signed URL for the same recording replays the analysis it already created, while a recording
that was replaced gets a new analysis instead of the API's 409 ``idempotency_conflict``.

The recording is identified by its bytes (a local file) or by its URL without the query string,
fragment and user info (a presigned URL is re-signed on every run, yet names the same object).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

#: Bytes read at a time while hashing a recording (memory stays flat whatever its size).
HASH_CHUNK_BYTES = 1 << 20
#: Hex digits of the digest kept in a key (160 bits).
KEY_DIGEST_CHARS = 40
_KEY_PREFIX = "airflow-"


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:KEY_DIGEST_CHARS]


def url_identity(url: str) -> str:
    """The URL of a recording without what changes between signings: query, fragment and user info."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path, "", ""))


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def recording_identity(
    *, audio_file: str | os.PathLike[str] | None = None, audio_url: str | None = None
) -> str:
    """
    What identifies the recording of a submission: ``file:<sha256 of its bytes>`` or ``url:<url identity>``.

    :raises OSError: when ``audio_file`` cannot be read (checked, with a clearer message, before sending).
    """
    if audio_file is not None:
        return f"file:{file_digest(audio_file)}"
    return f"url:{url_identity(audio_url or '')}"


def submission_key(*scope: object, recording: str) -> str:
    """
    The idempotency key of one submission: the same for the same scope and recording, on every try.

    :param scope: What names the submitter, e.g. DAG id, task id, run id, map index and the call's ids.
        The try number is left out on purpose, so no retry creates a second analysis.
    :param recording: :func:`recording_identity` of what is sent.
    """
    return _KEY_PREFIX + _digest([*(str(part) for part in scope), recording])


def successor_key(key: str, reason: str) -> str:
    """A new key derived from ``key``, for a resubmission the old key cannot carry (``reason`` says why)."""
    return _KEY_PREFIX + _digest([key, reason])
