"""How the emulator recognises an uploaded recording's format from its first bytes, as the API does."""

from __future__ import annotations

from callcov_provider.formats import AUDIO_FORMATS, AudioFormat

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
