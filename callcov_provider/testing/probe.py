"""
What the emulator learns from an audio file: its duration (exact from WAV and FLAC headers, estimated
from the size otherwise) and whether it can be analysed at all (undecodable audio, silence).

Files are read in blocks, never whole: a 100 MB recording costs one block of memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from callcov_provider.testing.audio import M4A_BITRATE, MP3_BITRATE, OGG_BITRATE

BLOCK = 1024 * 1024
#: Bits per second assumed when a duration must be estimated from the file size.
ESTIMATE_BITRATES = {"mp3": MP3_BITRATE, "m4a": M4A_BITRATE, "ogg": OGG_BITRATE, "flac": 400_000}
#: Smallest compressed file that can hold any audio at all.
MIN_COMPRESSED_BYTES = 128

#: The WAV format codes the emulator can "decode": PCM, IEEE float and WAVE_FORMAT_EXTENSIBLE.
WAV_CODECS = (1, 3, 0xFFFE)


@dataclass(frozen=True)
class AudioProbe:
    """
    The result of inspecting one audio file.

    :param duration_seconds: Length of the recording (``None`` when it cannot be decoded).
    :param exact: Whether the duration comes from the file's header rather than an estimate.
    :param error: Why the audio cannot be analysed, or ``None``. An analysis of such audio ends ``failed``
        with this text as its ``error_message``.
    """

    duration_seconds: float | None
    exact: bool
    error: str | None = None


def probe_audio(path: Path, audio_format: str, size: int) -> AudioProbe:
    """
    Inspect the file at ``path``, whose format (``wav``, ``flac``, ``mp3``, ...) was already sniffed.

    :param path: The stored upload.
    :param audio_format: The format name from :func:`callcov_provider.testing.sniff.sniff_audio_format`.
    :param size: The file's size in bytes.
    """
    try:
        if audio_format == "wav":
            return _probe_wav(path, size)
        if audio_format == "flac":
            return _probe_flac(path, size)
    except (OSError, struct.error) as err:
        return AudioProbe(None, False, f"Audio could not be decoded: {type(err).__name__}")
    if size < MIN_COMPRESSED_BYTES:
        return AudioProbe(
            None, False, f"Audio could not be decoded: {audio_format.upper()} file is truncated"
        )
    return AudioProbe(estimate_duration(audio_format, size), False)


def estimate_duration(audio_format: str, size: int) -> float:
    """A duration estimate from the size at a typical bit rate for the format (at least 0.1 s)."""
    bitrate = ESTIMATE_BITRATES.get(audio_format, 256_000)
    return max(0.1, round(size * 8 / bitrate, 2))


def _undecodable(reason: str) -> AudioProbe:
    return AudioProbe(None, False, f"Audio could not be decoded: {reason}")


def _probe_wav(path: Path, size: int) -> AudioProbe:
    with path.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return _undecodable("not a RIFF/WAVE file")
        fmt: tuple[int, int, int, int, int, int] | None = None
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            body_start = position + 8
            if chunk_id == b"fmt ":
                if chunk_size < 16:
                    return _undecodable("WAV fmt chunk is too short")
                fmt = struct.unpack("<HHIIHH", handle.read(16))
            elif chunk_id == b"data":
                if fmt is None:
                    return _undecodable("WAV data chunk comes before its fmt chunk")
                # A streamed WAV may declare 0 or 0xFFFFFFFF; the data then runs to the end of the file.
                available = size - body_start
                data_size = available if chunk_size in (0, 0xFFFFFFFF) else min(chunk_size, available)
                return _wav_from_data(handle, body_start, data_size, fmt)
            position = body_start + chunk_size + (chunk_size & 1)
        if fmt is None:
            return _undecodable("WAV file has no fmt chunk")
        return _undecodable("WAV file has no data chunk")


def _wav_from_data(
    handle: BinaryIO, start: int, data_size: int, fmt: tuple[int, int, int, int, int, int]
) -> AudioProbe:
    codec, channels, sample_rate, byte_rate, _block_align, bits = fmt
    if codec not in WAV_CODECS:
        return _undecodable(f"unsupported WAV encoding 0x{codec:04x}")
    if channels < 1 or sample_rate < 1 or byte_rate < 1 or bits < 1:
        return _undecodable("WAV fmt chunk declares no channels, rate or sample size")
    if data_size <= 0:
        return AudioProbe(0.0, True, "Audio contains no samples")
    duration = round(data_size / byte_rate, 3)
    silence_byte = 0x80 if bits == 8 else 0x00
    if _all_bytes_equal(handle, start, data_size, silence_byte):
        return AudioProbe(duration, True, "Audio contains only silence: no speech to analyse")
    return AudioProbe(duration, True)


def _all_bytes_equal(handle: BinaryIO, start: int, length: int, value: int) -> bool:
    handle.seek(start)
    remaining = length
    reference = bytes([value]) * BLOCK
    while remaining > 0:
        block = handle.read(min(BLOCK, remaining))
        if not block:
            break
        if block != reference[: len(block)]:
            return False
        remaining -= len(block)
    return True


def _probe_flac(path: Path, size: int) -> AudioProbe:
    with path.open("rb") as handle:
        head = handle.read(4 + 4 + 34)
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return _undecodable("FLAC file has no STREAMINFO block")
    packed = int.from_bytes(head[8 + 10 : 8 + 18], "big")
    sample_rate = packed >> 44
    total_samples = packed & (2**36 - 1)
    if sample_rate == 0:
        return _undecodable("FLAC STREAMINFO declares a sample rate of 0")
    if total_samples == 0:
        return AudioProbe(estimate_duration("flac", size), False)
    return AudioProbe(round(total_samples / sample_rate, 3), True)
