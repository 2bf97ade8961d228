"""
The daily report and the weekly trend as self-contained HTML pages, from the Jinja templates shipped in
``callcov_provider/reporting/templates`` with autoescaping on: every value from a manifest or the API is
escaped by the template engine, none is pasted into markup by hand.

The pages have inline CSS, no script and no external resource; the daily page links to the weekly trend
(``../weekly/trend.html``) and the trend page to each day's page, so a reports folder can be browsed as
files or served as is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from callcov_provider.reporting.charts import (
    BAND_LEGEND,
    DAILY_METRICS,
    TREND_METRICS,
    Metric,
    bar_chart,
    line_chart,
)
from callcov_provider.reporting.tables import SCORECARDS_CSV, fmt_ces, fmt_pct, trend_cells, write_csv
from callcov_provider.reporting.tally import (
    METRIC_DEFINITIONS,
    SENTIMENTS,
    AgentScorecard,
    DailyReport,
    number_or_none,
)

#: File name of a day's page, beside its ``scorecards.csv``.
REPORT_HTML = "report.html"
#: The folder, under the reports root, of the weekly trend; and its files.
TREND_FOLDER = "weekly"
TREND_CSV = "trend.csv"
TREND_HTML = "trend.html"

_DAILY_HEADERS = (
    "Agent",
    "Calls",
    "Completed",
    "Failed",
    "Rejected",
    "Pending",
    "Avg CES",
    "Compliance",
    "Greeting",
    "Sentiment pos / neu / neg",
)
_TREND_HEADERS = ("Day", "Agent", "Calls", "Completed", "Failed", "Avg CES", "Compliance", "Greeting")
_SUMMARY_HEADERS = (
    "Agent",
    "Days",
    "Calls",
    "Failed",
    "Avg CES, first day → last",
    "Compliance, first day → last",
)


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("callcov_provider.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _glossary(*terms: str) -> list[tuple[str, str]]:
    return [(term, METRIC_DEFINITIONS[term]) for term in terms]


def _scorecard_cells(card: AgentScorecard, label: str) -> list[str]:
    return [
        label,
        str(card.calls),
        str(card.completed),
        str(card.failed),
        str(card.rejected),
        str(card.pending),
        fmt_ces(card.avg_customer_effort_score),
        fmt_pct(card.compliance_rate),
        fmt_pct(card.greeting_rate),
        " / ".join(str(card.sentiment_mix.get(label, 0)) for label in SENTIMENTS),
    ]


def render_html(report: DailyReport) -> str:
    """
    Render a day's report as one self-contained HTML page.

    The page has the day's totals, one chart per metric (customer effort apart from the rates), a table
    of the scorecards with a team row (cards on a phone), each agent's coaching recommendations and
    failures, the skipped manifest rows, and what each number means.

    :param report: The report.
    :return: The HTML document.
    """
    totals = report.totals
    tiles = [
        {"label": "Calls", "value": totals.calls, "bad": False},
        {"label": "Completed", "value": totals.completed, "bad": False},
        {"label": "Failed", "value": totals.failed, "bad": bool(totals.failed)},
        {"label": "Rejected", "value": totals.rejected, "bad": bool(totals.rejected)},
        {"label": "Still pending", "value": totals.pending, "bad": bool(totals.pending)},
        {"label": "Skipped rows", "value": len(report.skipped), "bad": bool(report.skipped)},
        {
            "label": "Avg CES (lower is better)",
            "value": fmt_ces(totals.avg_customer_effort_score),
            "bad": False,
        },
        {"label": "Compliance", "value": fmt_pct(totals.compliance_rate), "bad": False},
        {"label": "Greeting", "value": fmt_pct(totals.greeting_rate), "bad": False},
    ]
    rows = [{"cells": _scorecard_cells(card, card.agent_id), "total": False} for card in report.scorecards]
    if report.scorecards:
        rows.append({"cells": _scorecard_cells(totals, "Team"), "total": True})
    details = [
        {
            "agent_id": card.agent_id,
            "recommendations": card.top_recommendations,
            "failures": card.failure_reasons,
        }
        for card in report.scorecards
        if card.top_recommendations or card.failure_reasons
    ]
    return (
        _environment()
        .get_template("daily.html")
        .render(
            report=report,
            tiles=tiles,
            charts=[bar_chart(metric, report.scorecards, totals) for metric in DAILY_METRICS],
            band_legend=BAND_LEGEND,
            headers=_DAILY_HEADERS,
            rows=rows,
            details=details,
            trend_href=f"../{TREND_FOLDER}/{TREND_HTML}",
            csv_href=SCORECARDS_CSV,
            glossary=_glossary(
                "Customer effort score (CES)",
                "Compliance rate",
                "Greeting rate",
                "Rejected",
                "Failed",
                "Skipped rows",
            ),
        )
    )


def _change(metric: Metric, first: float | None, last: float | None) -> str:
    """``first → last`` and whether that is better or worse, in words."""
    if first is None or last is None:
        return metric.fmt(last)
    shown = f"{metric.fmt(first)} → {metric.fmt(last)}"
    if metric.fmt(first) == metric.fmt(last):
        return f"{shown} (same)"
    better = (last < first) == metric.lower_is_better
    return f"{shown} ({'better' if better else 'worse'})"


def _agent_summary(trend: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per agent: days, calls, failed, and each trend metric from its first day to its last."""
    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for entry in trend:
        by_agent.setdefault(str(entry.get("agent_id", "")), []).append(entry)
    rows = []
    for agent, entries in sorted(by_agent.items()):
        entries = sorted(entries, key=lambda entry: str(entry.get("day", "")))
        row = [
            agent,
            str(len(entries)),
            str(sum(int(entry.get("calls", 0) or 0) for entry in entries)),
            str(sum(int(entry.get("failed", 0) or 0) for entry in entries)),
        ]
        for metric in TREND_METRICS:
            values = [number_or_none(entry.get(metric.key)) for entry in entries]
            known = [value for value in values if value is not None]
            row.append(
                _change(metric, known[0], known[-1])
                if len(known) > 1
                else metric.fmt(known[0] if known else None)
            )
        rows.append(row)
    return rows


