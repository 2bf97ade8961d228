"""
Per-agent scorecards of a day's CallCov batch, written as CSV, as one self-contained HTML page, and as a
plain-text table; plus the weekly trend over several days' scorecards.

Everything here is a pure function over plain dicts (what XCom carries): no Airflow, no network, standard
library only. The inputs are the three lists the daily DAG has at hand:

* ``calls``: the planned calls (dicts with ``agent_id``, ``contact_id``, ``audio_file``, ...), one per
  valid manifest row;
* ``statuses``: the sensor's compact list, one ``{id, status, agent_id, contact_id, error_message}`` per
  analysis of the batch (``agent_id``/``contact_id`` may be ``None``: they are then read from
  ``analyses``);
* ``analyses``: full or field-projected analysis dicts, nested as the API returns them (``id``,
  ``status``, ``call.agent_id``, ``results...``, ``metadata.error_message``). Analyses whose id is not in
  ``statuses`` (another day's batch, say) are ignored.

How a planned call is counted:

* **submitted** when a status entry has the same ``(agent_id, contact_id)``; each planned call is matched
  to at most one status entry, so a contact called twice by the same agent needs two entries;
* **rejected** when it is planned but no status entry matches it: it never got an analysis id, because
  the API refused the file;
* **completed**, **failed** or **pending** according to its status entry (an unknown or ``processing``
  status is pending).

A status entry that matches no planned call still belongs to the batch: it counts as a call of its
agent, and as submitted.

The quality metrics read only completed analyses, and only the values they carry (a ``null`` results
section, a missing check, a non-numeric score are left out of the averages rather than counted as zero):

* the **average customer effort score** (``results.coaching.customer_effort_score``, 1 to 5, lower is
  better);
* the **compliance rate**: passed checks over the known outcomes of ``identity_verification``,
  ``mandatory_disclosures`` and ``purpose_declaration``. A check passed when ``passed`` is true, or when
  ``passed`` is absent and ``flagged`` is false;
* the **greeting rate**: the share of completed calls whose ``results.quality.greeting.present`` is true,
  over those where it is known;
* the **sentiment mix** (``results.quality.sentiment_analysis.overall``) and the three most frequent
  coaching recommendations (strings, or dicts with a ``text``, ``recommendation`` or ``title`` key).

Rates are fractions from 0 to 1 in the dataclasses and the CSV, percentages in the HTML and the table.
"""

from __future__ import annotations

import csv
import html
import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

#: The compliance checks that make up the compliance rate.
COMPLIANCE_CHECKS = ("identity_verification", "mandatory_disclosures", "purpose_declaration")
#: The sentiment labels of the sentiment mix, in display order.
SENTIMENTS = ("positive", "neutral", "negative")
#: Keys under which a recommendation given as a dict carries its text, in order of preference.
RECOMMENDATION_KEYS = ("text", "recommendation", "title")
#: How many coaching recommendations a scorecard keeps.
TOP_RECOMMENDATIONS = 3
#: The ``agent_id`` of the totals row (CSV, table) and of :attr:`DailyReport.totals`.
TOTAL_LABEL = "TOTAL"
#: File names written by :func:`write_report` and :func:`write_trend`.
SCORECARDS_CSV = "scorecards.csv"
REPORT_HTML = "report.html"
TREND_CSV = "trend.csv"
TREND_HTML = "trend.html"
#: The agent of a batch analysis whose agent is known neither from its status nor from ``analyses``.
UNKNOWN_AGENT = "(unknown)"
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

_STATUS_COMPLETED = "completed"
_STATUS_FAILED = "failed"
#: Characters that make a spreadsheet read a cell as a formula (CSV injection); such cells get a ``'``.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: Series colours of the charts (colour-blind friendly).
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")

# --------------------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------------------


@dataclass
class AgentScorecard:
    """
    One agent's results for a batch of calls.

    :param agent_id: The agent, as written in the manifest.
    :param calls: Calls planned for the agent (plus any batch analysis that matched no planned call).
    :param submitted: Calls that got an analysis id.
    :param rejected: Planned calls that never got an analysis id: the API refused the file.
    :param completed: Analyses that completed.
    :param failed: Analyses that failed.
    :param avg_customer_effort_score: Mean customer effort score (1 to 5, lower is better) of the
        completed calls that carry one, or ``None``.
    :param compliance_rate: Share of passed compliance checks (0 to 1), or ``None``.
    :param greeting_rate: Share of completed calls with a greeting (0 to 1), or ``None``.
    :param sentiment_mix: Completed calls per overall sentiment: ``positive``, ``neutral``, ``negative``.
    :param top_recommendations: The most frequent coaching recommendations with their counts, most
        frequent first (ties in alphabetical order).
    :param failure_reasons: One line per failed analysis or rejected call.
    :param pending: Analyses still processing, or with a status this module does not know.
    """

    agent_id: str
    calls: int = 0
    submitted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    avg_customer_effort_score: float | None = None
    compliance_rate: float | None = None
    greeting_rate: float | None = None
    sentiment_mix: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SENTIMENTS, 0))
    top_recommendations: list[tuple[str, int]] = field(default_factory=list)
    failure_reasons: list[str] = field(default_factory=list)
    pending: int = 0


