"""
Synthesise test audio with the standard library only: deterministic WAV recordings and minimal FLAC, MP3,
OGG and M4A files whose first bytes are right for their format.

The emulator reads real durations from WAV and FLAC headers, estimates the others from their size, fails
an all-zero (silent) WAV, and rejects a file whose bytes do not match its extension. These helpers make
each of those cases in one line::

    write_wav(tmp_path / "call.wav", seconds=3.0)          # completes
    write_wav(tmp_path / "silence.wav", silent=True)       # ends failed: silence
    write_audio(tmp_path / "call.mp3", seconds=10)         # any documented extension
"""

from __future__ import annotations

import math
import os
import random
import struct
from array import array
from pathlib import Path

#: Bit rates used to size the compressed formats, matching the emulator's duration estimates.
MP3_BITRATE = 128_000
M4A_BITRATE = 128_000
OGG_BITRATE = 96_000


def wav_bytes(
    seconds: float = 3.0,
    *,
    sample_rate: int = 16000,
    silent: bool = False,
    seed: int = 0,
    channels: int = 1,
) -> bytes:
    """
    Return a 16-bit PCM WAV file: a tone with a little noise, or all-zero samples when ``silent``.

    The same arguments always give the same bytes; a different ``seed`` gives a different recording.

    :param seconds: Duration.
    :param sample_rate: Samples per second.
    :param silent: Write only zero samples (the emulator fails such a call as silence).
    :param seed: Varies the tone's pitch and the noise.
    :param channels: 1 (mono) or 2 (stereo, the same signal on both channels).
    """
    frames = max(0, round(seconds * sample_rate))
    samples = array("h", bytes(2 * frames * channels))
    if not silent and frames:
        # A quarter second of tone and noise, repeated: fast to build, and never all zeros.
        rng = random.Random(seed)
        pitch = 180.0 + 40.0 * (seed % 7)
        step = 2.0 * math.pi * pitch / sample_rate
        block = array("h", bytes(2 * channels * min(frames, max(1, sample_rate // 4))))
        for index in range(len(block) // channels):
            value = int(9000.0 * math.sin(step * index) + rng.uniform(-600.0, 600.0))
            for channel in range(channels):
                block[index * channels + channel] = value
        whole, rest = divmod(len(samples), len(block))
        samples = block * whole + block[:rest]
    if samples.itemsize != 2:  # pragma: no cover - every CPython platform has 2-byte shorts
        raise RuntimeError("array('h') is not 16-bit on this platform")
    data = samples.tobytes() if _little_endian() else _byteswapped(samples)
    return wav_header(len(data), sample_rate=sample_rate, channels=channels) + data


def _little_endian() -> bool:
    return struct.pack("=h", 1) == b"\x01\x00"


def _byteswapped(samples: array[int]) -> bytes:  # pragma: no cover - big-endian hosts only
    swapped = array("h", samples)
    swapped.byteswap()
    return swapped.tobytes()


def wav_header(data_size: int, *, sample_rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    """The 44-byte RIFF/WAVE header of a PCM file with ``data_size`` bytes of samples."""
    block_align = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, bits)
        + b"data"
        + struct.pack("<I", data_size)
    )


def write_wav(
    path: str | os.PathLike[str],
    seconds: float = 3.0,
    *,
    sample_rate: int = 16000,
    silent: bool = False,
    seed: int = 0,
) -> Path:
    """
    Write a deterministic 16-bit mono WAV file (see :func:`wav_bytes`) and return its path.

    :param path: Where to write; parent directories must exist.
    :param seconds: Duration.
    :param sample_rate: Samples per second.
    :param silent: All-zero samples: the emulator ends such an analysis ``failed`` (silence).
    :param seed: Varies the content, hence the analysis results.
    """
    target = Path(path)
    target.write_bytes(wav_bytes(seconds, sample_rate=sample_rate, silent=silent, seed=seed))
    return target


def write_sized_wav(path: str | os.PathLike[str], size_bytes: int, *, sample_rate: int = 16000) -> Path:
    """
    Write a valid WAV file of exactly ``size_bytes`` bytes quickly (the samples are zero, i.e. silence,
    and written sparsely where the file system allows). Meant for size-limit tests.
    """
    if size_bytes < 44:
        raise ValueError("a WAV file is at least 44 bytes")
    target = Path(path)
    with target.open("wb") as handle:
        handle.write(wav_header(size_bytes - 44, sample_rate=sample_rate))
        handle.truncate(size_bytes)
    return target


def write_undecodable_wav(path: str | os.PathLike[str], size_bytes: int = 4096) -> Path:
    """Write a file that starts ``RIFF....WAVE`` but has no ``fmt``/``data`` chunks: it cannot be decoded."""
    target = Path(path)
    body = random.Random(7).randbytes(max(0, size_bytes - 12))
    target.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + b"junk" + body[4:])
    return target


def flac_bytes(seconds: float = 3.0, *, sample_rate: int = 16000, seed: int = 0) -> bytes:
    """
    A minimal FLAC file: ``fLaC``, a STREAMINFO block declaring ``seconds`` of 16-bit mono audio, and
    pseudo-random frame bytes (about half the PCM size). The emulator reads its duration from STREAMINFO.
    """
    total_samples = round(seconds * sample_rate)
    channels, bits = 1, 16
    # 20 bits sample rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples.
    packed = (sample_rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36) | (total_samples & (2**36 - 1))
    streaminfo = (
        struct.pack(">HH", 4096, 4096)
        + (0).to_bytes(3, "big")
        + (0).to_bytes(3, "big")
        + packed.to_bytes(8, "big")
        + bytes(16)
    )
    header = bytes([0x80]) + len(streaminfo).to_bytes(3, "big")  # last block, type 0 (STREAMINFO)
    payload = random.Random(seed).randbytes(max(64, total_samples))
    return b"fLaC" + header + streaminfo + b"\xff\xf8" + payload


def mp3_bytes(seconds: float = 3.0, *, seed: int = 0, id3: bool = True) -> bytes:
    """
    A minimal MP3 file: an optional empty ID3v2 tag and MPEG-1 Layer III frame headers (128 kbit/s,
    44.1 kHz) with pseudo-random payloads, sized for ``seconds`` at 128 kbit/s.
    """
    rng = random.Random(seed)
    frame_length = 417  # 144 * 128000 / 44100
    frames = max(1, round(seconds * MP3_BITRATE / 8 / frame_length))
    parts = [b"ID3\x04\x00\x00\x00\x00\x00\x00"] if id3 else []
    for _ in range(frames):
        parts.append(b"\xff\xfb\x90\x64" + rng.randbytes(frame_length - 4))
    return b"".join(parts)


def ogg_bytes(seconds: float = 3.0, *, seed: int = 0) -> bytes:
    """A minimal OGG file: an ``OggS`` page header with a Vorbis id packet, then pseudo-random pages."""
    size = max(256, round(seconds * OGG_BITRATE / 8))
    head = b"OggS\x00\x02" + bytes(8) + struct.pack("<III", 1, 0, 0) + b"\x01\x1e" + b"\x01vorbis"
    return head + random.Random(seed).randbytes(size - len(head))


def m4a_bytes(seconds: float = 3.0, *, seed: int = 0) -> bytes:
    """A minimal M4A file: an ``ftyp`` box (brand ``M4A ``) and an ``mdat`` box of pseudo-random bytes."""
    size = max(256, round(seconds * M4A_BITRATE / 8))
    ftyp = struct.pack(">I", 28) + b"ftypM4A " + struct.pack(">I", 0) + b"M4A mp42isom"
    payload = random.Random(seed).randbytes(size)
    return ftyp + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload


def audio_bytes(extension: str, seconds: float = 3.0, *, seed: int = 0) -> bytes:
    """Bytes of a file in the format of ``extension`` (``.wav``, ``.mp3``, ``.m4a``, ``.flac``, ``.ogg``)."""
    makers = {
        ".wav": lambda: wav_bytes(seconds, seed=seed),
        ".flac": lambda: flac_bytes(seconds, seed=seed),
        ".mp3": lambda: mp3_bytes(seconds, seed=seed),
        ".ogg": lambda: ogg_bytes(seconds, seed=seed),
        ".m4a": lambda: m4a_bytes(seconds, seed=seed),
    }
    key = extension.lower() if extension.startswith(".") else f".{extension.lower()}"
    if key not in makers:
        raise ValueError(f"no audio maker for {extension!r}; use one of {', '.join(makers)}")
    return makers[key]()


def write_audio(path: str | os.PathLike[str], seconds: float = 3.0, *, seed: int = 0) -> Path:
    """Write a file in the format its extension names (see :func:`audio_bytes`) and return its path."""
    target = Path(path)
    target.write_bytes(audio_bytes(target.suffix, seconds, seed=seed))
    return target
