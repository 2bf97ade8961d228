"""
Local checks of request arguments, made before any byte is sent.

Each check raises :class:`~callcov_provider.exceptions.InvalidRequestError` (or its
:class:`~callcov_provider.exceptions.PayloadTooLargeError` subclass) naming the field. The limits are the
documented ones from :mod:`callcov_provider.models`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callcov_provider.exceptions import InvalidRequestError, PayloadTooLargeError, safe_url
from callcov_provider.filters import ListFilters
from callcov_provider.formats import AUDIO_FORMATS, MIB, AudioFormat
from callcov_provider.models import LIST_LIMIT_MAX, LIST_LIMIT_MIN, CallDirection, parse_iso8601


@dataclass(frozen=True)
class AudioFile:
    """A checked local audio file: its path, format and size."""

    path: Path
    audio_format: AudioFormat
    size: int


def require_id(value: Any, field: str) -> str:
    """Return ``value`` as a stripped, non-empty string, or raise naming ``field``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{field} is required and must be a non-empty string", field=field)
    return value.strip()


def check_audio_file(audio_file: str | os.PathLike[str]) -> AudioFile:
    """
    Check that ``audio_file`` is a regular, non-empty file of a supported format within its size limit.

    :raises InvalidRequestError: for a missing path, a directory, an empty file or an unknown extension.
    :raises PayloadTooLargeError: for a file over its format's documented limit.
    """
    path = Path(audio_file)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidRequestError(f"audio_file {str(path)!r} does not exist", field="audio_file") from None
    except OSError as err:
        raise InvalidRequestError(
            f"audio_file {str(path)!r} cannot be read: {err.strerror}", field="audio_file"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidRequestError(f"audio_file {str(path)!r} is not a regular file", field="audio_file")
    extension = path.suffix.lower()
    audio_format = AUDIO_FORMATS.get(extension)
    if audio_format is None:
        supported = ", ".join(sorted(AUDIO_FORMATS))
        raise InvalidRequestError(
            f"audio_file {path.name!r} has unsupported extension {extension or '(none)'!r}; "
            f"supported: {supported}",
            field="audio_file",
            code="invalid_file_format",
        )
    if info.st_size == 0:
        raise InvalidRequestError(f"audio_file {str(path)!r} is empty", field="audio_file")
    if info.st_size > audio_format.max_bytes:
        raise PayloadTooLargeError(
            f"audio_file {path.name!r} is {info.st_size / MIB:.1f} MiB; "
            f"{audio_format.name.upper()} files may be at most {audio_format.max_bytes // MIB} MB",
            field="audio_file",
        )
    return AudioFile(path=path, audio_format=audio_format, size=info.st_size)


def check_audio_url(audio_url: Any) -> str:
    """Check that ``audio_url`` is an absolute http(s) URL; the error never shows its query string."""
    if not isinstance(audio_url, str) or not audio_url.strip():
        raise InvalidRequestError("audio_url must be a non-empty string", field="audio_url")
    try:
        parts = urlsplit(audio_url.strip())
    except ValueError:
        raise InvalidRequestError("audio_url is not a valid URL", field="audio_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"audio_url {safe_url(audio_url)!r} must be an http:// or https:// URL", field="audio_url"
        )
    return audio_url.strip()


def check_call_direction(value: Any) -> str | None:
    """Check ``call_direction`` is ``inbound`` or ``outbound`` (or absent)."""
    if value is None:
        return None
    text = value.value if isinstance(value, CallDirection) else str(value).strip().lower()
    allowed = [d.value for d in CallDirection]
    if text not in allowed:
        raise InvalidRequestError(
            f"call_direction must be one of {', '.join(allowed)}, got {value!r}", field="call_direction"
        )
    return text


def check_call_timestamp(value: Any) -> str | None:
    """Check ``call_timestamp`` is ISO 8601 (a ``datetime`` is accepted) and return it as ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat()
    if isinstance(value, str):
        try:
            parse_iso8601(value)
        except ValueError:
            pass
        else:
            return value.strip()
    raise InvalidRequestError(
        f"call_timestamp must be an ISO 8601 timestamp such as 2024-01-15T10:30:00Z, got {value!r}",
        field="call_timestamp",
    )


def check_metadata(value: Any) -> dict[str, Any] | None:
    """Check ``metadata`` is a JSON-serialisable mapping."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError("metadata must be a mapping (a JSON object)", field="metadata")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidRequestError(f"metadata is not JSON-serialisable: {err}", field="metadata") from None
    return dict(value)


def check_webhook_url(value: Any) -> str | None:
    """Check ``webhook_url`` is an http(s) URL (or absent)."""
    if value is None:
        return None
    error = InvalidRequestError("webhook_url must be an http:// or https:// URL", field="webhook_url")
    if not isinstance(value, str):
        raise error
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        raise error from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise error
    return value.strip()


def check_idempotency_key(value: Any) -> str | None:
    """Check a caller's ``idempotency_key`` is a non-empty string of at most 255 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InvalidRequestError(
            "idempotency_key must be a non-empty string of at most 255 characters", field="idempotency_key"
        )
    return value


def check_status_filter(value: Any) -> str | None:
    """Check ``status_filter`` is one of the documented statuses (or absent)."""
    return ListFilters.check_status(value)


def check_int_range(value: Any, field: str, minimum: int, maximum: int | None = None) -> int:
    """Check ``value`` is an integer within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except (TypeError, ValueError):
            raise InvalidRequestError(f"{field} must be an integer, got {value!r}", field=field) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidRequestError(f"{field} must be {bound}, got {value}", field=field)
    return int(value)


def check_optional_filter(value: Any, field: str) -> str | None:
    """Check an optional string filter (``agent_id``, ``contact_id``, ``search``)."""
    return ListFilters.check_text(value, field)


def list_params(
    *,
    status_filter: Any = None,
    agent_id: Any = None,
    contact_id: Any = None,
    search: Any = None,
    limit: Any = 100,
    offset: Any = 0,
) -> dict[str, Any]:
    """Check the list endpoint's query parameters and return them without the absent ones."""
    filters = ListFilters.checked(
        status_filter=status_filter, agent_id=agent_id, contact_id=contact_id, search=search
    )
    return {
        **filters.params(),
        "limit": check_int_range(limit, "limit", LIST_LIMIT_MIN, LIST_LIMIT_MAX),
        "offset": check_int_range(offset, "offset", 0),
    }
