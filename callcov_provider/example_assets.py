"""
The asset and the reports folder shared by the example DAGs.

``callcov_daily_batch`` writes ``<reports_root>/<YYYY-MM-DD>/scorecards.csv`` and ``report.html`` and
updates :data:`DAILY_REPORT_ASSET`; ``callcov_weekly_trend`` is scheduled on that asset and reads the
latest daily reports back.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.providers.common.compat.sdk import Asset

#: The environment variable that overrides :func:`default_reports_root`.
REPORTS_ROOT_ENV = "CALLCOV_REPORTS_ROOT"

#: Updated by the daily batch's report task each time a day's scorecards are written.
DAILY_REPORT_ASSET = Asset(name="callcov_daily_scorecards", uri="callcov://reports/daily_scorecards")


def default_reports_root() -> Path:
    """
    The folder the example DAGs write their reports to.

    :return: ``$CALLCOV_REPORTS_ROOT`` if set, else ``<repository>/.demo/reports``.
    """
    configured = os.environ.get(REPORTS_ROOT_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[1] / ".demo" / "reports"
