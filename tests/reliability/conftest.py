"""Shared helpers of the reliability tests: a day of recordings, the run's dates, and bounded waits."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from callcov_provider.testing.audio import write_wav

T = TypeVar("T")

AGENTS = ("agent_ada", "agent_bo", "agent_cy", "agent_di")


def yesterday() -> str:
    """The day a daily batch run analyses: its data interval ends at midnight UTC today, before the run."""
    return (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")


def logical_date(day: str) -> datetime:
    """The logical date of the daily batch run of ``day``."""
    return datetime.fromisoformat(f"{day}T00:00:00+00:00")


def write_day(root: Path, day: str, count: int, *, seconds: float = 0.25) -> list[dict[str, str]]:
    """Write ``count`` small WAV recordings and the ``calls.csv`` manifest under ``root/day``."""
    folder = root / day
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        name = f"call_{index:03d}.wav"
        write_wav(folder / name, seconds, seed=index + 1)
        rows.append(
            {
                "file": name,
                "agent_id": AGENTS[index % len(AGENTS)],
                "contact_id": f"customer_{index:03d}",
                "call_direction": "inbound" if index % 2 else "outbound",
                # A call a minute from 08:00, wrapping within the working day for large days.
                "call_timestamp": f"{day}T{8 + (index // 60) % 12:02d}:{index % 60:02d}:00Z",
            }
        )
    with (folder / "calls.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def wait_for(
    condition: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """
    Return ``condition()``'s first truthy value, checking every ``interval`` seconds until ``timeout``.

    Waits on an :class:`threading.Event` that is never set (a bounded wait, not a bare sleep).
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except Exception as err:  # the thing waited on may not answer yet
            last_error = err
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")
        pause.wait(interval)


def read_scorecards(path: Path) -> dict[str, dict[str, Any]]:
    """``scorecards.csv`` by ``agent_id`` (the totals row is ``TOTAL``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["agent_id"]: row for row in csv.DictReader(handle)}


def free_port() -> int:
    """A loopback port that is free now (for a server that must keep its port across restarts)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
