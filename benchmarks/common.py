"""Shared pieces of the benchmarks: environment, figures, statistics, machine description, helpers."""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def setup_environment() -> None:
    """A throwaway AIRFLOW_HOME and quiet logs, set before Airflow is imported (inherited by children)."""
    if "CALLCOV_BENCH_AIRFLOW_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="callcov-bench-airflow-")
        os.environ["CALLCOV_BENCH_AIRFLOW_HOME"] = home
        os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    # Every trigger cycle and submission logs at INFO; the benchmarks measure the provider, not the logger.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    os.environ.setdefault("PYTHONPATH", str(BENCH_DIR))


def quiet_logging() -> None:
    """Silence INFO logs in this process (Airflow's structlog and the stdlib loggers)."""
    import logging

    logging.disable(logging.INFO)


# -- figures -----------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """
    One line of the results table: a measured quantity, ours against the baseline, over repeated runs.

    :param row: The issue's row number (``"1"``, ``"2"``, ...), with a suffix for sub-figures.
    :param what: What is measured.
    :param unit: Unit of the values.
    :param ours: One value per run for the provider.
    :param baseline: One value per run for the baseline (empty when there is none).
    :param target: The target, in words.
    :param met: Whether the target is met (``None``: informational).
    :param note: Anything needed to read the figure.
    """

    row: str
    what: str
    unit: str
    ours: list[float]
    baseline: list[float] = field(default_factory=list)
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Median of ours over median of the baseline."""
        if not self.ours or not self.baseline:
            return None
        base = statistics.median(self.baseline)
        return statistics.median(self.ours) / base if base else None

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ratio": self.ratio}


@dataclass
class RowResult:
    """Everything one benchmark row produced: its figures and any extra lines (curves, findings)."""

    row: str
    title: str
    figures: list[Figure]
    details: list[str] = field(default_factory=list)


def fmt(value: float) -> str:
    """A number in few characters."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude < 1e6:
        return f"{int(value):,}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def summary(values: list[float]) -> str:
    """``median [min-max]`` of ``values`` (just the value for a single run)."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(values))}-{fmt(max(values))}]"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "-"}[met]


# -- machine -----------------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """CPU model, cores, RAM, load, Python and Airflow versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        import airflow

        airflow_version = airflow.__version__
    except Exception:  # pragma: no cover - Airflow is a dependency
        airflow_version = "unknown"
    from callcov_provider.version import __version__

    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical (affinity {len(os.sched_getaffinity(0))})",
        "RAM": ram,
        "load average (1/5/15 min) when written": load,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Airflow": airflow_version,
        "provider": __version__,
    }


# -- helpers -----------------------------------------------------------------------------------------------


def run_child(script: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    """Run ``benchmarks/<script> child <args>`` in a fresh interpreter; return the JSON of its last line."""
    completed = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), "child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"{script} child {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def submit_small(base_url: str, api_key: str, count: int, workers: int = 16) -> list[str]:
    """Create ``count`` analyses by uploading a tiny WAV each (setup only, not measured); return ids."""
    import httpx

    from callcov_provider.testing.audio import wav_bytes

    audio = wav_bytes(0.05)

    def one(index: int, client: httpx.Client) -> str:
        response = client.post(
            f"{base_url}/analysis/",
            headers={"X-API-Key": api_key},
            files={"audio_file": ("call.wav", audio, "audio/wav")},
            data={"agent_id": "agent_bench", "contact_id": f"contact_{index:06d}"},
        )
        response.raise_for_status()
        return str(response.json()["id"])

    clients = [httpx.Client(timeout=60, trust_env=False) for _ in range(workers)]
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one, i, clients[i % workers]) for i in range(count)]
            return [f.result() for f in futures]
    finally:
        for client in clients:
            client.close()


def read_status_kb(field_name: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of ``/proc/self/status``, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (a child inherits its parent's peak)."""
    Path("/proc/self/clear_refs").write_text("5")
