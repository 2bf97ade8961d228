"""
Smoke run of the benchmarks (``benchmarks/run.py --quick``): every row still runs against the emulator and
produces its figures. Behaviour only: nothing here asserts a timing or a target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Row 7 starts real Airflow three times (about 15 min): --quick leaves it out unless asked for.
ROWS = ("1", "2", "3", "4", "5", "6", "8")


@pytest.mark.slow
@pytest.mark.integration
def test_quick_benchmarks_produce_every_row(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    figures = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCOV_BENCH_")}
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--results",
            str(results),
            "--json",
            str(figures),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    produced = json.loads(figures.read_text())
    assert sorted(produced) == list(ROWS)
    for row, row_result in produced.items():
        assert row_result["figures"], f"row {row} produced no figures"
        for figure in row_result["figures"]:
            assert figure["ours"], f"row {row}: {figure['what']} has no value"
    text = results.read_text()
    assert "## Machine" in text
    for row in ROWS:
        assert f"## Row {row}:" in text