def render_trend_html(trend: Sequence[Mapping[str, Any]]) -> str:
    """
    Render the trend as one self-contained HTML page: one line chart per metric (customer effort score,
    compliance rate), one line per agent, links to each day's page, a table per agent (first day to
    last, better or worse) and, folded, every entry.

    :param trend: The entries of ``build_weekly_trend``.
    :return: The HTML document.
    """
    days = sorted({str(entry.get("day", "")) for entry in trend})
    rows = [trend_cells(entry) for entry in trend]
    return (
        _environment()
        .get_template("trend.html")
        .render(
            days=days,
            day_href=lambda day: f"../{day}/{REPORT_HTML}",
            csv_href=TREND_CSV,
            charts=[line_chart(metric, trend) for metric in TREND_METRICS] if trend else [],
            headers=_TREND_HEADERS,
            rows=rows,
            summary_headers=_SUMMARY_HEADERS,
            summary=_agent_summary(trend),
            glossary=_glossary("Customer effort score (CES)", "Compliance rate", "Greeting rate"),
        )
    )


def write_report(report: DailyReport, directory: Path | str) -> dict[str, str]:
    """
    Write ``scorecards.csv`` and ``report.html`` under ``directory`` (created if missing).

    :param report: The report.
    :param directory: The day's report folder, ``<reports_root>/<YYYY-MM-DD>``: the page links to the
        trend at ``<reports_root>/weekly/trend.html``.
    :return: ``{"csv": path, "html": path}``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    html_path = folder / REPORT_HTML
    html_path.write_text(render_html(report), encoding="utf-8")
    return {"csv": str(write_csv(report, folder / SCORECARDS_CSV)), "html": str(html_path)}
