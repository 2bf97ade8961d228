"""
The audio formats the API documents: extension, largest file and content type. The hook checks files
against them before sending; the emulator too.
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
