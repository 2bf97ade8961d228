"""API keys and accounts: which account a request's ``X-API-Key`` or ``Authorization: Bearer`` names."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

AUTH_API_KEY = "api_key"
AUTH_BEARER = "bearer"
AUTH_NONE = "none"
AUTH_INVALID = "invalid"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def account_label(index: int) -> str:
    """The label of the account of the ``index``-th key (0-based): ``acct_1``, ``acct_2``, ..."""
    return f"acct_{index + 1}"


@dataclass(frozen=True)
class Identity:
    """
    Who sent a request.

    :param account: The account label, or ``None`` when the credentials are missing or wrong.
    :param mode: ``api_key``, ``bearer``, ``none`` (no credentials) or ``invalid`` (a wrong key, or a
        malformed ``Authorization`` header).
    """

    account: str | None
    mode: str


class KeyRing:
    """
    The configured keys, held only as SHA-256 digests; the n-th key is account ``acct_n``.

    :param api_keys: The accepted keys, in order.
    """

    def __init__(self, api_keys: Sequence[str]) -> None:
        self._accounts: dict[bytes, str] = {_digest(key): account_label(i) for i, key in enumerate(api_keys)}

    @property
    def accounts(self) -> list[str]:
        """Every account label."""
        return sorted(self._accounts.values(), key=lambda label: int(label.split("_")[1]))

    def lookup(self, key: str) -> str | None:
        """The account of ``key``, compared in constant time, or ``None``."""
        digest = _digest(key)
        found: str | None = None
        for known, label in self._accounts.items():
            if hmac.compare_digest(known, digest):
                found = label
        return found

    def identify(self, headers: Mapping[str, str]) -> Identity:
        """
        Identify a request from its headers (lower-case names). ``X-API-Key`` wins when both are sent.
        """
        api_key = headers.get("x-api-key")
        if api_key is not None:
            account = self.lookup(api_key.strip())
            return Identity(account, AUTH_API_KEY if account else AUTH_INVALID)
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return Identity(None, AUTH_INVALID)
            account = self.lookup(token.strip())
            return Identity(account, AUTH_BEARER if account else AUTH_INVALID)
        return Identity(None, AUTH_NONE)
