"""Fixtures of the foundation's unit tests: a connection in the environment, a hook that never sleeps."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest

from callcov_provider.hooks.callcov import CallCovHook

API = "https://api.callcov.test/api/v1"
KEY = "sk_live_TOPSECRET_4f9a2c71e0"
SIGNED_QUERY = "X-Amz-Signature=SIGTOKEN8d1e77&X-Amz-Expires=3600"
SIGNED_URL = f"https://storage.example.test/recordings/call-001.wav?{SIGNED_QUERY}"

#: The current generation's 201 response to ``POST /analysis/``.
ANALYSIS_001: dict[str, Any] = {
    "id": "550e8400-e29b-41d4-a716-446655440000",
    "object": "analysis",
    "created": 1642248000,
    "status": "processing",
    "livemode": True,
    "call": {"agent_id": "agent_john_doe", "contact_id": "customer_12345"},
    "audio": {
        "url": "https://s3.amazonaws.com/callcov/...",
        "duration_seconds": None,
        "format": "wav",
        "file_size": None,
    },
    "transcript": None,
    "results": None,
    "metadata": {"processing_time_ms": None, "version": "1.0.0"},
}

#: The older generation's response to ``POST /calls/analyze``.
SUBMIT_000: dict[str, Any] = {
    "analysis_id": "anl_1a2b3c4d5e",
    "status": "processing",
    "created_at": "2024-01-15T10:30:05Z",
    "estimated_completion": "2024-01-15T10:32:00Z",
    "webhook_url": "https://your-app.com/webhooks/callcov",
}

#: A completed analysis in the listing reference's shape, results filled in.
COMPLETED_002: dict[str, Any] = {
    "id": "660f9511-f3ac-52e5-b827-557766551111",
    "object": "analysis",
    "created": 1705334400,
    "status": "completed",
    "livemode": False,
    "call": {
        "agent_id": "agent_001",
        "contact_id": "customer_12345",
        "duration_ms": 125500,
        "duration_seconds": 125.5,
    },
    "audio": {
        "url": "https://s3.amazonaws.com/callcov-audio/...",
        "size_bytes": 1048576,
        "format": "wav",
        "duration_seconds": 125.5,
    },
    "transcript": {
        "text": "Hello, thank you for calling.",
        "segments": [{"speaker": "agent", "start": 0.0, "end": 1.5, "text": "Hello"}],
        "language": "en",
    },
    "results": {
        "compliance": {
            "identity_verification": {"passed": True, "flagged": False},
            "mandatory_disclosures": {"passed": True, "flagged": False},
            "purpose_declaration": {"passed": False, "flagged": True, "details": "no purpose stated"},
        },
        "quality": {
            "sentiment_analysis": {"overall": "positive", "score": 0.8},
            "greeting": {"present": True},
            "empathetic_language": {"score": 0.6, "examples": ["I understand"]},
        },
        "coaching": {"recommendations": ["Confirm the purpose"], "customer_effort_score": 1},
    },
    "metadata": {
        "webhook_url": "https://your-app.com/webhooks/analysis",
        "completed_at": "2024-01-15T14:32:15.123Z",
        "processing_time_ms": 45230,
        "error_message": None,
    },
}


def analysis(analysis_id: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    """A minimal analysis object of the current generation."""
    return {"id": analysis_id, "object": "analysis", "status": status, **extra}


def page(ids: list[str], *, has_more: bool, total: int | None = None) -> dict[str, Any]:
    """A list object of the listing reference."""
    return {"object": "list", "data": [analysis(i) for i in ids], "has_more": has_more, "total": total}


def set_connection(
    monkeypatch: pytest.MonkeyPatch,
    *,
    conn_id: str = "callcov_default",
    host: str | None = API,
    password: str | None = KEY,
    **extra: Any,
) -> None:
    """Put a CallCov connection in the environment, the way ``AIRFLOW_CONN_*`` variables do."""
    conn: dict[str, Any] = {"conn_type": "callcov", "extra": extra}
    if host is not None:
        conn["host"] = host
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


class SleepRecorder:
    """Stands in for ``time.sleep`` and ``asyncio.sleep``: records each wait, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Call with keyword arguments to (re)define the ``callcov_default`` connection."""

    def define(**kwargs: Any) -> None:
        set_connection(monkeypatch, **kwargs)

    define()
    return define


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_hook(connection: Callable[..., None], sleeps: SleepRecorder) -> Iterator[Callable[..., CallCovHook]]:
    """Build hooks whose retries record their waits instead of sleeping."""
    hooks: list[CallCovHook] = []

    def make(*args: Any, **kwargs: Any) -> CallCovHook:
        hook = CallCovHook(*args, **kwargs)
        hook.sleep = sleeps
        hook.async_sleep = sleeps.asleep
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture
def hook(make_hook: Callable[..., CallCovHook]) -> CallCovHook:
    return make_hook()


class _EventHandler(logging.Handler):
    """Adds the provider's standard-library log records to ``events`` as structlog-style event dicts."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__(level=logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if "callcov_provider" not in record.name:  # e.g. airflow.task.hooks.callcov_provider.hooks...
            return
        self.events.append(
            {"event": record.getMessage(), "log_level": record.levelname.lower(), "logger": record.name}
        )


