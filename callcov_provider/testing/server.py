"""
Run the emulator from Python: :class:`EmulatorLauncher` (and :func:`run_emulator`, the same as a
``with`` block) starts it on a free loopback port, in a background thread or in its own process group,
and gives an :class:`EmulatorHandle`::

    with run_emulator(api_keys=("sk_test_1",), processing_seconds=0.0) as emu:
        hook_env = {"AIRFLOW_CONN_CALLCOV_DEFAULT": emu.connection_json()}
        emu.control.set_faults(next_errors=[503])
        ...
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from callcov_provider.constants import DEFAULT_CONN_ID
from callcov_provider.testing.auth import account_label
from callcov_provider.testing.client import EmulatorControl
from callcov_provider.testing.config import EmulatorConfig, build_config

READY_PREFIX = "callcov-emulator ready: "
#: Environment variable through which a parent passes the full configuration (keys included) to the
#: console script, so that keys never appear on a command line.
CONFIG_ENV = "CALLCOV_EMULATOR_CONFIG"
#: Environment variable with the console script's keys (comma-separated), when no configuration is passed.
KEYS_ENV = "CALLCOV_EMULATOR_API_KEYS"


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

    def env(self, conn_id: str = DEFAULT_CONN_ID, auth_type: str = "api_key") -> dict[str, str]:
        """``{"AIRFLOW_CONN_<CONN_ID>": <connection JSON>}`` for a subprocess's environment."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.connection_json(auth_type)}


