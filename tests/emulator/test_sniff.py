"""The emulator recognises a recording's format from its first bytes."""

from __future__ import annotations

import pytest

from callcov_provider.formats import MIB


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", None),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"fLaC\x00\x00\x00\x22\x10\x00\x10\x00", "flac"),
        (b"OggS\x00\x02\x00\x00\x00\x00\x00\x00", "ogg"),
        (b"\x00\x00\x00\x20ftypM4A ", "m4a"),
        (b"<html><body>", None),
        (b"", None),
        (b"\xff", None),
    ],
)
def test_sniff_audio_format(head: bytes, expected: str | None) -> None:
    from callcov_provider.testing.sniff import sniff_audio_format

    assert sniff_audio_format(head) == expected


def test_audio_format_by_name() -> None:
    from callcov_provider.testing.sniff import audio_format_by_name

    fmt = audio_format_by_name("flac")
    assert fmt is not None
    assert fmt.extension == ".flac"
    assert fmt.max_bytes == 100 * MIB
    assert audio_format_by_name("aac") is None
