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

from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS

#: The environment variable that overrides :func:`default_reports_root`.
REPORTS_ROOT_ENV = "CALLCOV_REPORTS_ROOT"

#: The URI of :data:`DAILY_REPORT_ASSET`.
DAILY_REPORT_URI = "callcov://reports/daily_scorecards"

#: Updated by the daily batch's report task each time a day's scorecards are written. On Airflow 3 an
#: ``Asset`` with a name; on Airflow 2.11 the compat ``Asset`` is a ``Dataset``, which has a URI only.
DAILY_REPORT_ASSET = (
    Asset(name="callcov_daily_scorecards", uri=DAILY_REPORT_URI)
    if AIRFLOW_V_3_0_PLUS
    else Asset(uri=DAILY_REPORT_URI)
)


def default_reports_root() -> Path:
    """
    The folder the example DAGs write their reports to: never inside the installed package.

    :return: ``$CALLCOV_REPORTS_ROOT`` if set, else ``$AIRFLOW_HOME/callcov_reports`` (``AIRFLOW_HOME``
        defaulting to ``~/airflow``, as in Airflow).
    """
    configured = os.environ.get(REPORTS_ROOT_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME", "").strip() or "~/airflow"
    return Path(airflow_home).expanduser() / "callcov_reports"
