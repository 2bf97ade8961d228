"""
Keeping credentials out of text: the one place that knows where a URL carries them.

A URL may carry a credential in its user info, its query string (a presigned object-storage URL's
``X-Amz-Signature``, a webhook's ``?token=``) and its fragment. :func:`redact_url` removes all three;
:func:`redact` removes them from free text (an error message that echoes a URL back). Nothing here imports
pydantic or Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: What a removed secret is replaced with.
REDACTED = "<redacted>"


def redact_url(url: str) -> str:
    """
    Return ``url`` without its user info, query string and fragment, where tokens travel.

    :param url: Any URL, possibly signed.
    :return: The same URL with ``?...`` shown as ``?<redacted>`` and credentials and fragment dropped;
        ``<unparseable url>`` for text that cannot be split into a URL's parts.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is out of range or not a number
    except ValueError:
        return "<unparseable url>"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port:
        netloc = f"{netloc}:{port}"
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


#: Shorter query values (``expires=3600``, ``v=1``) are not treated as secrets on their own: redacting
#: them would garble any message that contains the same digits.
MIN_QUERY_SECRET_CHARS = 8


def url_secrets(url: str) -> tuple[str, ...]:
    """
    The parts of ``url`` that may carry a credential: its query string, fragment and user info, and each
    query value of at least :data:`MIN_QUERY_SECRET_CHARS` characters (a server may echo a signature
    alone, without its ``sig=``).

    :param url: Any URL, such as a signed ``audio_url``.
    :return: The non-empty secret parts, for :func:`redact`.
    """
    try:
        parts = urlsplit(url)
        values = [value for _, value in parse_qsl(parts.query) if len(value) >= MIN_QUERY_SECRET_CHARS]
    except ValueError:
        return (url,) if url else ()
    candidates = (parts.query, parts.fragment, parts.password, parts.username, *values)
    return tuple(dict.fromkeys(part for part in candidates if part))


#: A URL's query string in free text: where a signed URL (such as an analysis' ``audio.url``) keeps its token.
_URL_QUERY = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#"'<>]*)\?[^\s#"'<>]+""")
#: A URL's user info in free text (``https://user:password@host``).
_URL_USERINFO = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#"'<>@]+@""")


def redact_urls(text: str) -> str:
    """Redact the query string and user info of every URL in free text (an error message, say)."""
    if "://" not in text:
        return text
    text = _URL_QUERY.sub(r"\1?" + REDACTED, text)
    return _URL_USERINFO.sub(r"\1", text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """
    Replace every occurrence of each of ``secrets``, and every URL's query string, in ``text``.

    Used on text that comes from the server (an error body may echo a header or a signed URL back).
    """
    text = redact_urls(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
