"""
pytest fixtures for testing CallCov DAGs offline (registered as the ``callcov`` pytest11 entry point).

* ``callcov_emulator``: a running emulator (:class:`~callcov_provider.testing.server.EmulatorHandle`),
  started once per session and reset before each test that uses it;
* ``callcov_connection``: points ``AIRFLOW_CONN_CALLCOV_DEFAULT`` at that emulator for the test and returns
  the connection id, so ``CallCovHook()`` and the operators talk to it;
* ``callcov_emulator_options``: override it (session scope) in your ``conftest.py`` to start the emulator
  with other options, e.g. ``{"processing_seconds": 2.0, "rate_limit": 100}``.

This module is imported by every pytest run in an environment where the provider is installed, so it
imports nothing heavy: FastAPI and uvicorn are loaded only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from callcov_provider.testing.server import EmulatorHandle

#: Keys of the session emulator: ``acct_1`` and ``acct_2``.
DEFAULT_TEST_KEYS = ("sk_test_callcov_1", "sk_test_callcov_2")
CONN_ID = "callcov_default"


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
def callcov_emulator(callcov_emulator_session: EmulatorHandle) -> EmulatorHandle:
    """The session's emulator, reset (no analyses, start-up settings) before this test."""
    callcov_emulator_session.control.reset()
    return callcov_emulator_session


@pytest.fixture
def callcov_connection(callcov_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``AIRFLOW_CONN_CALLCOV_DEFAULT`` at the emulator (API-key auth); return ``"callcov_default"``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", callcov_emulator.connection_json())
    return CONN_ID
