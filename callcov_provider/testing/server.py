"""
Run the emulator from Python: :func:`run_emulator` starts it on a free loopback port, in a background
thread or in its own process, and yields an :class:`EmulatorHandle`::

    with run_emulator(api_keys=("sk_test_1",), processing_seconds=0.0) as emu:
        hook_env = {"AIRFLOW_CONN_CALLCOV_DEFAULT": emu.connection_json()}
        emu.control.set_faults(next_errors=[503])
        ...
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote, urlencode

from callcov_provider.testing.auth import account_label
from callcov_provider.testing.client import EmulatorControl
from callcov_provider.testing.config import EmulatorConfig, build_config

READY_PREFIX = "callcov-emulator ready: "
#: Environment variable through which a parent passes the full configuration (keys included) to the
#: console script, so that keys never appear on a command line.
CONFIG_ENV = "CALLCOV_EMULATOR_CONFIG"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (``0`` picks a free port); IPv6 hosts are supported."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Name the protocol: asyncio turns Nagle's algorithm off only on sockets whose proto is IPPROTO_TCP
    # (accepted sockets inherit it), and with it on, a kept-alive connection waits ~40 ms per answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except BaseException:
        sock.close()
        raise
    return sock


def root_url_for(host: str, port: int) -> str:
    """``http://host:port``, with brackets around an IPv6 address."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@dataclass
