"""
Row 5: DAG parse cost of the provider.

Two DAG files: one using only ``airflow.sdk`` and one using the provider's four classes
(``SubmitAnalysisOperator``, ``AnalysisCompletedSensor`` deferrable, so ``AnalysisCompletedTrigger``, and
``ListAnalysesOperator``). Each is run with ``runpy`` in a fresh interpreter, alternately, and the time from
before the first import to the end of the file is taken; the added cost is the difference of the medians.
``python -X importtime`` then names the modules only the provider's file imports, heaviest first.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Figure, RowResult, fmt

SDK_DAG = """
import pendulum
from airflow.sdk import DAG, task

with DAG(dag_id="sdk_only", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    @task
    def one() -> int:
        return 1

    @task
    def two(value: int) -> None:
        print(value)

    two(one())
"""

PROVIDER_DAG = """
import pendulum
from airflow.sdk import DAG, task

from callcov_provider.operators.list_analyses import ListAnalysesOperator
from callcov_provider.operators.submit import SubmitAnalysisOperator
from callcov_provider.sensors.analysis import AnalysisCompletedSensor

with DAG(dag_id="with_callcov", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    @task
    def one() -> int:
        return 1

    submit = SubmitAnalysisOperator(
        task_id="submit", agent_id="agent_001", contact_id="contact_001", audio_file="/tmp/call.wav"
    )
    wait = AnalysisCompletedSensor(task_id="wait", analysis_id=submit.output, deferrable=True)
    listed = ListAnalysesOperator(task_id="list", status_filter="completed", fetch_all=True)
    one() >> submit >> wait >> listed
"""

# ``airflow.sdk`` (and pendulum) are imported before the clock starts, as the DAG processor has them
# already: the timed part is the rest of the DAG file. This keeps the ~3 s of Airflow's own start-up, and its
# noise on a busy machine, out of a difference of a few tens of milliseconds.
TIMER = (
    "import time, runpy, sys; import pendulum, airflow.sdk; t = time.perf_counter(); "
    "runpy.run_path(sys.argv[1], run_name='dagfile'); print(time.perf_counter() - t)"
)


def _time_once(path: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", TIMER, str(path)], capture_output=True, text=True, check=True, env=os.environ
    )
    return float(out.stdout.strip().splitlines()[-1])


def _imports(path: Path) -> dict[str, tuple[int, int]]:
    """module -> (self us, cumulative us) from ``-X importtime``."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import runpy; runpy.run_path({str(path)!r})"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    found: dict[str, tuple[int, int]] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            found[match.group(4)] = (int(match.group(1)), int(match.group(2)))
    return found


def run(quick: bool, repeats: int) -> RowResult:
    runs = 1 if quick else 10
    sdk: list[float] = []
    provider: list[float] = []
    with tempfile.TemporaryDirectory(prefix="callcov-bench-dags-") as tmp:
        sdk_path = Path(tmp) / "sdk_only.py"
        provider_path = Path(tmp) / "with_callcov.py"
        sdk_path.write_text(SDK_DAG)
        provider_path.write_text(PROVIDER_DAG)
        if not quick:
            _time_once(sdk_path)  # warm the file system cache and .pyc files once
            _time_once(provider_path)
        for _ in range(runs):
            sdk.append(_time_once(sdk_path))
            provider.append(_time_once(provider_path))
        # -X importtime is for the report; the smoke run skips it.
        base_modules = {} if quick else _imports(sdk_path)
        ours_modules = {} if quick else _imports(provider_path)
    added = [1000 * (p - s) for p, s in zip(provider, sdk, strict=True)]
    median_added = 1000 * (statistics.median(provider) - statistics.median(sdk))
    new = {name: t for name, t in ours_modules.items() if name not in base_modules}
    new_self_ms = sum(t[0] for t in new.values()) / 1000
    top_level = sorted(
        ((name, t) for name, t in new.items() if name.split(".")[0] != "callcov_provider" or "." in name),
        key=lambda item: -item[1][0],
    )
    figures = [
        Figure(
            row="5",
            what="DAG file run time, fresh interpreter",
            unit="ms",
            ours=[1000 * v for v in provider],
            baseline=[1000 * v for v in sdk],
        ),
        Figure(
            row="5",
            what="parse time added by the provider (median difference)",
            unit="ms",
            ours=[median_added],
            target="<= 50 ms",
            met=median_added <= 50,
            note=f"pairwise differences: {fmt(min(added))}-{fmt(max(added))} ms",
        ),
    ]
    details = [
        f"Median of {len(sdk)} fresh interpreters each, run alternately; pairwise differences "
        f"{fmt(min(added))}-{fmt(max(added))} ms.",
        "",
        f"`-X importtime`: the provider's DAG file imports {len(new)} modules the sdk-only file does not, "
        f"{fmt(new_self_ms)} ms of import time between them (one run, self time). The heaviest:",
        "",
        "| module | self ms | cumulative ms |",
        "|---|---|---|",
    ]
    for name, (self_us, cum_us) in top_level[:15]:
        details.append(f"| `{name}` | {fmt(self_us / 1000)} | {fmt(cum_us / 1000)} |")
    callcov = sorted(
        ((n, t) for n, t in new.items() if n.startswith("callcov_provider")), key=lambda item: -item[1][1]
    )
    details += ["", "The provider's own modules the DAG file adds (cumulative ms):", ""]
    details.append(", ".join(f"`{n}` {fmt(t[1] / 1000)}" for n, t in callcov))
    already = sorted(
        ((n, t) for n, t in base_modules.items() if n.startswith("callcov_provider")), key=lambda i: -i[1][0]
    )
    details += [
        "",
        "Imported by Airflow itself in *both* files, because the provider is installed (provider discovery "
        "calls `get_provider_info`, self ms): " + ", ".join(f"`{n}` {fmt(t[0] / 1000)}" for n, t in already),
    ]
    return RowResult("5", "DAG parse cost", figures, details)
