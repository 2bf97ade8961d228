"""
pytest fixtures for testing CallCov DAGs offline (registered as the ``callcov`` pytest11 entry point).

* ``callcov_emulator``: a running emulator (:class:`~callcov_provider.testing.server.EmulatorHandle`),
  started once per session and reset before each test that uses it;
* ``callcov_connection``: points ``AIRFLOW_CONN_CALLCOV_DEFAULT`` at that emulator for the test and returns
  the connection id, so ``CallCovHook()`` and the operators talk to it;
* ``callcov_emulator_options``: override it (session scope) in your ``conftest.py`` to start the emulator
  with other options, e.g. ``{"processing_seconds": 2.0, "rate_limit": 100}``;
* ``callcov_quota_mode``: the quota mode ``callcov_emulator`` is put in after its reset: ``"friendly"``
  (default) or ``"documented"`` (429s and quotas exactly as the API documentation shows). Run a test in
  both modes with ``@pytest.mark.parametrize("callcov_quota_mode", QUOTA_MODES, indirect=True)``;
* ``callcov_documented_emulator``: the session emulator, reset, in ``documented`` mode;
* ``callcov_emulator_factory``: ``callcov_emulator_factory(quota_mode="documented", plan="free",
  clock_offset=-30, reset_format="delta", ...)`` starts a dedicated emulator with any
  ``run_emulator`` option; it is stopped when the test ends.

This module is imported by every pytest run in an environment where the provider is installed, so it
imports nothing heavy: FastAPI and uvicorn are loaded only when a fixture is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from callcov_provider.constants import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from callcov_provider.testing.server import EmulatorHandle

#: Keys of the session emulator: ``acct_1`` and ``acct_2``.
DEFAULT_TEST_KEYS = ("sk_test_callcov_1", "sk_test_callcov_2")
CONN_ID = DEFAULT_CONN_ID
#: The quota modes, for ``@pytest.mark.parametrize("callcov_quota_mode", QUOTA_MODES, indirect=True)``.
QUOTA_MODES = ("friendly", "documented")


@pytest.fixture(scope="session")
def callcov_emulator_options() -> dict[str, Any]:
    """Options of the session emulator (see ``run_emulator``); override to change them."""
    return {"api_keys": DEFAULT_TEST_KEYS, "processing_seconds": 0.0}


@pytest.fixture(scope="session")
def callcov_emulator_session(callcov_emulator_options: dict[str, Any]) -> Iterator[EmulatorHandle]:
    """The session's emulator, started on first use and stopped at the end of the session."""
    from callcov_provider.testing.server import run_emulator

    with run_emulator(**callcov_emulator_options) as handle:
        yield handle


@pytest.fixture
def callcov_quota_mode(request: pytest.FixtureRequest) -> str:
    """``"friendly"`` unless parametrised (indirectly) with ``"documented"``; see :data:`QUOTA_MODES`."""
    mode = str(getattr(request, "param", "friendly"))
    if mode not in QUOTA_MODES:
        raise ValueError(f"callcov_quota_mode must be one of {QUOTA_MODES}, got {mode!r}")
    return mode


@pytest.fixture
def callcov_emulator(callcov_emulator_session: EmulatorHandle, callcov_quota_mode: str) -> EmulatorHandle:
    """The session's emulator, reset (no analyses, start-up settings) before this test, in the quota mode
    of ``callcov_quota_mode``."""
    callcov_emulator_session.control.reset()
    if callcov_quota_mode != "friendly":
        callcov_emulator_session.control.set_quota_mode(callcov_quota_mode)
    return callcov_emulator_session


@pytest.fixture
def callcov_documented_emulator(callcov_emulator: EmulatorHandle) -> EmulatorHandle:
    """
    The session's emulator, reset, with quotas exactly as documented (``quota_mode="documented"``).
    It is ``callcov_emulator`` switched after its reset, so ``callcov_connection`` points at it too.
    """
    callcov_emulator.control.set_quota_mode("documented")
    return callcov_emulator


@pytest.fixture
def callcov_emulator_factory() -> Iterator[Callable[..., EmulatorHandle]]:
    """
    Start dedicated emulators with any ``run_emulator`` option (``quota_mode``, ``plan``,
    ``clock_offset``, ``reset_format``, ``concurrent_processing``, ``rate_limit``, ...); each is stopped
    when the test ends. Keys default to the session emulator's.
    """
    from callcov_provider.testing.server import run_emulator

    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> EmulatorHandle:
            options.setdefault("api_keys", DEFAULT_TEST_KEYS)
            options.setdefault("processing_seconds", 0.0)
            return stack.enter_context(run_emulator(**options))

        yield start


@pytest.fixture
def callcov_connection(callcov_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``AIRFLOW_CONN_CALLCOV_DEFAULT`` at the emulator (API-key auth); return ``"callcov_default"``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", callcov_emulator.connection_json())
    return CONN_ID