class _ThreadServer:
    """uvicorn serving the app in a background thread of this process."""

    def __init__(
        self, config: EmulatorConfig, host: str, port: int, log_level: str, access_log: bool = False
    ) -> None:
        import uvicorn

        from callcov_provider.testing.app import create_app

        self.app = create_app(config)
        self.sock = bind_socket(host, port)
        self.port = int(self.sock.getsockname()[1])
        uv_config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=access_log,
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
    """
    The ``callcov-emulator`` console script in its own process group; its output goes to ``log_path``.

    The whole configuration (keys included) travels in ``CALLCOV_EMULATOR_CONFIG``, never on the command
    line. The process is ended by its process group id, never by name.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        host: str,
        port: int,
        log_level: str,
        log_path: Path | None,
        access_log: bool,
    ) -> None:
        self.own_log = log_path is None
        if log_path is None:
            descriptor, name = tempfile.mkstemp(prefix="callcov-emulator-", suffix=".log")
            os.close(descriptor)
            log_path = Path(name)
        self.log_path = log_path
        # Appending: the child's writes never depend on where this process reads.
        self.log: IO[bytes] = log_path.open("ab")
        self.offset = self.log.tell()
        env = {**os.environ, CONFIG_ENV: config.model_dump_json()}
        env.pop(KEYS_ENV, None)
        command = [
            sys.executable,
            "-m",
            "callcov_provider.testing.cli",
            "--host",
            host,
            "--port",
            str(port),
            "--log-level",
            log_level,
        ]
        if access_log:
            command.append("--access-log")
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.root_url = ""

    def _output(self) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode("utf-8", "replace")

    def start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            output = self._output()
            for line in output.splitlines():
                if line.startswith(READY_PREFIX):
                    base_url = line[len(READY_PREFIX) :].strip()
                    self.root_url = base_url.rsplit("/api/v1", 1)[0]
                    return
            exited = self.process.poll() is not None
            if exited or time.monotonic() > deadline:
                self.stop()
                what = "exited" if exited else f"did not start within {timeout} s"
                raise RuntimeError(f"the CallCov emulator process {what}: {output[-2000:]}")
            pause.wait(0.02)

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
            self.log.close()
            if self.own_log:
                self.log_path.unlink(missing_ok=True)


class EmulatorLauncher:
    """
    The one way to start and stop the emulator: in a background thread of this process, or as the
    ``callcov-emulator`` console script in its own process group. Use it as a context manager, or call
    :meth:`start`, :meth:`stop` and :meth:`restart` (which keeps the port, so clients can reconnect)::

        with EmulatorLauncher(api_keys=("sk_test_1",), in_subprocess=True, plan="free") as emu:
            ...

    :param api_keys: Accepted keys; the n-th is account ``acct_n``.
    :param processing_seconds: Processing time of each analysis: seconds, or a ``"min-max"`` range.
    :param host: Interface to bind; loopback by default.
    :param port: Port; ``0`` picks a free one (then kept across restarts).
    :param in_subprocess: Run the console script in its own process group instead of a thread of this
        process (for benchmarks, restarts, and stacks that must not share this process). It is ended by
        its process group id.
    :param startup_timeout: Seconds to wait for it to accept requests.
    :param log_level: uvicorn's log level.
    :param log_path: Subprocess only: append its output to this file (default: a temporary file).
    :param access_log: Log every request (no key is ever logged).
    :param config: Any other option of :func:`~callcov_provider.testing.config.build_config`:
        ``failure_rate``, ``rate_limit``, ``submit_rate_limit``, ``quota_mode``, ``plan``,
        ``concurrent_processing``, ``reset_format``, ``clock_offset``, ``faults`` (a mapping such as
        ``{"error_rates": {503: 0.1}}`` or ``--fault`` strings such as ``["503=0.1"]``), ``allow_hosts``,
        ``db``, ``seed``, ``webhook_attempts``, ``webhook_retry_seconds``.
    """

    def __init__(
        self,
        api_keys: Sequence[str] = ("sk_test_1",),
        processing_seconds: float | str | tuple[float, float] = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        in_subprocess: bool = False,
        startup_timeout: float = 20.0,
        log_level: str = "warning",
        log_path: str | Path | None = None,
        access_log: bool = False,
        **config: Any,
    ) -> None:
        self.settings = build_config(api_keys=api_keys, processing_seconds=processing_seconds, **config)
        self.api_keys = tuple(api_keys)
        self.host = host
        self.port = port
        self.in_subprocess = in_subprocess
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.log_path = Path(log_path) if log_path is not None else None
        self.access_log = access_log
        #: How many times it has been started.
        self.starts = 0
        self._server: _ThreadServer | _ProcessServer | None = None
        self._handle: EmulatorHandle | None = None

    def __repr__(self) -> str:
        where = "subprocess" if self.in_subprocess else "thread"
        return f"EmulatorLauncher({where}, {self.host}:{self.port}, running={self.running})"

    @property
    def running(self) -> bool:
        """Whether it has been started and not stopped since."""
        return self._server is not None

    @property
    def handle(self) -> EmulatorHandle:
        """The running (or last) emulator's handle."""
        if self._handle is None:
            raise RuntimeError("the emulator has not been started")
        return self._handle

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (known once started; the port stays the same across restarts)."""
        return self.handle.root_url

    @property
    def base_url(self) -> str:
        """The API base URL, ``root_url + "/api/v1"``."""
        return self.handle.base_url

    @property
    def pid(self) -> int | None:
        """The subprocess's id (also its process group id), or ``None`` in a thread."""
        return self.handle.pid

    def connection_json(self, auth_type: str = "api_key", **extra: Any) -> str:
        """See :meth:`EmulatorHandle.connection_json`."""
        return self.handle.connection_json(auth_type, **extra)

    def start(self) -> EmulatorHandle:
        """Start the emulator and return its handle."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server: _ThreadServer | _ProcessServer
        if self.in_subprocess:
            server = _ProcessServer(
                self.settings, self.host, self.port, self.log_level, self.log_path, self.access_log
            )
        else:
            server = _ThreadServer(self.settings, self.host, self.port, self.log_level, self.access_log)
        server.start(self.startup_timeout)  # stops what it started if it fails
        self._server = server
        self.starts += 1
        if isinstance(server, _ProcessServer):
            root_url, pid, app = server.root_url, server.process.pid, None
        else:
            root_url, pid, app = root_url_for(self.host, server.port), None, server.app
        self.port = int(root_url.rsplit(":", 1)[1])
        if self._handle is not None:
            self._handle.control.close()
        self._handle = EmulatorHandle(
            root_url=root_url,
            base_url=f"{root_url}/api/v1",
            api_keys=self.api_keys,
            control=EmulatorControl(root_url),
            pid=pid,
            app=app,
        )
        return self._handle

    def stop(self) -> None:
        """Stop the emulator (a subprocess by its process group id); nothing to do if it is not running."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            if self._handle is not None:
                self._handle.control.close()
        finally:
            server.stop()

    def restart(self) -> EmulatorHandle:
        """Stop and start again on the same port (with a ``db``, analyses survive)."""
        self.stop()
        return self.start()

    def __enter__(self) -> EmulatorHandle:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_emulator(
    api_keys: Sequence[str] = ("sk_test_1",),
    processing_seconds: float | str | tuple[float, float] = 0.0,
    **options: Any,
) -> Iterator[EmulatorHandle]:
    """
    Start the emulator, yield its :class:`EmulatorHandle`, and stop it on exit: :class:`EmulatorLauncher`
    as a context manager (same options).
    """
    launcher = EmulatorLauncher(api_keys, processing_seconds, **options)
    handle = launcher.start()
    try:
        yield handle
    finally:
        launcher.stop()
