"""
``make demo``: run the daily batch DAG end to end against the embedded CallCov emulator. No account needed.

1. Generates ``--days`` days (3 by default, ending yesterday) of demo recordings (standard library only)
   under ``.demo/recordings/<day>/``: a dozen calls across four agents, different each day, one silent
   call that the analysis fails, one file the API rejects, and two manifest rows that discovery skips.
2. Starts the emulator on a free loopback port, in its own process group (the project's one launcher).
3. Runs ``airflow dags test callcov_daily_batch <day>`` for each day in a project-local ``AIRFLOW_HOME``
   (SQLite), then ``airflow dags test callcov_weekly_trend`` (which the daily report's asset schedules in
   a real deployment), so that the daily pages link to a weekly trend page that exists.
4. Stops everything it started, even on Ctrl-C, and prints where the reports are.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
DEMO_KEY = "sk_test_demo_key_0123456789"

AGENTS = ["agent_alice", "agent_bob", "agent_chen", "agent_dana"]


def generate_recordings(day: str, root: Path, variant: int = 0) -> Path:
    """Write the day's recordings and ``calls.csv`` (``variant`` changes the audio, so the results); return
    the day's folder."""
    from callcov_provider.testing.audio import write_wav

    folder = root / day
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    rows: list[dict[str, Any]] = []
    start = datetime.fromisoformat(f"{day}T09:00:00+00:00")
    for index in range(12):
        agent = AGENTS[index % len(AGENTS)]
        name = f"call_{index + 1:02d}.wav"
        seed = index + 1 + 100 * variant
        write_wav(folder / name, seconds=4.0 + (index % 5), seed=seed, silent=(index == 7))
        rows.append(
            {
                "file": name,
                "agent_id": agent,
                "contact_id": f"customer_{1000 + index}",
                "call_direction": "inbound" if index % 3 else "outbound",
                "call_timestamp": (start + timedelta(minutes=37 * index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    # A .wav that is not audio at all: it passes the local checks, the API refuses it (400).
    (folder / "call_13.wav").write_bytes(b"This is not a recording. " * 40)
    rows.append(
        {
            "file": "call_13.wav",
            "agent_id": "agent_bob",
            "contact_id": "customer_2013",
            "call_direction": "inbound",
            "call_timestamp": f"{day}T17:05:00Z",
        }
    )
    # Rows discovery skips: a file that is missing, and a format CallCov does not support.
    rows.append(
        {
            "file": "call_14.wav",
            "agent_id": "agent_chen",
            "contact_id": "customer_2014",
            "call_direction": "inbound",
            "call_timestamp": f"{day}T17:30:00Z",
        }
    )
    (folder / "call_15.aac").write_bytes(b"\x00" * 64)
    rows.append(
        {
            "file": "call_15.aac",
            "agent_id": "agent_dana",
            "contact_id": "customer_2015",
            "call_direction": "outbound",
            "call_timestamp": f"{day}T17:45:00Z",
        }
    )
    with (folder / "calls.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def emulator_launcher(log_path: Path) -> Any:
    """The emulator as the demo runs it: its own process group on a free port, output in ``log_path``."""
    from callcov_provider.testing.server import EmulatorLauncher

    log_path.unlink(missing_ok=True)
    return EmulatorLauncher((DEMO_KEY,), "1-4", in_subprocess=True, startup_timeout=30, log_path=log_path)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """End a process group we started: SIGTERM, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def airflow_env(base_url: str, recordings: Path, reports: Path) -> dict[str, str]:
    """The environment of the Airflow run: a project-local home and a connection to the emulator."""
    import json

    env = dict(os.environ)
    home = DEMO / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            # The "CallCov Analysis" extra link goes to the emulator's own view of the analysis (its
            # control API's JSON, there while the emulator runs), not to a dashboard that never saw it.
            "AIRFLOW_CONN_CALLCOV_DEFAULT": json.dumps(
                {
                    "conn_type": "callcov",
                    "host": base_url,
                    "password": DEMO_KEY,
                    "extra": {"dashboard_url": base_url.removesuffix("/api/v1") + "/_emulator"},
                }
            ),
            "CALLCOV_RECORDINGS_ROOT": str(recordings),
            "CALLCOV_REPORTS_ROOT": str(reports),
            "CALLCOV_POLL_INTERVAL": "2",
        }
    )
    return env


def run(command: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run a command in its own process group, teeing nothing: its output goes to ``log_path``."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait()
        finally:
            stop(process)


def summarise(report_dir: Path) -> None:
    """Print the scorecards the run wrote, one line per agent."""
    csv_path = report_dir / "scorecards.csv"
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = {
        "agent_id": "agent",
        "calls": "calls",
        "rejected": "rejected",
        "completed": "completed",
        "failed": "failed",
        "avg_customer_effort_score": "avg effort",
        "compliance_rate": "compliance",
        "greeting_rate": "greeting",
    }

    def cell(column: str, value: str) -> str:
        if column.endswith("_rate") and value:
            return f"{float(value):.0%}"
        if column == "avg_customer_effort_score" and value:
            return f"{float(value):.2f}"
        return value or "-"

    table = [list(columns.values())] + [[cell(c, row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    print()
    for line in table:
        print(
            "  ".join(
                value.ljust(w) if i == 0 else value.rjust(w)
                for i, (value, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    print()
    print(f"Report: {report_dir / 'report.html'}")
    print(f"CSV:    {csv_path}")


def main(argv: list[str] | None = None) -> int:
    """Generate, serve, run, stop, summarise."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    parser.add_argument("--day", default=yesterday, help="the last day to analyse (default: yesterday, UTC)")
    parser.add_argument("--days", type=int, default=3, help="how many days, ending --day (default: 3)")
    args = parser.parse_args(argv)
    last = datetime.fromisoformat(args.day)
    days = [
        (last - timedelta(days=back)).strftime("%Y-%m-%d") for back in range(max(args.days, 1) - 1, -1, -1)
    ]

    # SIGTERM ends the demo like Ctrl-C does, so the finally below always stops what we started.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    DEMO.mkdir(exist_ok=True)
    recordings, reports = DEMO / "recordings", DEMO / "reports"
    started = time.monotonic()
    for variant, day in enumerate(days):
        folder = generate_recordings(day, recordings, variant)
        print(f"Generated the demo recordings of {day} in {folder}")
    emulator = emulator_launcher(DEMO / "emulator.log")
    try:
        try:
            base_url = emulator.start().base_url
        except RuntimeError as err:
            raise SystemExit(f"The emulator did not start; see {DEMO / 'emulator.log'}") from err
        print(f"CallCov emulator running at {base_url}")
        env = airflow_env(base_url, recordings, reports)
        airflow = str(Path(sys.executable).with_name("airflow"))
        if run([airflow, "db", "migrate"], env, DEMO / "airflow-db.log") != 0:
            print(f"airflow db migrate failed; see {DEMO / 'airflow-db.log'}")
            return 1
        for day in days:
            print("Running: airflow dags test callcov_daily_batch", day)
            code = run(
                [airflow, "dags", "test", "callcov_daily_batch", day], env, DEMO / f"dag-run-{day}.log"
            )
            if code != 0 or not (reports / day / "report.html").exists():
                print(f"The DAG run failed (exit {code}); its log is {DEMO / f'dag-run-{day}.log'}")
                return 1
        print("Running: airflow dags test callcov_weekly_trend", args.day)
        code = run([airflow, "dags", "test", "callcov_weekly_trend", args.day], env, DEMO / "trend-run.log")
    except KeyboardInterrupt:
        print("Interrupted; stopping the emulator.")
        return 130
    finally:
        emulator.stop()
    trend_html = reports / "weekly" / "trend.html"
    if code != 0 or not trend_html.exists():
        print(f"The weekly trend run failed (exit {code}); its log is {DEMO / 'trend-run.log'}")
        return 1
    summarise(reports / args.day)
    print(f"Trend:  {trend_html}")
    print(f"Done in {time.monotonic() - started:.0f}s. Run logs: {DEMO}/dag-run-<day>.log, trend-run.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
