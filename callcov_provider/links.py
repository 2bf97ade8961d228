"""The "CallCov Analysis" extra link: from a task to its analysis in the CallCov dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey

#: XCom key under which the submitting task stores its analysis's dashboard URL.
ANALYSIS_URL_XCOM_KEY = "callcov_analysis_url"


def dashboard_url(base: str, analysis_id: str) -> str:
    """The dashboard page of one analysis."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}/analyses/{quote(analysis_id, safe='')}"


class CallCovAnalysisLink(BaseOperatorLink):
    """Link to the analysis a task submitted, in the CallCov dashboard (the ``dashboard_url`` extra)."""

    name = "CallCov Analysis"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:  # type: ignore[override]
        """Return the URL the task stored when it submitted, or an empty string before that."""
        url = XCom.get_value(key=ANALYSIS_URL_XCOM_KEY, ti_key=ti_key)
        return str(url) if url else ""
