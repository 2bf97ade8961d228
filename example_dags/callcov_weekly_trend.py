"""
Weekly CallCov trend: each time a day's scorecards are ready, chart the last seven days per agent.

Scheduled on the asset that `callcov_daily_batch`'s report task updates. It reads the latest seven
`<reports_root>/<YYYY-MM-DD>/scorecards.csv`, and writes `<reports_root>/weekly/trend.csv` and
`trend.html`: one line chart per metric (average customer effort score, compliance rate), one line
per agent, links to each day's report, and a table of calls, failures and rates per agent and day.
Each day's report links back to this page. With no daily report yet, the run ends as skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowSkipException, Param, task

from callcov_provider.reporting.assets import DAILY_REPORT_ASSET, default_reports_root

#: How many of the latest daily reports the trend covers.
TREND_DAYS = 7

with DAG(
    dag_id="callcov_weekly_trend",
    description="Per-agent trend over the last seven CallCov daily scorecards",
    schedule=[DAILY_REPORT_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "reports_root": Param(
            str(default_reports_root()), type="string", description="Where the daily reports are"
        ),
    },
    tags=["callcov", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def weekly_trend(params: dict[str, Any] | None = None) -> dict[str, str]:
        """Build the trend of the last seven daily reports, write it, and log it as a table."""
        from callcov_provider.reporting import format_trend_table, weekly_trend_report

        root = Path((params or {}).get("reports_root") or default_reports_root())
        trend, paths = weekly_trend_report(root, days=TREND_DAYS)
        if not paths:
            raise AirflowSkipException(f"No daily report under {root} yet")
        print(format_trend_table(trend))
        print(f"Trend written to {paths['html']}")
        return paths

    weekly_trend()
