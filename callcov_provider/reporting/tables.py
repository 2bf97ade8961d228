"""
The daily report as CSV and as a plain-text table for the task log; the number formats the pages share.

Rates are fractions from 0 to 1 in the CSV, percentages on the pages and in the table.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from callcov_provider.reporting.tally import SENTIMENTS, AgentScorecard, DailyReport

#: File name of a day's scorecards, written by :func:`write_csv` through ``write_report``.
SCORECARDS_CSV = "scorecards.csv"
#: Separator of multi-valued CSV cells (top recommendations, failure reasons).
CSV_LIST_SEPARATOR = " | "

#: The columns of ``scorecards.csv``, in order. ``scope`` is ``agent`` for an agent's row and ``total``
#: for the totals row; rates are fractions (0 to 1), empty when there was nothing to measure.
CSV_COLUMNS = (
    "day",
    "scope",
    "agent_id",
    "calls",
    "submitted",
    "rejected",
    "completed",
    "failed",
    "pending",
    "avg_customer_effort_score",
    "compliance_rate",
    "greeting_rate",
    "sentiment_positive",
    "sentiment_neutral",
    "sentiment_negative",
    "top_recommendations",
    "failure_reasons",
)

#: Characters that make a spreadsheet read a cell as a formula (CSV injection); such cells get a ``'``.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def fmt_float(value: float | None, digits: int = 4) -> str:
    """A CSV number: up to ``digits`` decimals, no trailing zeros; empty for ``None``."""
    return "" if value is None else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def fmt_pct(value: float | None) -> str:
    """A rate as a whole percentage; ``-`` for ``None``."""
    return "-" if value is None else f"{value * 100:.0f}%"


def fmt_ces(value: float | None) -> str:
    """A customer effort score with two decimals; ``-`` for ``None``."""
    return "-" if value is None else f"{value:.2f}"


def csv_safe(value: str) -> str:
    """Defuse a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...)."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def csv_unsafe(value: str) -> str:
    """Undo :func:`csv_safe`."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_PREFIXES) else value


def write_rows(path: Path | str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as CSV with ``columns`` (its folder is created); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})
    return target


def _scorecard_row(day: str, scope: str, card: AgentScorecard) -> dict[str, str]:
    return {
        "day": day,
        "scope": scope,
        "agent_id": csv_safe(card.agent_id),
        "calls": str(card.calls),
        "submitted": str(card.submitted),
        "rejected": str(card.rejected),
        "completed": str(card.completed),
        "failed": str(card.failed),
        "pending": str(card.pending),
        "avg_customer_effort_score": fmt_float(card.avg_customer_effort_score),
        "compliance_rate": fmt_float(card.compliance_rate),
        "greeting_rate": fmt_float(card.greeting_rate),
        "sentiment_positive": str(card.sentiment_mix.get("positive", 0)),
        "sentiment_neutral": str(card.sentiment_mix.get("neutral", 0)),
        "sentiment_negative": str(card.sentiment_mix.get("negative", 0)),
        "top_recommendations": csv_safe(
            CSV_LIST_SEPARATOR.join(f"{text} ({count})" for text, count in card.top_recommendations)
        ),
        "failure_reasons": csv_safe(CSV_LIST_SEPARATOR.join(card.failure_reasons)),
    }


def write_csv(report: DailyReport, path: Path | str) -> Path:
    """
    Write the report as CSV: one row per agent, then a totals row.

    The columns are :data:`CSV_COLUMNS`. Multi-valued cells (``top_recommendations``, each followed by
    its count in parentheses, and ``failure_reasons``) are joined with ``" | "``. Text cells a
    spreadsheet would read as a formula get a leading ``'``; :func:`read_scorecards_csv` removes it.

    :param report: The report.
    :param path: The CSV file to write (its folder is created).
    :return: The path written.
    """
    rows = [_scorecard_row(report.day, "agent", card) for card in report.scorecards]
    rows.append(_scorecard_row(report.day, "total", report.totals))
    return write_rows(path, CSV_COLUMNS, rows)


def read_scorecards_csv(path: Path | str) -> list[dict[str, str]]:
    """
    Read a ``scorecards.csv`` written by :func:`write_csv`.

    :param path: The CSV file.
    :return: One dict per row (the totals row included, with ``scope`` ``total``), values as strings.
    """
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            {key: csv_unsafe(value or "") for key, value in row.items() if key is not None}
            for row in csv.DictReader(handle)
        ]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Lay ``rows`` out in fixed-width columns (``right``: the indexes of right-aligned columns)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(headers), rule, *(line(row) for row in rows)]


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(report: DailyReport) -> str:
    """
    Format the report as a fixed-width plain-text table for the task log.

    One line per agent and a totals line, then the skipped manifest rows and the failure reasons.

    :param report: The report.
    :return: The table, lines joined with ``\\n``.
    """
    headers = ("agent", "calls", "sub", "rej", "done", "fail", "pend", "CES", "compl", "greet", "+/=/-")
    rows = [
        (
            clip(card.agent_id, 32),
            str(card.calls),
            str(card.submitted),
            str(card.rejected),
            str(card.completed),
            str(card.failed),
            str(card.pending),
            fmt_ces(card.avg_customer_effort_score),
            fmt_pct(card.compliance_rate),
            fmt_pct(card.greeting_rate),
            "/".join(str(card.sentiment_mix.get(label, 0)) for label in SENTIMENTS),
        )
        for card in [*report.scorecards, report.totals]
    ]
    lines = [f"CallCov scorecards for {report.day}", *text_table(headers, rows, set(range(1, len(headers))))]
    if report.skipped:
        lines.append(f"Skipped manifest rows: {len(report.skipped)}")
        lines.extend(f"  row {row['row']}: {row['reason']}" for row in report.skipped)
    failures = [(card.agent_id, reason) for card in report.scorecards for reason in card.failure_reasons]
    if failures:
        lines.append(f"Failed or rejected calls: {len(failures)}")
        lines.extend(f"  {agent}: {reason}" for agent, reason in failures)
    return "\n".join(lines)


def trend_cells(entry: Mapping[str, Any]) -> list[str]:
    """One row of the weekly trend as text: day, agent, calls, done, failed, CES, compliance, greeting."""
    return [
        str(entry.get("day", "")),
        str(entry.get("agent_id", "")),
        str(entry.get("calls", 0)),
        str(entry.get("completed", 0)),
        str(entry.get("failed", 0)),
        fmt_ces(entry.get("avg_customer_effort_score")),
        fmt_pct(entry.get("compliance_rate")),
        fmt_pct(entry.get("greeting_rate")),
    ]
