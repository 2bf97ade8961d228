"""
Fault injection: decide, per ``/api/v1`` request, whether to delay it, fail it, drop its connection or
lose its response; and the ASGI trick that closes a connection without answering.

Decisions are drawn from one seeded RNG in request order, so a sequential test sees the same faults on
every run. The one-shot knobs (``burst_429``, ``next_errors``, ``drop_next``, ``lose_next``) are consumed
as requests arrive and are the easiest to test with.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

from callcov_provider.testing.config import FaultSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultPlan:
    """
    What happens to one request.

    :param latency: Seconds to wait before handling it.
    :param status: A status to answer instead of handling it (429, or an injected 4xx/5xx).
    :param drop: Close the connection without a response, instead of handling it.
    :param lose: For a submission: handle it, then answer 503 (``"503"``) or drop (``"drop"``).
    """

    latency: float = 0.0
    status: int | None = None
    drop: bool = False
    lose: str | None = None

    @property
    def label(self) -> str | None:
        """A short description for the request log, or ``None`` when nothing is injected."""
        parts = []
        if self.latency:
            parts.append(f"latency={self.latency:.3f}s")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.drop:
            parts.append("drop")
        if self.lose is not None:
            parts.append(f"lose={self.lose}")
        return ",".join(parts) or None


NO_FAULT = FaultPlan()


class FaultInjector:
    """
    Holds the fault settings (replaceable at run time) and draws each request's :class:`FaultPlan`.

    :param settings: Initial settings.
    :param seed: Seeds the RNG.
    """

    def __init__(self, settings: FaultSettings, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._settings = settings.model_copy(deep=True)
        self._rng = random.Random(seed)
        self._seed = seed

    @property
    def settings(self) -> FaultSettings:
        """A copy of the current settings (the one-shot counters show what is left)."""
        with self._lock:
            return self._settings.model_copy(deep=True)

    def configure(self, settings: FaultSettings, *, reseed: bool = False) -> None:
        """Replace the settings; with ``reseed``, restart the RNG from the seed too."""
        with self._lock:
            self._settings = settings.model_copy(deep=True)
            if reseed:
                self._rng = random.Random(self._seed)

    def plan(self, *, is_submission: bool) -> FaultPlan:
        """Draw the plan of the next request and consume any one-shot fault it uses."""
        with self._lock:
            s = self._settings
            latency = 0.0
            if s.latency_max > 0 and self._rng.random() < s.latency_rate:
                latency = self._rng.uniform(s.latency_min, s.latency_max)
            if s.burst_429 > 0:
                s.burst_429 -= 1
                return FaultPlan(latency=latency, status=429)
            if s.next_errors:
                return FaultPlan(latency=latency, status=s.next_errors.pop(0))
            if s.drop_next > 0:
                s.drop_next -= 1
                return FaultPlan(latency=latency, drop=True)
            if is_submission and s.lose_next > 0:
                s.lose_next -= 1
                return FaultPlan(latency=latency, lose=s.lose_mode)
            if s.drop_rate and self._rng.random() < s.drop_rate:
                return FaultPlan(latency=latency, drop=True)
            if s.error_rates:
                draw = self._rng.random()
                cumulative = 0.0
                for status in sorted(s.error_rates):
                    cumulative += s.error_rates[status]
                    if draw < cumulative:
                        return FaultPlan(latency=latency, status=status)
            if is_submission and s.lose_rate and self._rng.random() < s.lose_rate:
                return FaultPlan(latency=latency, lose=s.lose_mode)
            return FaultPlan(latency=latency) if latency else NO_FAULT


def abort_connection(send: Any) -> bool:
    """
    Close the client's connection at once, without a response, from inside an ASGI app under uvicorn.

    ASGI has no message for this: an app that raises before answering makes uvicorn send a 500. Uvicorn's
    ``send`` callable is a bound method of its request-response cycle, which holds the transport; the
    socket is set to linger 0 (so the peer sees a reset, not a clean end of stream) and the transport
    aborted, and the cycle marked disconnected so uvicorn neither answers nor logs an error.

    :param send: The ``send`` callable uvicorn gave the outermost app.
    :return: ``True`` if the connection was aborted; ``False`` if the server is not uvicorn (the caller
        then falls back to raising, which at least yields a 5xx).
    """
    while hasattr(send, "__wrapped__"):  # the app's own wrappers (the Date header) keep uvicorn's send
        send = send.__wrapped__
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if cycle is None or transport is None or not hasattr(cycle, "disconnected"):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the socket is already gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    cycle.disconnected = True
    return True
