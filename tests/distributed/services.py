"""
PostgreSQL and Redis from Debian's packages for the distributed suite: installed with ``apt-get`` when
absent, started in the foreground (each in its own process group) on free loopback ports with their data in
a throwaway directory. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.e2e.helpers import ProcessGroup, free_port, tail, wait_for

#: Debian's packages: the server binaries (initdb, postgres, pg_dump) and redis-server.
APT_PACKAGES = ("postgresql", "redis-server")
DB_USER = "airflow"
DB_NAME = "airflow"


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` in it."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    return Path(found[-1]).parent if found else None


def ensure_installed() -> None:
    """Install PostgreSQL and Redis with ``apt-get`` when either is missing."""
    if postgres_bin_dir() is not None and shutil.which("redis-server"):
        return
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*apt, "update", "-q"], check=True, env=env)
    subprocess.run([*apt, "install", "-y", "-q", *APT_PACKAGES], check=True, env=env)


class UserProcessGroup(ProcessGroup):
    """A :class:`ProcessGroup` whose command runs as another user (PostgreSQL under root)."""

    def __init__(
        self, command: list[str], env: dict[str, str], log_path: Path, cwd: Path, user: str | None
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=user,
        )
        self.pgid = self.process.pid
        self._seen = {}
        self.killed = []


@dataclass
class Postgres:
    """A running PostgreSQL server: its binaries, port and process group."""

    bin_dir: Path
    port: int
    group: ProcessGroup
    version: str

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def dump(self, target: Path) -> Path:
        """``pg_dump`` of the Airflow database (plain SQL, data included) to ``target``."""
        with target.open("wb") as out:
            subprocess.run(
                [
                    str(self.bin_dir / "pg_dump"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    DB_USER,
                    DB_NAME,
                ],
                stdout=out,
                check=True,
                timeout=120,
            )
        return target

    def query(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, dbname=DB_NAME)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            conn.close()


def start_postgres(work: Path) -> Postgres:
    """
    ``initdb`` a cluster in a fresh directory and start ``postgres`` in the foreground on a free port,
    listening on 127.0.0.1 and on a unix socket in the same directory; create the ``airflow`` database.
    Trust authentication: loopback only, and the cluster is thrown away with the directory.
    """
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None, "PostgreSQL is not installed"
    # Its own directory, owned by the server's user (the work directory is root's and private).
    root = Path(tempfile.mkdtemp(prefix="callcov-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, sockets = root / "data", root / "sockets"
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
        env=env,
        user=user,
        group=user,
        check=True,
        capture_output=True,
        timeout=180,
    )
    (root / "sockets").mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(sockets, entry.pw_uid, entry.pw_gid)
    port = free_port()
    command = [
        str(bin_dir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={sockets}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
    ]
    group = UserProcessGroup(command, env, work / "postgres.log", root, user)
    group.root = root  # type: ignore[attr-defined]
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    def ready() -> bool:
        if group.process.poll() is not None:
            raise AssertionError(f"postgres exited with {group.process.returncode}\n{tail(group.log_path)}")
        probe = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER],
            capture_output=True,
        )
        return probe.returncode == 0

    wait_for("postgres to accept connections", ready, 120, interval=0.5)
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, DB_NAME],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Postgres(bin_dir, port, group, version)


def remove_postgres_dir(postgres: Postgres) -> None:
    with contextlib.suppress(AttributeError):
        shutil.rmtree(postgres.group.root, ignore_errors=True)  # type: ignore[attr-defined]


@dataclass
class Redis:
    port: int
    group: ProcessGroup
    version: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(work: Path) -> Redis:
    """``redis-server`` in the foreground on a free loopback port, no persistence, data in ``work``."""
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed"
    port = free_port()
    data = work / "redis"
    data.mkdir()
    command = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    group = ProcessGroup(command, {"PATH": os.environ.get("PATH", "")}, work / "redis.log", data)
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout.strip()

    def ready() -> bool:
        if group.process.poll() is not None:
            raise AssertionError(f"redis exited with {group.process.returncode}\n{tail(group.log_path)}")
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping())

    import redis

    try:
        wait_for("redis to answer PING", lambda: _swallow(ready, redis.RedisError), 60, interval=0.3)
    except AssertionError:
        group.stop()
        raise
    return Redis(port, group, version)


def _swallow(probe: object, errors: type[BaseException]) -> bool:
    try:
        return bool(probe())  # type: ignore[operator]
    except errors:
        return False


def group_alive(group: ProcessGroup) -> bool:
    """Whether any process of the group is still running (not a zombie)."""
    with contextlib.suppress(psutil.Error):
        return bool(group.members())
    return False
