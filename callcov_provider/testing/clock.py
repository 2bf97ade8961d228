"""The emulator's clock: wall time plus an offset that the control API can advance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class Clock:
    """
    Wall-clock time moved forward by :meth:`advance`; it never goes back.

    Everything time-based in the emulator reads it: ``created``, processing, ``completed_at`` and the
    rate-limit windows. Advancing it by 60 seconds therefore also opens a new rate-limit window.

    :param offset: Seconds already advanced (restored from a database file).
    :param wall: The underlying time source, replaceable in unit tests.
    :param base: Where :meth:`reset` returns to: the configured offset of the server's clock from the
        wall clock (may be negative).
    """

    def __init__(
        self, offset: float | None = None, wall: Callable[[], float] = time.time, base: float = 0.0
    ) -> None:
        self._base = base
        self._offset = base if offset is None else offset
        self._wall = wall
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds the clock has been advanced in total."""
        return self._offset

    def now(self) -> float:
        """Current emulator time, epoch seconds."""
        return self._wall() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (at least 0) and return the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    def set_offset(self, offset: float) -> None:
        """Set the offset from the wall clock outright (unlike :meth:`advance`, it may go back)."""
        with self._lock:
            self._offset = offset

    def reset(self) -> None:
        """Go back to wall-clock time plus the configured offset."""
        with self._lock:
            self._offset = self._base


def iso(timestamp: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a ``Z`` (``2024-01-15T14:32:15.123Z``)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
