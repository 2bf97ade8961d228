"""Turn an Airflow connection into the settings the CallCov client needs, checking every field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from callcov_provider.connection_form import AUTH_TYPES as AUTH_TYPES
from callcov_provider.connection_form import ConnectionExtras
from callcov_provider.constants import DEFAULT_BASE_URL
from callcov_provider.exceptions import ConnectionConfigError, safe_url
from callcov_provider.hooks.retry import RetryPolicy

#: Every default of the connection's extras, from their one definition.
_DEFAULTS = ConnectionExtras()


@dataclass(frozen=True)
class ClientSettings:
    """
    Everything a request needs, read from one connection.

    The secret is kept out of ``repr`` so that a settings object in a log or a traceback shows nothing.
    """

    base_url: str
    api_key: str = field(repr=False)
    auth_type: str = _DEFAULTS.auth_type
    connect_timeout: float = _DEFAULTS.connect_timeout
    read_timeout: float = _DEFAULTS.read_timeout
    submit_path: str = _DEFAULTS.submit_path
    dashboard_url: str = _DEFAULTS.dashboard_url
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)

    def auth_headers(self) -> dict[str, str]:
        """The authentication header of the configured kind."""
        if self.auth_type == "bearer":
            return {"Authorization": f"Bearer {self.api_key}"}
        return {"X-API-Key": self.api_key}

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/analysis/``."""
        return self.base_url + path

    @property
    def account_fingerprint(self) -> str:
        """A short digest naming the account behind the key, safe to keep and compare (never the key)."""
        import hashlib

        return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in any output."""
        return (self.api_key,) if self.api_key else ()


def normalise_base_url(host: str | None, port: int | None = None) -> str:
    """
    Build the API base URL from a connection's ``host`` (and ``port``).

    An empty host means the public API. A host without a scheme gets ``https://``. A URL with no path
    gets the documented ``/api/v1``.

    :raises ConnectionConfigError: if the host is not a usable http(s) URL.
    """
    raw = (host or "").strip()
    if not raw:
        return DEFAULT_BASE_URL
    if "://" not in raw:
        raw = f"https://{raw}"
    try:
        parts = urlsplit(raw)
        parsed_port = parts.port
    except ValueError as err:
        raise ConnectionConfigError(
            f"connection host {safe_url(raw)!r} is not a valid URL: {err}", field="host"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in raw):
        raise ConnectionConfigError(
            f"connection host {safe_url(raw)!r} must be an http(s) URL such as {DEFAULT_BASE_URL}",
            field="host",
        )
    if parts.query or parts.username or parts.password:
        raise ConnectionConfigError(
            "connection host must not carry a query string or credentials; put the key in the password",
            field="host",
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    effective_port = parsed_port or port
    if effective_port == {"https": 443, "http": 80}[parts.scheme]:
        # The scheme's own port (entered to get past Airflow 3.3.2's Test button) adds nothing.
        effective_port = None
    if effective_port:
        netloc = f"{netloc}:{effective_port}"
    path = parts.path.rstrip("/") or "/api/v1"
    return f"{parts.scheme}://{netloc}{path}"


def parse_extras(extra: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Read a connection's ``extra`` (JSON text or mapping); drops the form's ``extra__callcov__`` prefix."""
    if extra is None or extra == "":
        return {}
    if isinstance(extra, Mapping):
        raw: Any = dict(extra)
    else:
        try:
            raw = json.loads(extra)
        except ValueError:
            raise ConnectionConfigError("connection extra is not valid JSON", field="extra") from None
    if not isinstance(raw, dict):
        raise ConnectionConfigError("connection extra must be a JSON object", field="extra")
    prefix = "extra__callcov__"
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in raw.items()}


def settings_from_connection(
    *,
    conn_id: str,
    host: str | None,
    port: int | None,
    password: str | None,
    extras: Mapping[str, Any],
) -> ClientSettings:
    """
    Check a connection's fields and build :class:`ClientSettings`.

    :raises ConnectionConfigError: naming the field, for a missing key, malformed host or bad extra.
    """
    api_key = (password or "").strip()
    if not api_key:
        raise ConnectionConfigError(
            f"connection {conn_id!r} has no API key: set it as the connection's password", field="password"
        )
    checked = ConnectionExtras.from_extras(extras)
    policy = RetryPolicy(
        max_retries=checked.max_retries,
        deadline=checked.retry_deadline,
        retry_ambiguous_posts=checked.retry_ambiguous_posts,
    )
    return ClientSettings(
        base_url=normalise_base_url(host, port),
        api_key=api_key,
        auth_type=checked.auth_type,
        connect_timeout=checked.connect_timeout,
        read_timeout=checked.read_timeout,
        submit_path=checked.submit_path,
        dashboard_url=checked.dashboard_url,
        retry_policy=policy,
    )