@dataclass
class DailyReport:
    """
    A day's report: one scorecard per agent, the manifest rows skipped, and the totals.

    :param day: The day, ``YYYY-MM-DD``.
    :param scorecards: One :class:`AgentScorecard` per agent, sorted by ``agent_id``.
    :param skipped: The manifest rows skipped before submission, ``{"row": n, "reason": "..."}``.
    :param totals: The whole batch as one scorecard (``agent_id`` is :data:`TOTAL_LABEL`); its rates are
        computed over every call, not averaged over agents.
    """

    day: str
    scorecards: list[AgentScorecard]
    skipped: list[dict[str, Any]]
    totals: AgentScorecard


# --------------------------------------------------------------------------------------------------------
# Reading the inputs
# --------------------------------------------------------------------------------------------------------


def _get(record: Any, path: str) -> Any:
    """Follow a dotted ``path`` through nested mappings; ``None`` when any step is missing or null."""
    if isinstance(record, Mapping) and path in record:
        # A flat, already-projected key ("call.agent_id") is accepted too.
        return record[path]
    current = record
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _text(value: Any) -> str | None:
    """A non-empty, stripped string, or ``None``."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _status(value: Any) -> str:
    return (_text(value) or "").lower()


def _number(value: Any) -> float | None:
    """A finite number (``bool`` is not one), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_passed(check: Any) -> bool | None:
    """Whether a compliance check passed: ``passed`` if set, else ``not flagged``; ``None`` if unknown."""
    if isinstance(check, bool):
        return check
    if not isinstance(check, Mapping):
        return None
    passed = check.get("passed")
    if isinstance(passed, bool):
        return passed
    flagged = check.get("flagged")
    if isinstance(flagged, bool):
        return not flagged
    return None


def _recommendation_text(item: Any) -> str | None:
    if isinstance(item, Mapping):
        for key in RECOMMENDATION_KEYS:
            text = _text(item.get(key))
            if text:
                return text
        return None
    if isinstance(item, str):
        return _text(item)
    return None


