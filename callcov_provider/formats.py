"""
The audio formats the API documents: extension, largest file, content type, and how to recognise each
one from a file's first bytes. The hook checks files against them before sending; the emulator too.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class AudioFormat:
    """One supported audio format: its name, extension and maximum size (the older generation's table)."""

    name: str
    extension: str
    max_bytes: int
    content_type: str


#: The documented formats. "MB" is read as MiB, the more permissive reading (shared README).
AUDIO_FORMATS: dict[str, AudioFormat] = {
    fmt.extension: fmt
    for fmt in (
        AudioFormat("wav", ".wav", 100 * MIB, "audio/wav"),
        AudioFormat("mp3", ".mp3", 50 * MIB, "audio/mpeg"),
        AudioFormat("m4a", ".m4a", 50 * MIB, "audio/mp4"),
        AudioFormat("flac", ".flac", 100 * MIB, "audio/flac"),
        AudioFormat("ogg", ".ogg", 50 * MIB, "audio/ogg"),
    )
}


#: How many leading bytes :func:`sniff_audio_format` needs to recognise every documented format.
SNIFF_BYTES = 12


def sniff_audio_format(head: bytes) -> str | None:
    """
    Recognise a documented audio format from a file's first bytes (its "magic number").

    ``RIFF....WAVE`` is WAV; ``ID3`` (a tag) or an MPEG frame sync (``0xFF`` then ``0xE0`` or above) is
    MP3; ``fLaC`` is FLAC; ``OggS`` is OGG; ``....ftyp`` (an ISO base media box) is M4A.

    :param head: At least the first :data:`SNIFF_BYTES` bytes of the file (fewer only for a shorter file).
    :return: The format's name as in :data:`AUDIO_FORMATS` (``"wav"``, ``"mp3"``, ...), or ``None``.
    """
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "m4a"
    return None


def audio_format_by_name(name: str) -> AudioFormat | None:
    """Return the documented :class:`AudioFormat` called ``name`` (``"wav"``, ``"mp3"``, ...), if any."""
    for fmt in AUDIO_FORMATS.values():
        if fmt.name == name:
            return fmt
    return None