class EmulatorHandle:
    """
    A running emulator.

    :param root_url: ``http://127.0.0.1:PORT``.
    :param base_url: The API base URL, ``root_url + "/api/v1"``.
    :param api_keys: The accepted keys; the n-th is account ``acct_n``.
    :param control: Client of the ``/_emulator`` API.
    :param pid: The emulator's process id when it runs in a subprocess.
    :param app: The ASGI app when it runs in this process (its state is ``app.emulator``).
    """

    root_url: str
    base_url: str
    api_keys: tuple[str, ...] = field(repr=False)
    control: EmulatorControl
    pid: int | None = None
    app: Any = field(default=None, repr=False)

    @property
    def api_key(self) -> str:
        """The first key (account ``acct_1``)."""
        return self.api_keys[0]

    def account_of(self, api_key: str) -> str:
        """The account label (``acct_1``, ...) of ``api_key``."""
        return account_label(self.api_keys.index(api_key))

    def connection_json(self, auth_type: str = "api_key", *, api_key: str | None = None, **extra: Any) -> str:
        """
        An Airflow connection in JSON form (for ``AIRFLOW_CONN_<ID>``): conn_type ``callcov``, host the
        base URL, password the key, extra ``auth_type`` (``api_key`` or ``bearer``) and any ``extra``.
        """
        return json.dumps(
            {
                "conn_type": "callcov",
                "host": self.base_url,
                "password": api_key or self.api_key,
                "extra": {"auth_type": auth_type, **extra},
            }
        )

    def connection_uri(self, auth_type: str = "api_key", *, api_key: str | None = None, **extra: Any) -> str:
        """
        The same connection as an Airflow URI. Airflow keeps a URL host's scheme when it is written
        ``callcov://http://:KEY@HOST%3APORT%2Fapi%2Fv1/?auth_type=...``, which this builds.
        """
        scheme, _, rest = self.base_url.partition("://")
        password = quote(api_key or self.api_key, safe="")
        query = urlencode({"auth_type": auth_type, **{k: str(v) for k, v in extra.items()}})
        return f"callcov://{scheme}://:{password}@{quote(rest, safe='')}/?{query}"

    def env(self, conn_id: str = "callcov_default", auth_type: str = "api_key") -> dict[str, str]:
        """``{"AIRFLOW_CONN_<CONN_ID>": <connection JSON>}`` for a subprocess's environment."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.connection_json(auth_type)}


class _ThreadServer:
    """uvicorn serving the app in a background thread of this process."""

    def __init__(self, config: EmulatorConfig, host: str, port: int, log_level: str) -> None:
        import uvicorn

        from callcov_provider.testing.app import create_app

        self.app = create_app(config)
        self.sock = bind_socket(host, port)
        self.port = int(self.sock.getsockname()[1])
        uv_config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
            date_header=False,  # the app writes Date in its own (possibly offset) clock
        )
        self.server = uvicorn.Server(uv_config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="callcov-emulator", daemon=True
        )

    def start(self, timeout: float) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                self.sock.close()
                raise RuntimeError("the CallCov emulator failed to start (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the CallCov emulator did not start within {timeout} s")
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


class _ProcessServer:
    """The ``callcov-emulator`` console script in its own process group."""

    def __init__(self, config: EmulatorConfig, host: str, port: int, log_level: str) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {**os.environ, CONFIG_ENV: config.model_dump_json()}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callcov_provider.testing.cli",
                "--host",
                host,
                "--port",
                str(port),
                "--log-level",
                log_level,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name="callcov-emulator-stdout", daemon=True)
        self.root_url = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def start(self, timeout: float) -> None:
        self.reader.start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, remaining))
            except queue.Empty:
                line = ""
            if line is None or remaining <= 0:
                self.stop()
                self.stderr.seek(0)
                detail = self.stderr.read().decode("utf-8", "replace")[-2000:]
                what = "exited" if line is None else f"did not start within {timeout} s"
                raise RuntimeError(f"the CallCov emulator process {what}: {detail}")
            if line.startswith(READY_PREFIX):
                base_url = line[len(READY_PREFIX) :].strip()
                self.root_url = base_url.rsplit("/api/v1", 1)[0]
                return

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(5)
        finally:
            if self.reader.is_alive():
                self.reader.join(5)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.stderr.close()


@contextlib.contextmanager
def run_emulator(
    api_keys: Sequence[str] = ("sk_test_1",),
    processing_seconds: float | str | tuple[float, float] = 0.0,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    in_subprocess: bool = False,
    startup_timeout: float = 20.0,
    log_level: str = "warning",
    **config: Any,
) -> Iterator[EmulatorHandle]:
    """
    Start the emulator, yield its :class:`EmulatorHandle`, and stop it on exit.

    :param api_keys: Accepted keys; the n-th is account ``acct_n``.
    :param processing_seconds: Processing time of each analysis: seconds, or a ``"min-max"`` range.
    :param host: Interface to bind; loopback by default.
    :param port: Port; ``0`` picks a free one.
    :param in_subprocess: Run the ``callcov-emulator`` console script in its own process group instead of
        a thread of this process (for benchmarks that must not share this process's GIL). It is terminated
        by process group on exit.
    :param startup_timeout: Seconds to wait for it to accept requests.
    :param log_level: uvicorn's log level.
    :param config: Any other option of :func:`~callcov_provider.testing.config.build_config`:
        ``failure_rate``, ``rate_limit``, ``submit_rate_limit``, ``faults`` (a mapping such as
        ``{"error_rates": {503: 0.1}}`` or ``--fault`` strings such as ``["503=0.1"]``),
        ``allow_hosts``, ``db``, ``seed``, ``webhook_attempts``, ``webhook_retry_seconds``.
    """
    settings = build_config(api_keys=api_keys, processing_seconds=processing_seconds, **config)
    server: _ThreadServer | _ProcessServer
    if in_subprocess:
        server = _ProcessServer(settings, host, port, log_level)
        app = None
    else:
        server = _ThreadServer(settings, host, port, log_level)
        app = server.app
    try:
        server.start(startup_timeout)
        if isinstance(server, _ProcessServer):
            root_url, pid = server.root_url, server.process.pid
        else:
            root_url, pid = root_url_for(host, server.port), None
        control = EmulatorControl(root_url)
        try:
            yield EmulatorHandle(
                root_url=root_url,
                base_url=f"{root_url}/api/v1",
                api_keys=tuple(api_keys),
                control=control,
                pid=pid,
                app=app,
            )
        finally:
            control.close()
    finally:
        server.stop()
