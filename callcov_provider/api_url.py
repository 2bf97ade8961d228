"""The type of every URL the API returns: shown, logged and serialised without its secrets."""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from callcov_provider.redaction import redact_url


class ApiUrl:
    """
    A URL the API returned, such as ``audio.url`` (possibly presigned, ``?X-Amz-Signature=...``).

    ``str()``, ``repr()``, logging and serialisation (``model_dump``, and so XCom) all show it through
    :func:`~callcov_provider.redaction.redact_url`: no query string, fragment or user info. Code that
    needs the full URL (to download the recording, say) asks for it with :meth:`get_secret_value`, as with
    pydantic's ``SecretStr``.

    :param url: The URL as the API sent it.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    def get_secret_value(self) -> str:
        """The full URL, query string included."""
        return self._url

    @property
    def redacted(self) -> str:
        """The URL without query string, fragment and user info."""
        return redact_url(self._url)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"ApiUrl({self.redacted!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ApiUrl):
            return self._url == other._url
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._url)

    @classmethod
    def _validate(cls, value: Any) -> ApiUrl:
        if isinstance(value, ApiUrl):
            return value
        if isinstance(value, str):
            return cls(value)
        raise ValueError(f"a URL must be a string, got {type(value).__name__}")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda url: url.redacted, when_used="always"
            ),
        )
