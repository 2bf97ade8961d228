"""
Reading a submission's body without holding it in memory.

A multipart upload is parsed as it streams in (python-multipart's push parser over Starlette's
``request.stream()``); the audio part goes straight to a temporary file while its SHA-256 is computed, its
first bytes are checked against its extension and its size against its format's limit. An ``audio_url``
is downloaded the same way, and only from an allowlisted host. Memory use is a few chunks, whatever the
file size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from callcov_provider.exceptions import safe_url
from callcov_provider.formats import AUDIO_FORMATS, AudioFormat
from callcov_provider.testing import errors, safejson
from callcov_provider.testing.errors import ApiError
from callcov_provider.testing.sniff import SNIFF_BYTES, audio_format_by_name, sniff_audio_format

#: Largest form field (``metadata`` JSON and the like) or JSON body accepted.
MAX_FIELD_BYTES = 256 * 1024
MAX_JSON_BYTES = 1024 * 1024
#: How much of a refused upload is read (and discarded) so the client gets to read the error answer.
DRAIN_LIMIT = 256 * 1024 * 1024
LARGEST_LIMIT = max(fmt.max_bytes for fmt in AUDIO_FORMATS.values())


@dataclass
class StoredAudio:
    """
    Audio received into a temporary file.

    :param path: The temporary file; :meth:`discard` deletes it.
    :param audio_format: The format, agreed by extension (when there is one) and first bytes.
    :param size: Bytes received.
    :param sha256: Hex digest of the bytes.
    :param filename: The client's file name, if it sent one.
    """

    path: Path
    audio_format: AudioFormat
    size: int
    sha256: str
    filename: str | None = None

    def discard(self) -> None:
        """Delete the temporary file."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class AudioSink:
    """
    Receives audio bytes into a temporary file, enforcing format and size as they arrive.

    :param tmpdir: Where the temporary file goes.
    :param expected: The format the extension names, or ``None`` to let the first bytes decide.
    :param filename: The client's file name, for the record.
    """

    def __init__(self, tmpdir: Path, expected: AudioFormat | None, filename: str | None = None) -> None:
        self.expected = expected
        self.filename = filename
        self.size = 0
        self._head = b""
        self._format: AudioFormat | None = None
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(
            prefix="upload-", suffix=expected.extension if expected else ".bin", dir=tmpdir
        )
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def _limit(self) -> int:
        fmt = self._format or self.expected
        return fmt.max_bytes if fmt is not None else LARGEST_LIMIT

    def _check_head(self) -> None:
        sniffed = audio_format_by_name(sniff_audio_format(self._head) or "")
        if sniffed is None:
            raise errors.invalid_format(
                f"Audio file must be in {errors.FORMATS_TEXT} format: "
                "its content is not a recognised audio file"
            )
        if self.expected is not None and sniffed.name != self.expected.name:
            raise errors.invalid_format(
                f"Audio file content is {sniffed.name.upper()} but its extension is "
                f"{self.expected.extension}; it must be in {errors.FORMATS_TEXT} format"
            )
        self._format = sniffed

    def write(self, data: bytes) -> None:
        """Take the next bytes; raise :class:`ApiError` (400/413) as soon as they break a rule."""
        if not data:
            return
        if self._format is None:
            self._head += data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._check_head()
        self.size += len(data)
        if self.size > self._limit():
            fmt = self._format or self.expected
            raise errors.too_large(fmt.extension if fmt else ".wav")
        self._hash.update(data)
        self._file.write(data)

    def finish(self) -> StoredAudio:
        """Close the file and return it; raise :class:`ApiError` for an empty or unrecognised file."""
        self._file.close()
        if self.size == 0:
            self.abort()
            raise errors.invalid_format("Audio file is empty")
        if self._format is None:
            try:
                self._check_head()
            except ApiError:
                self.abort()
                raise
        assert self._format is not None
        return StoredAudio(self.path, self._format, self.size, self._hash.hexdigest(), self.filename)

    def abort(self) -> None:
        """Close and delete the temporary file."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class SubmissionBody:
    """
    A parsed submission: its fields and, for an upload, its audio.

    :param fields: Field values: strings from a form, any JSON value from a JSON body.
    :param audio: The uploaded file, if any.
    :param kind: ``multipart`` or ``json``.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    audio: StoredAudio | None = None
    kind: str = "json"


