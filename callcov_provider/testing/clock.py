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
    """

    def __init__(self, offset: float = 0.0, wall: Callable[[], float] = time.time) -> None:
        self._offset = offset
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

    def reset(self) -> None:
        """Go back to wall-clock time."""
        with self._lock:
            self._offset = 0.0


def iso(timestamp: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a ``Z`` (``2024-01-15T14:32:15.123Z``)."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
