"""
Fixtures of the emulator's own tests: the session emulator of the ``callcov`` pytest plugin (reset before
each test), plain ``requests`` helpers, and synthetic recordings.

Every test talks to the emulator over real HTTP on loopback. Nothing sleeps: waits poll a condition
against a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from callcov_provider.testing.audio import write_audio, write_wav
from callcov_provider.testing.server import EmulatorHandle

T = TypeVar("T")

KEY_1 = "sk_test_callcov_1"
KEY_2 = "sk_test_callcov_2"


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        threading_event_wait(interval)


def threading_event_wait(seconds: float) -> None:
    """Block for ``seconds`` without ``time.sleep`` (which the doc-sample tests patch)."""
    import threading

    threading.Event().wait(seconds)


class Api:
    """Thin ``requests`` helpers bound to one emulator."""

    def __init__(self, emu: EmulatorHandle) -> None:
        self.emu = emu
        self.base = emu.base_url
        self.session = requests.Session()
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    @staticmethod
    def auth(key: str = KEY_1, mode: str = "api_key") -> dict[str, str]:
        return {"X-API-Key": key} if mode == "api_key" else {"Authorization": f"Bearer {key}"}

    def upload(
        self,
        path: Path,
        *,
        key: str = KEY_1,
        mode: str = "api_key",
        endpoint: str = "/analysis/",
        headers: dict[str, str] | None = None,
        filename: str | None = None,
        **fields: Any,
    ) -> requests.Response:
        data = {"agent_id": "agent_001", "contact_id": "customer_001", **fields}
        with path.open("rb") as handle:
            return self.session.post(
                self.base + endpoint,
                headers={**self.auth(key, mode), **(headers or {})},
                files={"audio_file": (filename or path.name, handle)},
                data={k: v for k, v in data.items() if v is not None},
                timeout=30,
            )

    def submit_url(
        self,
        audio_url: str,
        *,
        key: str = KEY_1,
        endpoint: str = "/analysis/",
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> requests.Response:
        payload = {"audio_url": audio_url, "agent_id": "agent_001", "contact_id": "customer_001", **fields}
        return self.session.post(
            self.base + endpoint, headers={**self.auth(key), **(headers or {})}, json=payload, timeout=30
        )

    def get(self, path: str, *, key: str = KEY_1, mode: str = "api_key", **params: Any) -> requests.Response:
        return self.session.get(self.base + path, headers=self.auth(key, mode), params=params, timeout=30)


@pytest.fixture
def emu(callcov_emulator: EmulatorHandle) -> EmulatorHandle:
    """The plugin's session emulator (keys ``sk_test_callcov_1`` / ``_2``, processing 0 s), reset."""
    return callcov_emulator


@pytest.fixture
def api(emu: EmulatorHandle) -> Iterator[Api]:
    client = Api(emu)
    yield client
    client.close()


@pytest.fixture
def wav(tmp_path: Path) -> Callable[..., Path]:
    """``wav(name="call.wav", seconds=3.0, seed=0, silent=False)`` writes a recording in ``tmp_path``."""

    def make(name: str = "call.wav", seconds: float = 3.0, seed: int = 0, silent: bool = False) -> Path:
        return write_wav(tmp_path / name, seconds, seed=seed, silent=silent)

    return make


@pytest.fixture
def audio(tmp_path: Path) -> Callable[..., Path]:
    """``audio("call.mp3", seconds=3.0, seed=0)`` writes a file of the extension's format."""

    def make(name: str, seconds: float = 3.0, seed: int = 0) -> Path:
        return write_audio(tmp_path / name, seconds, seed=seed)

    return make