async def drain(stream: AsyncIterator[bytes], limit: int = DRAIN_LIMIT) -> None:
    """Read and discard what is left of a request body (up to ``limit`` bytes)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            return


def _extension_of(name: str | None) -> str:
    return PurePosixPath((name or "").replace("\\", "/")).suffix.lower()


class _MultipartReader:
    """The python-multipart callbacks of one upload."""

    def __init__(self, tmpdir: Path) -> None:
        self.tmpdir = tmpdir
        self.body = SubmissionBody(kind="multipart")
        self._headers: dict[str, str] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None
        self._value: bytearray | None = None
        self._sink: AudioSink | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._value = None
        self._sink = None

    def on_header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        self._name = name
        if name == "audio_file" and filename is not None:
            if self.body.audio is not None or self._sink is not None:
                raise errors.validation(
                    400, [errors.body_item("too_long", "audio_file", "Send one audio_file")]
                )
            expected = AUDIO_FORMATS.get(_extension_of(filename))
            if expected is None:
                raise errors.invalid_format()
            self._sink = AudioSink(self.tmpdir, expected, filename)
        elif filename is None:
            self._value = bytearray()
        # Any other file part is read and ignored.

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._sink is not None:
            self._sink.write(data[start:end])
        elif self._value is not None:
            self._value.extend(data[start:end])
            if len(self._value) > MAX_FIELD_BYTES:
                raise errors.validation(
                    400,
                    [
                        errors.body_item(
                            "string_too_long",
                            self._name or "",
                            "Field value is too long",
                            None,
                            max_length=MAX_FIELD_BYTES,
                        )
                    ],
                )

    def on_part_end(self) -> None:
        if self._sink is not None:
            sink, self._sink = self._sink, None
            self.body.audio = sink.finish()
        elif self._value is not None and self._name:
            self.body.fields[self._name] = self._value.decode("utf-8", "replace")
        self._value = None

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()
            self._sink = None
        if self.body.audio is not None:
            self.body.audio.discard()
            self.body.audio = None


async def read_multipart(stream: AsyncIterator[bytes], content_type: str, tmpdir: Path) -> SubmissionBody:
    """
    Parse a ``multipart/form-data`` body as it streams in.

    :raises ApiError: 400 ``invalid_file_format``, 413 ``file_too_large``, or 400 for a malformed body; the
        rest of the body is drained first so that the client reads the answer.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        await drain(stream)
        raise errors.detail(400, "There was an error parsing the body: multipart boundary missing")
    reader = _MultipartReader(tmpdir)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        reader.abort()
        await drain(stream)
        raise
    except (MultipartParseError, ValueError):
        reader.abort()
        await drain(stream)
        raise errors.detail(400, "There was an error parsing the body") from None
    except BaseException:
        reader.abort()
        raise
    if reader._sink is not None:  # the body ended inside the file part
        reader.abort()
        raise errors.detail(400, "There was an error parsing the body")
    return reader.body


async def read_json(stream: AsyncIterator[bytes]) -> SubmissionBody:
    """
    Read a JSON object body (at most :data:`MAX_JSON_BYTES`).

    :raises ApiError: 413 for an oversized body, 400 with a FastAPI-style detail for invalid JSON.
    """
    data = bytearray()
    async for chunk in stream:
        data.extend(chunk)
        if len(data) > MAX_JSON_BYTES:
            await drain(stream)
            raise errors.coded(413, "payload_too_large", f"JSON body exceeds {MAX_JSON_BYTES} bytes")
    try:
        payload = safejson.loads(bytes(data) or b"null")
    except ValueError as err:
        position = getattr(err, "pos", 0)
        raise errors.validation(
            400,
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", position],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(err, "msg", str(err))},
                }
            ],
        ) from None
    if not isinstance(payload, dict):
        raise errors.validation(
            400,
            [
                {
                    "type": "model_attributes_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": payload,
                }
            ],
        )
    return SubmissionBody(fields=payload, kind="json")


def host_allowed(url: str, allow_hosts: Iterable[str]) -> bool:
    """Whether ``url``'s host is on the allowlist (``*`` allows every host)."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    allowed = {h.strip().lower().strip("[]") for h in allow_hosts}
    return "*" in allowed or host in allowed


async def fetch_audio(
    url: str, allow_hosts: Iterable[str], tmpdir: Path, *, timeout: float = 30.0
) -> StoredAudio:
    """
    Download ``audio_url`` into a temporary file, streaming, from an allowlisted host only.

    Redirects are not followed (they could lead off the allowlist), and proxies from the environment are
    ignored. Errors never show the URL's query string.

    :raises ApiError: 400 ``audio_url_not_allowed``, ``audio_url_unreachable``, ``invalid_content_type``,
        ``invalid_file_format``; 413 ``file_too_large``.
    """
    import httpx

    shown = safe_url(url)
    if not host_allowed(url, allow_hosts):
        host = urlsplit(url).hostname or ""
        raise errors.coded(
            400,
            "audio_url_not_allowed",
            f"The emulator only downloads audio from allowlisted hosts; {host!r} is not one "
            "(see --allow-host)",
        )
    expected = AUDIO_FORMATS.get(_extension_of(urlsplit(url).path))
    try:
        client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)
        async with client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise errors.coded(
                    400,
                    "audio_url_unreachable",
                    f"Could not download {shown}: HTTP {response.status_code}",
                )
            content_type = response.headers.get("content-type", "")
            if not content_type.lower().startswith("audio/"):
                raise errors.coded(
                    400,
                    "invalid_content_type",
                    f"audio_url must return a Content-Type of audio/*, got {content_type or 'none'!r}",
                )
            sink = AudioSink(tmpdir, expected)
            try:
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
                return sink.finish()
            except BaseException:
                sink.abort()
                raise
    except httpx.HTTPError as err:
        raise errors.coded(
            400, "audio_url_unreachable", f"Could not download {shown}: {type(err).__name__}"
        ) from None
