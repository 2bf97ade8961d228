"""The weekly trend: several days' ``scorecards.csv`` read back as one entry per agent per day."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from callcov_provider.reporting.pages import TREND_CSV, TREND_FOLDER, TREND_HTML, render_trend_html
from callcov_provider.reporting.tables import (
    SCORECARDS_CSV,
    clip,
    csv_safe,
    fmt_float,
    read_scorecards_csv,
    text_table,
    trend_cells,
    write_rows,
)
from callcov_provider.reporting.tally import TOTAL_LABEL, number_or_none

#: The columns of ``trend.csv``, in order (one row per agent per day).
TREND_COLUMNS = (
    "day",
    "agent_id",
    "calls",
    "completed",
    "failed",
    "avg_customer_effort_score",
    "compliance_rate",
    "greeting_rate",
)


def _int(value: Any) -> int:
    number = number_or_none(value)
    return int(number) if number is not None else 0


def build_weekly_trend(daily_csv_paths: Sequence[Path | str]) -> list[dict[str, Any]]:
    """
    Build the trend of several days' scorecards: one entry per agent per day.

    The day is the CSV's ``day`` column, or else its folder's name. Totals rows (``scope`` ``total``, or
    without a ``scope`` column, ``agent_id`` ``TOTAL``) are left out.

    :param daily_csv_paths: ``scorecards.csv`` files, in any order.
    :return: Dicts with :data:`TREND_COLUMNS` keys (the rates and the score are floats or ``None``),
        ordered by day, then agent.
    """
    trend: list[dict[str, Any]] = []
    for path in daily_csv_paths:
        folder_day = Path(path).parent.name
        for row in read_scorecards_csv(path):
            agent_id = row.get("agent_id", "")
            scope = row.get("scope") or ("total" if agent_id == TOTAL_LABEL else "agent")
            if scope == "total":
                continue
            trend.append(
                {
                    "day": row.get("day") or folder_day,
                    "agent_id": agent_id,
                    "calls": _int(row.get("calls")),
                    "completed": _int(row.get("completed")),
                    "failed": _int(row.get("failed")),
                    "avg_customer_effort_score": number_or_none(row.get("avg_customer_effort_score")),
                    "compliance_rate": number_or_none(row.get("compliance_rate")),
                    "greeting_rate": number_or_none(row.get("greeting_rate")),
                }
            )
    trend.sort(key=lambda entry: (entry["day"], entry["agent_id"]))
    return trend


def find_daily_reports(reports_root: Path | str, *, limit: int = 7) -> list[Path]:
    """
    Find the ``scorecards.csv`` of the latest daily reports under ``reports_root``.

    Only folders named ``YYYY-MM-DD`` count (``weekly/`` and anything else is ignored).

    :param reports_root: The folder holding ``<YYYY-MM-DD>/scorecards.csv``.
    :param limit: How many days to keep, the latest ones.
    :return: The CSV files, oldest day first; empty when there is no report (or no folder).
    """
    root = Path(reports_root)
    if not root.is_dir():
        return []
    found: list[Path] = []
    for folder in root.iterdir():
        try:
            date.fromisoformat(folder.name)
        except ValueError:
            continue
        if (folder / SCORECARDS_CSV).is_file():
            found.append(folder / SCORECARDS_CSV)
    found.sort(key=lambda csv_path: csv_path.parent.name)
    return found[-limit:] if limit > 0 else []


def format_trend_table(trend: Sequence[Mapping[str, Any]]) -> str:
    """
    Format the trend as a fixed-width plain-text table for the task log.

    :param trend: The entries of :func:`build_weekly_trend`.
    :return: The table, lines joined with ``\\n``.
    """
    headers = ("day", "agent", "calls", "done", "failed", "CES", "compl", "greet")
    rows = []
    for entry in trend:
        cells = trend_cells(entry)
        cells[1] = clip(cells[1], 32)  # a log line, not a page: long agent ids are cut
        rows.append(tuple(cells))
    return "\n".join(["CallCov weekly trend", *text_table(headers, rows, set(range(2, len(headers))))])


def write_trend(trend: Sequence[Mapping[str, Any]], directory: Path | str) -> dict[str, str]:
    """
    Write ``trend.csv`` (columns :data:`TREND_COLUMNS`) and ``trend.html`` under ``directory``.

    :param trend: The entries of :func:`build_weekly_trend`.
    :param directory: The folder to write to (created if missing), ``<reports_root>/weekly``: the page
        links to each day's ``<reports_root>/<YYYY-MM-DD>/report.html``.
    :return: ``{"csv": path, "html": path}``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "day": entry.get("day", ""),
            "agent_id": csv_safe(str(entry.get("agent_id", ""))),
            "calls": entry.get("calls", 0),
            "completed": entry.get("completed", 0),
            "failed": entry.get("failed", 0),
            "avg_customer_effort_score": fmt_float(number_or_none(entry.get("avg_customer_effort_score"))),
            "compliance_rate": fmt_float(number_or_none(entry.get("compliance_rate"))),
            "greeting_rate": fmt_float(number_or_none(entry.get("greeting_rate"))),
        }
        for entry in trend
    ]
    csv_path = write_rows(folder / TREND_CSV, TREND_COLUMNS, rows)
    html_path = folder / TREND_HTML
    html_path.write_text(render_trend_html(trend), encoding="utf-8")
    return {"csv": str(csv_path), "html": str(html_path)}


def weekly_trend_report(
    reports_root: Path | str, *, days: int = 7
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """
    Build and write the trend of the latest ``days`` daily reports under ``reports_root``.

    Writes ``<reports_root>/weekly/trend.csv`` and ``trend.html``; writes nothing when there is no daily
    report yet.

    :param reports_root: The folder holding ``<YYYY-MM-DD>/scorecards.csv``.
    :param days: How many of the latest daily reports to read.
    :return: ``(trend, paths)``; both empty when there is no daily report.
    """
    csv_paths = find_daily_reports(reports_root, limit=days)
    if not csv_paths:
        return [], {}
    trend = build_weekly_trend(csv_paths)
    return trend, write_trend(trend, Path(reports_root) / TREND_FOLDER)
