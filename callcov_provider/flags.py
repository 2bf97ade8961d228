"""The provider's one reading of a yes/no value (a connection extra, a rendered template argument)."""

from __future__ import annotations

from typing import Any

from callcov_provider.exceptions import CallCovError, ConnectionConfigError, InvalidRequestError

#: Text read as true, and as false (compared without case and surrounding space).
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def parse_flag(
    value: Any,
    field: str,
    *,
    default: bool | None = None,
    error: type[CallCovError] | None = None,
) -> bool:
    """
    Read a flag: a ``bool``, or text ``true/false``, ``1/0``, ``yes/no``, ``on/off`` in any case.

    :param value: The value; ``None`` or empty text mean "not given".
    :param field: The name the error gives.
    :param default: What "not given" means; without one, "not given" is refused too.
    :param error: The error class raised; :class:`ConnectionConfigError` for a connection extra
        (the default when ``field`` is not an argument), :class:`InvalidRequestError` otherwise.
    :raises CallCovError: naming ``field``, for anything else (``"maybe"``, ``"None"``, ``2``).
    """
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
    elif isinstance(value, (str, int)):
        text = str(value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
    cls = error or ConnectionConfigError
    shown = value if isinstance(value, (int, float)) or value is None else str(value)[:40]
    raise cls(f"{field} must be true or false (also 1/0, yes/no, on/off), got {shown!r}", field=field)


def parse_argument_flag(value: Any, field: str, *, default: bool | None = None) -> bool:
    """:func:`parse_flag` for an operator or sensor argument: refuses with :class:`InvalidRequestError`."""
    return parse_flag(value, field, default=default, error=InvalidRequestError)