def _sentiment_label(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("label", value.get("overall"))
    label = (_text(value) or "").lower()
    return label if label in SENTIMENTS else None


@dataclass
class _Tally:
    """Running counts of one agent (or of the whole batch) before they become a scorecard."""

    calls: int = 0
    submitted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    effort_scores: list[float] = field(default_factory=list)
    checks_passed: int = 0
    checks_known: int = 0
    greetings: int = 0
    greetings_known: int = 0
    sentiments: Counter[str] = field(default_factory=Counter)
    recommendations: Counter[str] = field(default_factory=Counter)
    failure_reasons: list[str] = field(default_factory=list)

    def add_results(self, analysis: Mapping[str, Any] | None) -> None:
        """Add a completed analysis's quality metrics (nothing when it or its results are missing)."""
        results = _get(analysis, "results")
        if not isinstance(results, Mapping):
            return
        score = _number(_get(results, "coaching.customer_effort_score"))
        if score is not None:
            self.effort_scores.append(score)
        for name in COMPLIANCE_CHECKS:
            passed = _check_passed(_get(results, f"compliance.{name}"))
            if passed is not None:
                self.checks_known += 1
                self.checks_passed += int(passed)
        greeting = _get(results, "quality.greeting.present")
        if isinstance(greeting, bool):
            self.greetings_known += 1
            self.greetings += int(greeting)
        label = _sentiment_label(_get(results, "quality.sentiment_analysis.overall"))
        if label is not None:
            self.sentiments[label] += 1
        recommendations = _get(results, "coaching.recommendations")
        if isinstance(recommendations, (list, tuple)):
            for item in recommendations:
                text = _recommendation_text(item)
                if text is not None:
                    self.recommendations[text] += 1

    def merge(self, other: _Tally) -> None:
        """Add another tally's counts to this one."""
        for name in ("calls", "submitted", "rejected", "completed", "failed", "pending"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.effort_scores.extend(other.effort_scores)
        self.checks_passed += other.checks_passed
        self.checks_known += other.checks_known
        self.greetings += other.greetings
        self.greetings_known += other.greetings_known
        self.sentiments.update(other.sentiments)
        self.recommendations.update(other.recommendations)
        self.failure_reasons.extend(other.failure_reasons)

    def scorecard(self, agent_id: str) -> AgentScorecard:
        """The tally as a scorecard."""
        ranked = sorted(self.recommendations.items(), key=lambda item: (-item[1], item[0]))
        return AgentScorecard(
            agent_id=agent_id,
            calls=self.calls,
            submitted=self.submitted,
            rejected=self.rejected,
            completed=self.completed,
            failed=self.failed,
            pending=self.pending,
            avg_customer_effort_score=(
                sum(self.effort_scores) / len(self.effort_scores) if self.effort_scores else None
            ),
            compliance_rate=self.checks_passed / self.checks_known if self.checks_known else None,
            greeting_rate=self.greetings / self.greetings_known if self.greetings_known else None,
            sentiment_mix={label: self.sentiments.get(label, 0) for label in SENTIMENTS},
            top_recommendations=ranked[:TOP_RECOMMENDATIONS],
            failure_reasons=list(self.failure_reasons),
        )


def _tally_batch(
    calls: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    analyses: Sequence[Mapping[str, Any]],
) -> dict[str, _Tally]:
    """Count the batch per agent (see the module's docstring for the rules)."""
    # The sensor returns one analysis, not a list, when it waited for a single id.
    status_list = [statuses] if isinstance(statuses, Mapping) else list(statuses or ())
    by_id: dict[str, Mapping[str, Any]] = {}
    for record in analyses or ():
        record_id = _text(_get(record, "id"))
        if record_id is not None:
            by_id.setdefault(record_id, record)

    # The batch's analyses, once per id, with their agent and contact filled in from ``analyses``.
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for status in status_list:
        if not isinstance(status, Mapping):
            continue
        analysis_id = _text(status.get("id"))
        if analysis_id is not None:
            if analysis_id in seen:
                continue
            seen.add(analysis_id)
        analysis = by_id.get(analysis_id) if analysis_id is not None else None
        entries.append(
            {
                "id": analysis_id,
                "status": _status(status.get("status")) or _status(_get(analysis, "status")),
                "agent_id": _text(_get(status, "agent_id"))
                or _text(_get(status, "call.agent_id"))
                or _text(_get(analysis, "call.agent_id")),
                "contact_id": _text(_get(status, "contact_id"))
                or _text(_get(status, "call.contact_id"))
                or _text(_get(analysis, "call.contact_id")),
                "error_message": _text(status.get("error_message"))
                or _text(_get(status, "metadata.error_message"))
                or _text(_get(analysis, "metadata.error_message"))
                or _text(_get(analysis, "error")),
                "analysis": analysis,
            }
        )

    unmatched: dict[tuple[str | None, str | None], deque[dict[str, Any]]] = defaultdict(deque)
    for entry in entries:
        unmatched[(entry["agent_id"], entry["contact_id"])].append(entry)

    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for call in calls or ():
        if not isinstance(call, Mapping):
            continue
        agent_id = _text(call.get("agent_id")) or UNKNOWN_AGENT
        contact_id = _text(call.get("contact_id"))
        tally = tallies[agent_id]
        tally.calls += 1
        queue = unmatched.get((agent_id, contact_id))
        if queue:
            _count_analysis(tally, queue.popleft())
            continue
        tally.rejected += 1
        audio = _text(call.get("audio_file"))
        where = f" ({Path(audio).name})" if audio else ""
        tally.failure_reasons.append(f"{contact_id or '?'}: rejected at submission{where}, no analysis id")

    # Batch analyses no planned call claimed: still the batch's calls.
    for queue in unmatched.values():
        for entry in queue:
            tally = tallies[entry["agent_id"] or UNKNOWN_AGENT]
            tally.calls += 1
            _count_analysis(tally, entry)
    return tallies


def _count_analysis(tally: _Tally, entry: Mapping[str, Any]) -> None:
    tally.submitted += 1
    status = entry["status"]
    if status == _STATUS_COMPLETED:
        tally.completed += 1
        tally.add_results(entry["analysis"])
    elif status == _STATUS_FAILED:
        tally.failed += 1
        reason = entry["error_message"] or "analysis failed, no reason given"
        tally.failure_reasons.append(f"{entry['contact_id'] or entry['id'] or '?'}: {reason}")
    else:
        tally.pending += 1


# --------------------------------------------------------------------------------------------------------
# Building the report
# --------------------------------------------------------------------------------------------------------


def build_scorecards(
    *,
    calls: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    analyses: Sequence[Mapping[str, Any]],
) -> list[AgentScorecard]:
    """
    Build one scorecard per agent of a batch.

    :param calls: The planned calls: dicts with ``agent_id``, ``contact_id`` and ``audio_file``.
    :param statuses: The sensor's compact list of the batch's analyses (``id``, ``status``, ``agent_id``,
        ``contact_id``, ``error_message``); a single analysis dict is accepted too.
    :param analyses: Full or field-projected analyses; only those whose id is in ``statuses`` count.
    :return: The scorecards, sorted by ``agent_id``. An empty batch gives an empty list.
    """
    tallies = _tally_batch(calls, statuses, analyses)
    return [tallies[agent_id].scorecard(agent_id) for agent_id in sorted(tallies)]


def build_daily_report(
    *,
    day: str,
    calls: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    analyses: Sequence[Mapping[str, Any]],
    skipped: Iterable[Mapping[str, Any]] = (),
) -> DailyReport:
    """
    Build a day's report: the scorecards of :func:`build_scorecards`, the skipped rows and the totals.

    :param day: The day, ``YYYY-MM-DD``.
    :param calls: The planned calls (see :func:`build_scorecards`).
    :param statuses: The sensor's compact list of the batch's analyses.
    :param analyses: Full or field-projected analyses.
    :param skipped: The manifest rows skipped before submission, ``{"row": n, "reason": "..."}``.
    :return: The :class:`DailyReport`.
    """
    tallies = _tally_batch(calls, statuses, analyses)
    total = _Tally()
    for agent_id in sorted(tallies):
        total.merge(tallies[agent_id])
    return DailyReport(
        day=str(day),
        scorecards=[tallies[agent_id].scorecard(agent_id) for agent_id in sorted(tallies)],
        skipped=[{"row": row.get("row"), "reason": row.get("reason")} for row in skipped or ()],
        totals=total.scorecard(TOTAL_LABEL),
    )


# --------------------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------------------


def _fmt_float(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _fmt_ces(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _fmt_recommendations(items: Sequence[tuple[str, int]]) -> str:
    return CSV_LIST_SEPARATOR.join(f"{text} ({count})" for text, count in items)


def _csv_safe(value: str) -> str:
    """Defuse a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...)."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def _csv_unsafe(value: str) -> str:
    """Undo :func:`_csv_safe`."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_PREFIXES) else value


def _scorecard_row(day: str, scope: str, card: AgentScorecard) -> dict[str, str]:
    return {
        "day": day,
        "scope": scope,
        "agent_id": _csv_safe(card.agent_id),
        "calls": str(card.calls),
        "submitted": str(card.submitted),
        "rejected": str(card.rejected),
        "completed": str(card.completed),
        "failed": str(card.failed),
        "pending": str(card.pending),
        "avg_customer_effort_score": _fmt_float(card.avg_customer_effort_score),
        "compliance_rate": _fmt_float(card.compliance_rate),
        "greeting_rate": _fmt_float(card.greeting_rate),
        "sentiment_positive": str(card.sentiment_mix.get("positive", 0)),
        "sentiment_neutral": str(card.sentiment_mix.get("neutral", 0)),
        "sentiment_negative": str(card.sentiment_mix.get("negative", 0)),
        "top_recommendations": _csv_safe(_fmt_recommendations(card.top_recommendations)),
        "failure_reasons": _csv_safe(CSV_LIST_SEPARATOR.join(card.failure_reasons)),
    }


def _write_rows(path: Path | str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})
    return target


# --------------------------------------------------------------------------------------------------------
# CSV and plain text
# --------------------------------------------------------------------------------------------------------


def write_csv(report: DailyReport, path: Path | str) -> Path:
    """
    Write the report as CSV: one row per agent, then a totals row.

    The columns are :data:`CSV_COLUMNS`: ``day``, ``scope`` (``agent`` or ``total``), ``agent_id``
    (:data:`TOTAL_LABEL` on the totals row), the counts (``calls``, ``submitted``, ``rejected``,
    ``completed``, ``failed``, ``pending``), ``avg_customer_effort_score``, ``compliance_rate`` and
    ``greeting_rate`` (fractions, empty when unknown), the sentiment mix as ``sentiment_positive``,
    ``sentiment_neutral`` and ``sentiment_negative``, and ``top_recommendations`` and
    ``failure_reasons``, each joined with ``" | "`` (a recommendation is followed by its count in
    parentheses). Text cells a spreadsheet would read as a formula get a leading ``'``;
    :func:`read_scorecards_csv` removes it.

    :param report: The report.
    :param path: The CSV file to write (its folder is created).
    :return: The path written.
    """
    rows = [_scorecard_row(report.day, "agent", card) for card in report.scorecards]
    rows.append(_scorecard_row(report.day, "total", report.totals))
    return _write_rows(path, CSV_COLUMNS, rows)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
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


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(report: DailyReport) -> str:
    """
    Format the report as a fixed-width plain-text table for the task log.

    One line per agent and a totals line (calls, submitted, rejected, completed, failed, pending, average
    customer effort score, compliance and greeting rates, sentiment mix), then the skipped manifest rows
    and the failure reasons.

    :param report: The report.
    :return: The table, lines joined with ``\\n``.
    """
    headers = ("agent", "calls", "sub", "rej", "done", "fail", "pend", "CES", "compl", "greet", "+/=/-")
    cards = [*report.scorecards, report.totals]
    rows = [
        (
            _clip(card.agent_id, 32),
            str(card.calls),
            str(card.submitted),
            str(card.rejected),
            str(card.completed),
            str(card.failed),
            str(card.pending),
            _fmt_ces(card.avg_customer_effort_score),
            _fmt_pct(card.compliance_rate),
            _fmt_pct(card.greeting_rate),
            "/".join(str(card.sentiment_mix.get(label, 0)) for label in SENTIMENTS),
        )
        for card in cards
    ]
    lines = [f"CallCov scorecards for {report.day}", *_table(headers, rows, set(range(1, len(headers))))]
    if report.skipped:
        lines.append(f"Skipped manifest rows: {len(report.skipped)}")
        lines.extend(f"  row {row['row']}: {row['reason']}" for row in report.skipped)
    failures = [(card.agent_id, reason) for card in report.scorecards for reason in card.failure_reasons]
    if failures:
        lines.append(f"Failed or rejected calls: {len(failures)}")
        lines.extend(f"  {agent}: {reason}" for agent, reason in failures)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:90rem;padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}
.sub{color:#57606a;margin-top:0}
.totals{display:flex;flex-wrap:wrap;gap:.75rem;padding:0;list-style:none}
.totals li{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .9rem;min-width:6.5rem}
.totals b{display:block;font-size:1.4rem}
.totals .bad b{color:#cf222e}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:600;border-top:2px solid #8c959f}
ul.reasons{margin:.2rem 0;padding-left:1.1rem}
.chart{width:100%;max-width:56rem;height:auto}
.muted{color:#57606a}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _svg_text(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{_e(value)}"' for name, value in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{_e(text)}</text>'


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> list[str]:
    parts = []
    for index, (label, colour) in enumerate(items):
        top = y + index * 18
        parts.append(f'<rect x="{x:.1f}" y="{top - 10:.1f}" width="12" height="12" fill="{_e(colour)}"/>')
        parts.append(_svg_text(x + 18, top, label, font_size="12"))
    return parts


def render_chart_svg(scorecards: Sequence[AgentScorecard]) -> str:
    """
    Draw the scorecards as an inline SVG grouped bar chart, one group per agent.

    Each group has three bars: the average customer effort score on the right axis (0 to 5), and the
    compliance and greeting rates on the left axis (0 to 100 %). A value that is unknown has no bar.

    :param scorecards: The agents' scorecards.
    :return: An ``<svg>`` element, with a title, axis labels, value labels and a legend.
    """
    series = (
        ("Avg customer effort (1-5, lower is better; right axis)", _PALETTE[0]),
        ("Compliance rate (%)", _PALETTE[1]),
        ("Greeting rate (%)", _PALETTE[2]),
    )
    group_width = 100
    left, right, top, plot_h = 70, 70, 30, 240
    plot_w = max(group_width * max(len(scorecards), 1), 300)
    bottom = 70 + 18 * len(series)
    width, height = left + plot_w + right, top + plot_h + bottom
    y0 = top + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif">',
        "<title>Per-agent average customer effort score, compliance rate and greeting rate</title>",
    ]
    for step in range(5):
        y = y0 - plot_h * step / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#d0d7de"/>')
        parts.append(_svg_text(left - 6, y + 4, f"{step * 25}", text_anchor="end", font_size="11"))
        parts.append(
            _svg_text(left + plot_w + 6, y + 4, f"{step * 1.25:g}", text_anchor="start", font_size="11")
        )
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y0}" stroke="#57606a"/>')
    parts.append(f'<line x1="{left + plot_w}" y1="{top}" x2="{left + plot_w}" y2="{y0}" stroke="#57606a"/>')
    parts.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#57606a"/>')
    mid = top + plot_h / 2
    parts.append(
        _svg_text(
            18, mid, "Rate (%)", text_anchor="middle", font_size="12", transform=f"rotate(-90 18 {mid})"
        )
    )
    rx = width - 14
    parts.append(
        _svg_text(
            rx,
            mid,
            "Avg customer effort score",
            text_anchor="middle",
            font_size="12",
            transform=f"rotate(90 {rx} {mid})",
        )
    )
    parts.append(_svg_text(left + plot_w / 2, y0 + 42, "Agent", text_anchor="middle", font_size="12"))
    if not scorecards:
        parts.append(
            _svg_text(left + plot_w / 2, mid, "No calls in this batch", text_anchor="middle", font_size="14")
        )
    bar_w = 24
    for index, card in enumerate(scorecards):
        gx = left + index * group_width + (group_width - 3 * bar_w - 8) / 2
        values = (
            None if card.avg_customer_effort_score is None else card.avg_customer_effort_score / 5,
            card.compliance_rate,
            card.greeting_rate,
        )
        shown = (
            _fmt_ces(card.avg_customer_effort_score),
            _fmt_pct(card.compliance_rate),
            _fmt_pct(card.greeting_rate),
        )
        for bar, (fraction, (label, colour)) in enumerate(zip(values, series, strict=True)):
            if fraction is None:
                continue
            bar_h = plot_h * min(max(fraction, 0.0), 1.0)
            x = gx + bar * (bar_w + 4)
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 - bar_h:.1f}" width="{bar_w}" height="{bar_h:.1f}" '
                f'fill="{colour}"><title>{_e(card.agent_id)}: {_e(label)} {_e(shown[bar])}</title></rect>'
            )
            # The value above its bar, so that a 0 % (no visible bar) reads as a value, not a gap.
            parts.append(
                _svg_text(x + bar_w / 2, y0 - bar_h - 4, shown[bar], text_anchor="middle", font_size="9")
            )
        parts.append(
            _svg_text(
                left + index * group_width + group_width / 2,
                y0 + 18,
                _clip(card.agent_id, 12),
                text_anchor="middle",
                font_size="11",
            )
        )
    parts.extend(_legend(left, y0 + 64, series))
    parts.append("</svg>")
    return "\n".join(parts)


def _reasons_cell(reasons: Sequence[str]) -> str:
    if not reasons:
        return '<span class="muted">-</span>'
    return '<ul class="reasons">' + "".join(f"<li>{_e(reason)}</li>" for reason in reasons) + "</ul>"


def _scorecard_tr(card: AgentScorecard, css_class: str = "") -> str:
    recommendations = (
        "<br>".join(
            f'{_e(text)} <span class="muted">({count})</span>' for text, count in card.top_recommendations
        )
        or '<span class="muted">-</span>'
    )
    cells = [
        f"<td>{_e(card.agent_id)}</td>",
        *(f'<td class="n">{_e(v)}</td>' for v in (card.calls, card.submitted, card.rejected, card.completed)),
        f'<td class="n">{_e(card.failed)}</td>',
        f'<td class="n">{_e(_fmt_ces(card.avg_customer_effort_score))}</td>',
        f'<td class="n">{_e(_fmt_pct(card.compliance_rate))}</td>',
        f'<td class="n">{_e(_fmt_pct(card.greeting_rate))}</td>',
        '<td class="n">' + " / ".join(_e(card.sentiment_mix.get(s, 0)) for s in SENTIMENTS) + "</td>",
        f"<td>{recommendations}</td>",
        f"<td>{_reasons_cell(card.failure_reasons)}</td>",
    ]
    attr = f' class="{css_class}"' if css_class else ""
    return f"<tr{attr}>" + "".join(cells) + "</tr>"


def render_html(report: DailyReport) -> str:
    """
    Render the report as one self-contained HTML page.

    The page has inline CSS, no script and no external resource: a title and the day, the totals (calls,
    submitted, rejected, completed, failed, skipped manifest rows with their reasons), a chart
    (:func:`render_chart_svg`) and a table of the scorecards with a totals row. Every value is escaped.

    :param report: The report.
    :return: The HTML document.
    """
    totals = report.totals
    tiles = [
        ("Calls", totals.calls, ""),
        ("Submitted", totals.submitted, ""),
        ("Rejected", totals.rejected, "bad" if totals.rejected else ""),
        ("Completed", totals.completed, ""),
        ("Failed", totals.failed, "bad" if totals.failed else ""),
        ("Pending", totals.pending, "bad" if totals.pending else ""),
        ("Skipped rows", len(report.skipped), "bad" if report.skipped else ""),
        ("Avg CES", _fmt_ces(totals.avg_customer_effort_score), ""),
        ("Compliance", _fmt_pct(totals.compliance_rate), ""),
        ("Greeting", _fmt_pct(totals.greeting_rate), ""),
    ]
    tiles_html = "".join(
        f'<li class="{css}"><b>{_e(value)}</b>{_e(label)}</li>'
        if css
        else f"<li><b>{_e(value)}</b>{_e(label)}</li>"
        for label, value, css in tiles
    )
    if report.skipped:
        skipped_html = (
            "<h2>Skipped manifest rows</h2>\n<ul>"
            + "".join(f"<li>Row {_e(row.get('row'))}: {_e(row.get('reason'))}</li>" for row in report.skipped)
            + "</ul>"
        )
    else:
        skipped_html = '<p class="muted">No manifest rows were skipped.</p>'
    headers = (
        "Agent",
        "Calls",
        "Submitted",
        "Rejected",
        "Completed",
        "Failed",
        "Avg CES",
        "Compliance",
        "Greeting",
        "Sentiment (+ / = / -)",
        "Top coaching recommendations",
        "Failures",
    )
    rows = "\n".join(_scorecard_tr(card) for card in report.scorecards)
    if not report.scorecards:
        rows = f'<tr><td colspan="{len(headers)}" class="muted">No calls in this batch.</td></tr>'
    body = "\n".join(
        (
            f'<h1>CallCov daily scorecards</h1>\n<p class="sub">Day: <b>{_e(report.day)}</b></p>',
            f'<h2>Totals</h2>\n<ul class="totals">{tiles_html}</ul>',
            skipped_html,
            "<h2>Chart</h2>",
            render_chart_svg(report.scorecards),
            "<h2>Scorecards</h2>",
            "<table>\n<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead>\n<tbody>",
            rows,
            _scorecard_tr(totals, "total"),
            "</tbody>\n</table>",
            '<p class="muted">CES: customer effort score, 1 (effortless) to 5 (hard); rates are over the '
            "completed calls whose results carry the value.</p>",
        )
    )
    return _page(f"CallCov scorecards {report.day}", body)


def write_html(report: DailyReport, path: Path | str) -> Path:
    """
    Write :func:`render_html`'s page.

    :param report: The report.
    :param path: The HTML file to write (its folder is created).
    :return: The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(report), encoding="utf-8")
    return target


def write_report(report: DailyReport, directory: Path | str) -> dict[str, str]:
    """
    Write ``scorecards.csv`` and ``report.html`` under ``directory`` (created if missing).

    :param report: The report.
    :param directory: The day's report folder, e.g. ``<reports_root>/<YYYY-MM-DD>``.
    :return: ``{"csv": path, "html": path}``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "csv": str(write_csv(report, folder / SCORECARDS_CSV)),
        "html": str(write_html(report, folder / REPORT_HTML)),
    }


