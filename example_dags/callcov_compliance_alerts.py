"""
CallCov compliance alerts: runs when analyses finish (event-driven, Airflow 3.0+), no sensor waiting.

Scheduled on an asset watched by :class:`~callcov_provider.triggers.events.AnalysisEventTrigger`: the
triggerer polls CallCov and each batch of newly finished analyses becomes an asset event. A run reads its
triggering events, lists those analyses' compliance results with ``ListAnalysesOperator(fields=...)``,
and writes ``<reports_root>/compliance_alerts/<run>.json``: every analysis the run was told about, and an
alert for each completed call that failed a compliance check.

On Airflow 2.11 there are no asset watchers: this file defines no DAG there.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from callcov_provider.reporting.assets import default_reports_root
from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS

#: Seconds between the watcher's polls of CallCov.
EVENT_POLL_INTERVAL = float(os.environ.get("CALLCOV_EVENT_POLL_INTERVAL", "60"))
#: Newest completed analyses the listing reads; announced ones older than that are read one by one.
LIST_SCAN_LIMIT = 2000
#: The fields the alert needs.
FIELDS = ["id", "status", "call.agent_id", "call.contact_id", "results.compliance"]


def failed_checks(record: dict[str, Any]) -> list[str]:
    """The compliance checks an analysis failed: ``passed`` false, or else ``flagged`` true."""
    compliance = ((record.get("results") or {}).get("compliance")) or {}
    failed = []
    for name, check in sorted(compliance.items()):
        if not isinstance(check, dict):
            continue
        passed = check.get("passed")
        if passed is False or (passed is None and check.get("flagged") is True):
            failed.append(name)
    return failed


if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import Asset, AssetWatcher

    from callcov_provider.triggers.events import AnalysisEventTrigger

    FINISHED_ANALYSES = Asset(
        name="callcov_finished_analyses",
        uri="callcov://analyses/finished",
        watchers=[
            AssetWatcher(
                name="callcov_finished_analyses_watcher",
                trigger=AnalysisEventTrigger(
                    callcov_conn_id="callcov_default",
                    status_filter=["completed", "failed"],
                    poll_interval=EVENT_POLL_INTERVAL,
                ),
            )
        ],
    )

    with DAG(
        dag_id="callcov_compliance_alerts",
        description="Alert on CallCov calls that failed a compliance check, as soon as they are analysed",
        schedule=[FINISHED_ANALYSES],
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["callcov", "example"],
        doc_md=__doc__,
    ) as dag:
        from callcov_provider.operators.list_analyses import ListAnalysesOperator

        @task
        def announced(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
            """The analyses the triggering events announced (compact summaries, in event order)."""
            summaries: list[dict[str, Any]] = []
            for events in (triggering_asset_events or {}).values():
                for event in events:
                    payload = (event.extra or {}).get("payload") or {}
                    summaries.extend(payload.get("analyses") or [])
            print(f"{len(summaries)} analyses announced")
            return summaries

        compliance = ListAnalysesOperator(
            task_id="compliance",
            status_filter="completed",
            fetch_all=True,
            max_results=LIST_SCAN_LIMIT,
            fields=FIELDS,
        )

        @task
        def write_alerts(
            summaries: list[dict[str, Any]], listed: list[dict[str, Any]], run_id: str | None = None
        ) -> str:
            """Write the run's alert file; read any completed analysis the listing did not reach."""
            from callcov_provider.hooks.callcov import CallCovHook
            from callcov_provider.operators.list_analyses import project

            by_id = {row["id"]: row for row in listed}
            completed = [s["id"] for s in summaries if s["status"] == "completed"]
            missing = [aid for aid in completed if aid not in by_id]
            if missing:
                hook = CallCovHook("callcov_default")
                for aid in missing:
                    by_id[aid] = project(hook.get_analysis(aid).to_xcom(), FIELDS)
            alerts = []
            for summary in summaries:
                record = by_id.get(summary["id"])
                failed = failed_checks(record) if record else []
                if failed:
                    alerts.append({**summary, "failed_checks": failed})
            out_dir = default_reports_root() / "compliance_alerts"
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual") + ".json")
            body = {"run_id": run_id, "announced": summaries, "alerts": alerts}
            path.write_text(json.dumps(body, indent=2))
            print(f"{len(alerts)} compliance alerts of {len(summaries)} analyses written to {path}")
            return str(path)

        summaries = announced()
        summaries >> compliance
        write_alerts(summaries, compliance.output)
