"""
Per-agent scorecards of a day's CallCov batch, and the weekly trend: the reporting the example DAGs use.

A subpackage of the provider rather than a file beside the example DAGs: the DAGs' tasks import it on the
workers (a DAG folder is not always importable as a package there), and a user's own DAG can call the
same functions on its own batch outcomes. It depends on nothing but the standard library and Jinja
(which Airflow ships), makes no request, and writes only where it is told (never inside the package).

* :mod:`~callcov_provider.reporting.tally`: counting a batch per agent (:func:`build_daily_report`) and
  what each number means (:data:`METRIC_DEFINITIONS`);
* :mod:`~callcov_provider.reporting.tables`: CSV and the plain-text table of the task log;
* :mod:`~callcov_provider.reporting.charts` and :mod:`~callcov_provider.reporting.pages`: the HTML pages,
  from the templates in ``templates/`` with autoescaping;
* :mod:`~callcov_provider.reporting.trend`: the weekly trend over several days' CSVs;
* :mod:`~callcov_provider.reporting.manifest`: reading a day's ``calls.csv``;
* :mod:`~callcov_provider.reporting.assets`: the example DAGs' asset and default reports folder.
"""

from __future__ import annotations

from callcov_provider.reporting.pages import render_html, render_trend_html, write_report
from callcov_provider.reporting.tables import format_table, read_scorecards_csv, write_csv
from callcov_provider.reporting.tally import (
    METRIC_DEFINITIONS,
    AgentScorecard,
    DailyReport,
    build_daily_report,
)
from callcov_provider.reporting.trend import (
    build_weekly_trend,
    find_daily_reports,
    format_trend_table,
    weekly_trend_report,
    write_trend,
)

__all__ = [
    "METRIC_DEFINITIONS",
    "AgentScorecard",
    "DailyReport",
    "build_daily_report",
    "build_weekly_trend",
    "find_daily_reports",
    "format_table",
    "format_trend_table",
    "read_scorecards_csv",
    "render_html",
    "render_trend_html",
    "weekly_trend_report",
    "write_csv",
    "write_report",
    "write_trend",
]