# --------------------------------------------------------------------------------------------------------
# Weekly trend
# --------------------------------------------------------------------------------------------------------


def read_scorecards_csv(path: Path | str) -> list[dict[str, str]]:
    """
    Read a ``scorecards.csv`` written by :func:`write_csv`.

    :param path: The CSV file.
    :return: One dict per row (the totals row included, with ``scope`` ``total``), values as strings.
    """
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            {key: _csv_unsafe(value or "") for key, value in row.items() if key is not None}
            for row in csv.DictReader(handle)
        ]


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def build_weekly_trend(daily_csv_paths: Sequence[Path | str]) -> list[dict[str, Any]]:
    """
    Build the trend of several days' scorecards: one entry per agent per day.

    The day is the CSV's ``day`` column, or else its folder's name. Totals rows (``scope`` ``total``, or
    without a ``scope`` column, ``agent_id`` :data:`TOTAL_LABEL`) are left out.

    :param daily_csv_paths: ``scorecards.csv`` files, in any order.
    :return: Dicts with :data:`TREND_COLUMNS` keys (``day``, ``agent_id``, ``calls``, ``completed``,
        ``failed``, ``avg_customer_effort_score``, ``compliance_rate``, ``greeting_rate``; the rates and
        the score are floats or ``None``), ordered by day, then agent.
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
                    "avg_customer_effort_score": _number(row.get("avg_customer_effort_score")),
                    "compliance_rate": _number(row.get("compliance_rate")),
                    "greeting_rate": _number(row.get("greeting_rate")),
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
    rows = [
        (
            str(entry.get("day", "")),
            _clip(str(entry.get("agent_id", "")), 32),
            str(entry.get("calls", 0)),
            str(entry.get("completed", 0)),
            str(entry.get("failed", 0)),
            _fmt_ces(entry.get("avg_customer_effort_score")),
            _fmt_pct(entry.get("compliance_rate")),
            _fmt_pct(entry.get("greeting_rate")),
        )
        for entry in trend
    ]
    return "\n".join(["CallCov weekly trend", *_table(headers, rows, set(range(2, len(headers))))])


def render_trend_svg(trend: Sequence[Mapping[str, Any]]) -> str:
    """
    Draw the average customer effort score per agent over the days as an inline SVG line chart.

    :param trend: The entries of :func:`build_weekly_trend`.
    :return: An ``<svg>`` element with a title, axis labels and a legend. A day without a score breaks
        the agent's line.
    """
    days = sorted({str(entry.get("day", "")) for entry in trend})
    agents = sorted({str(entry.get("agent_id", "")) for entry in trend})
    scores: dict[tuple[str, str], float] = {}
    for entry in trend:
        score = _number(entry.get("avg_customer_effort_score"))
        if score is not None:
            scores[(str(entry.get("agent_id", "")), str(entry.get("day", "")))] = score
    left, right, top, plot_h = 60, 60, 30, 240
    plot_w = max(100 * max(len(days) - 1, 1), 400)
    bottom = 70 + 18 * len(agents)
    width, height = left + plot_w + right, top + plot_h + bottom
    y0 = top + plot_h

    def x_of(index: int) -> float:
        return left + (plot_w / 2 if len(days) == 1 else plot_w * index / (len(days) - 1))

    def y_of(score: float) -> float:
        return y0 - plot_h * min(max(score, 0.0), 5.0) / 5

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif">',
        "<title>Average customer effort score per agent and day</title>",
    ]
    for step in range(6):
        y = y_of(step)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#d0d7de"/>')
        parts.append(_svg_text(left - 6, y + 4, str(step), text_anchor="end", font_size="11"))
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y0}" stroke="#57606a"/>')
    parts.append(f'<line x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}" stroke="#57606a"/>')
    mid = top + plot_h / 2
    parts.append(
        _svg_text(
            16,
            mid,
            "Avg customer effort score (1-5)",
            text_anchor="middle",
            font_size="12",
            transform=f"rotate(-90 16 {mid})",
        )
    )
    parts.append(_svg_text(left + plot_w / 2, y0 + 40, "Day", text_anchor="middle", font_size="12"))
    for index, day in enumerate(days):
        parts.append(_svg_text(x_of(index), y0 + 18, day, text_anchor="middle", font_size="11"))
    if not scores:
        parts.append(_svg_text(left + plot_w / 2, mid, "No scores yet", text_anchor="middle", font_size="14"))
    legend: list[tuple[str, str]] = []
    for number, agent in enumerate(agents):
        colour = _PALETTE[number % len(_PALETTE)]
        legend.append((agent, colour))
        segment: list[str] = []
        segments: list[list[str]] = []
        for index, day in enumerate(days):
            score = scores.get((agent, day))
            if score is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            x, y = x_of(index), y_of(score)
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{_e(agent)} {_e(day)}: {_e(_fmt_ces(score))}</title></circle>"
            )
        if segment:
            segments.append(segment)
        parts.extend(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"/>'
            for points in segments
            if len(points) > 1
        )
    parts.extend(_legend(left, y0 + 64, legend))
    parts.append("</svg>")
    return "\n".join(parts)


def render_trend_html(trend: Sequence[Mapping[str, Any]]) -> str:
    """
    Render the trend as one self-contained HTML page: a line chart of the average customer effort score
    per agent over the days (:func:`render_trend_svg`) and a table of every entry. Every value is escaped.

    :param trend: The entries of :func:`build_weekly_trend`.
    :return: The HTML document.
    """
    days = sorted({str(entry.get("day", "")) for entry in trend})
    span = f"{days[0]} to {days[-1]}" if days else "no reports yet"
    headers = ("Day", "Agent", "Calls", "Completed", "Failed", "Avg CES", "Compliance", "Greeting")
    rows = (
        "\n".join(
            "<tr>"
            + f"<td>{_e(entry.get('day', ''))}</td><td>{_e(entry.get('agent_id', ''))}</td>"
            + "".join(
                f'<td class="n">{_e(value)}</td>'
                for value in (
                    entry.get("calls", 0),
                    entry.get("completed", 0),
                    entry.get("failed", 0),
                    _fmt_ces(entry.get("avg_customer_effort_score")),
                    _fmt_pct(entry.get("compliance_rate")),
                    _fmt_pct(entry.get("greeting_rate")),
                )
            )
            + "</tr>"
            for entry in trend
        )
        or f'<tr><td colspan="{len(headers)}" class="muted">No scorecards.</td></tr>'
    )
    body = "\n".join(
        (
            f'<h1>CallCov weekly trend</h1>\n<p class="sub">{_e(span)} ({len(days)} day(s))</p>',
            "<h2>Average customer effort score</h2>",
            render_trend_svg(trend),
            "<h2>Per agent and day</h2>",
            "<table>\n<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead>\n<tbody>",
            rows,
            "</tbody>\n</table>",
        )
    )
    return _page("CallCov weekly trend", body)


def write_trend(trend: Sequence[Mapping[str, Any]], directory: Path | str) -> dict[str, str]:
    """
    Write ``trend.csv`` (columns :data:`TREND_COLUMNS`) and ``trend.html`` under ``directory``.

    :param trend: The entries of :func:`build_weekly_trend`.
    :param directory: The folder to write to (created if missing), e.g. ``<reports_root>/weekly``.
    :return: ``{"csv": path, "html": path}``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "day": entry.get("day", ""),
            "agent_id": _csv_safe(str(entry.get("agent_id", ""))),
            "calls": entry.get("calls", 0),
            "completed": entry.get("completed", 0),
            "failed": entry.get("failed", 0),
            "avg_customer_effort_score": _fmt_float(_number(entry.get("avg_customer_effort_score"))),
            "compliance_rate": _fmt_float(_number(entry.get("compliance_rate"))),
            "greeting_rate": _fmt_float(_number(entry.get("greeting_rate"))),
        }
        for entry in trend
    ]
    csv_path = _write_rows(folder / TREND_CSV, TREND_COLUMNS, rows)
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
    return trend, write_trend(trend, Path(reports_root) / "weekly")