@contextmanager
def capture_log_events() -> Iterator[list[dict[str, Any]]]:
    """
    What the provider's hooks, operators, sensors and triggers log through ``self.log``, as dicts with
    ``event`` (the rendered message) and ``log_level``, on every Airflow version; the list fills live.

    The loggers differ by version: on Airflow 3.1+ ``self.log`` is a structlog logger of the task SDK,
    which ``caplog`` does not see and ``structlog.testing.capture_logs`` does; on Airflow 2.11 and 3.0 it
    is a standard-library logger (``LoggingMixin``), seen by a handler on the root logger. Both land in
    one list.
    """
    try:
        from structlog.testing import capture_logs
    except ImportError:  # Airflow 2.11 does not install structlog
        capture: Any = nullcontext([])
    else:
        capture = capture_logs()
    with capture as events:
        handler = _EventHandler(events)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield events
        finally:
            root.removeHandler(handler)


@pytest.fixture
def hook_logs() -> Iterator[list[dict[str, Any]]]:
    """The events the hook logs (``hook.log``), on every Airflow version: see :func:`capture_log_events`."""
    with capture_log_events() as events:
        yield events


def native_async_connection_lookup() -> bool:
    """
    Whether ``airflow.providers.common.compat.connection.get_async_connection`` uses Airflow's own
    non-blocking lookup: ``BaseHook.aget_connection`` with asynchronous secret masking (Airflow 3.3.2+).

    Below that (Airflow 2.11, 3.0: no ``aget_connection``; 3.1 to 3.3.1: it masks secrets synchronously
    and can deadlock) the helper runs the blocking ``get_connection`` in a worker thread instead.
    """
    from airflow.providers.common.compat.sdk import BaseHook, Connection

    return hasattr(BaseHook, "aget_connection") and hasattr(Connection, "aextra_dejson")


def guard_connection_lookup(hook: CallCovHook, message: str) -> None:
    """
    Fail if ``hook`` blocks the event loop to fetch its connection, as each Airflow version allows.

    Where Airflow has a native async lookup, the blocking ``get_connection`` must not be called at all;
    below that it may be called only off the event loop's thread (the compat helper's worker thread).
    Call this on the thread that runs the event loop.
    """
    original = hook.get_connection
    loop_thread = threading.get_ident()
    native = native_async_connection_lookup()

    def lookup(conn_id: str) -> Any:
        if native:
            raise AssertionError(message)
        if threading.get_ident() == loop_thread:
            raise AssertionError(f"{message} (a blocking lookup on the event loop's thread)")
        return original(conn_id)

    hook.get_connection = lookup  # type: ignore[method-assign]
