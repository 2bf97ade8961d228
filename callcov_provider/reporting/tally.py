"""
Count a day's batch per agent: the scorecards behind the daily report.

Pure functions over plain dicts (what XCom carries): no Airflow, no network. The inputs are what the daily
DAG has at hand:

* ``calls``: one dict per call of the day, either a planned call (``agent_id``, ``contact_id``,
  ``audio_file``...) or a submission outcome (``analysis_id``, ``error``, ``agent_id``, ``contact_id``,
  ``recording``), as the batch submission operator returns them. Lists of such dicts (one per chunk) are
  flattened;
* ``statuses``: the sensor's compact list, one ``{id, status, agent_id, contact_id, error_message}`` per
  analysis of the batch;
* ``analyses``: full or field-projected analysis dicts, nested as the API returns them. Analyses whose id
  is not in ``statuses`` (another day's batch, say) are ignored.

How a call is counted:

* an outcome with an ``analysis_id`` is matched to the status entry with that id; an outcome whose
  ``analysis_id`` is ``None`` was **rejected** (refused at submission), its ``error`` is the reason;
* a planned call is matched to a status entry with the same ``(agent_id, contact_id)``, each entry at most
  once; a planned call no entry matches was **rejected**;
* a submitted call is **completed**, **failed** or **pending** according to its status (unknown or
  ``processing`` is pending); a status entry no call claims still counts as one of its agent's calls.

The quality metrics read only completed analyses, and only the values they carry (a ``null`` results
section, a missing check, a non-numeric score are left out rather than counted as zero). Their
definitions are :data:`METRIC_DEFINITIONS`, the one place they are stated; the pages and the docs show
that text.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

#: The compliance checks a call must all pass to be compliant.
COMPLIANCE_CHECKS = ("identity_verification", "mandatory_disclosures", "purpose_declaration")
#: The sentiment labels of the sentiment mix, in display order.
SENTIMENTS = ("positive", "neutral", "negative")
#: Keys under which a recommendation given as a dict carries its text, in order of preference.
RECOMMENDATION_KEYS = ("text", "recommendation", "title")
#: How many coaching recommendations a scorecard keeps.
TOP_RECOMMENDATIONS = 3
#: The ``agent_id`` of the totals row (CSV, table) and of :attr:`DailyReport.totals`.
TOTAL_LABEL = "TOTAL"
#: The agent of a batch analysis whose agent is known neither from its call nor from ``analyses``.
UNKNOWN_AGENT = "(unknown)"

#: What each number of the reports means, by its name on the pages: the one statement of each definition
#: (the HTML pages show this text, the docs quote it).
METRIC_DEFINITIONS: dict[str, str] = {
    "Customer effort score (CES)": (
        "The mean of the completed calls' customer effort scores, from 1 (effortless for the customer) "
        "to 5 (hard). Lower is better."
    ),
    "Compliance rate": (
        "The share of completed calls that passed every compliance check (identity verification, "
        "mandatory disclosures, purpose declaration): one flagged check makes the call non-compliant. "
        "Calls whose results carry no check are left out. Higher is better."
    ),
    "Greeting rate": (
        "The share of completed calls in which the agent greeted the customer, over the calls where this "
        "is known. Higher is better."
    ),
    "Rejected": "Calls the CallCov API refused at submission (for example, not a recording): no analysis.",
    "Failed": "Calls submitted whose analysis failed (for example, a silent recording).",
    "Skipped rows": "Rows of the day's calls.csv never submitted: a missing or unsupported file, a bad row.",
}

_STATUS_COMPLETED = "completed"
_STATUS_FAILED = "failed"


@dataclass
class AgentScorecard:
    """
    One agent's results for a batch of calls.

    :param agent_id: The agent, as written in the manifest.
    :param calls: The agent's calls, rejected ones included.
    :param submitted: Calls that got an analysis id.
    :param rejected: Calls the API refused at submission (no analysis id).
    :param completed: Analyses that completed.
    :param failed: Analyses that failed.
    :param pending: Analyses still processing, or with a status this module does not know.
    :param avg_customer_effort_score: Mean customer effort score (1 to 5, lower is better), or ``None``.
    :param compliance_rate: Share of compliant calls (0 to 1, see :data:`METRIC_DEFINITIONS`), or ``None``.
    :param greeting_rate: Share of completed calls with a greeting (0 to 1), or ``None``.
    :param sentiment_mix: Completed calls per overall sentiment: ``positive``, ``neutral``, ``negative``.
    :param top_recommendations: The most frequent coaching recommendations with their counts, most
        frequent first (ties in alphabetical order).
    :param failure_reasons: One line per failed analysis or rejected call.
    """

    agent_id: str
    calls: int = 0
    submitted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    avg_customer_effort_score: float | None = None
    compliance_rate: float | None = None
    greeting_rate: float | None = None
    sentiment_mix: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SENTIMENTS, 0))
    top_recommendations: list[tuple[str, int]] = field(default_factory=list)
    failure_reasons: list[str] = field(default_factory=list)


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


def get_path(record: Any, path: str) -> Any:
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


def text_or_none(value: Any) -> str | None:
    """A non-empty, stripped string, or ``None``."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def number_or_none(value: Any) -> float | None:
    """A finite number (``bool`` is not one), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _status(value: Any) -> str:
    return (text_or_none(value) or "").lower()


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


def _call_compliant(results: Mapping[str, Any]) -> bool | None:
    """Whether a call passed every known check; ``None`` when its results carry no check at all."""
    outcomes = [_check_passed(get_path(results, f"compliance.{name}")) for name in COMPLIANCE_CHECKS]
    known = [outcome for outcome in outcomes if outcome is not None]
    return all(known) if known else None


def _recommendation_text(item: Any) -> str | None:
    if isinstance(item, Mapping):
        for key in RECOMMENDATION_KEYS:
            text = text_or_none(item.get(key))
            if text:
                return text
        return None
    if isinstance(item, str):
        return text_or_none(item)
    return None


def _sentiment_label(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("label", value.get("overall"))
    label = (text_or_none(value) or "").lower()
    return label if label in SENTIMENTS else None


def _flatten(items: Any) -> list[Mapping[str, Any]]:
    """The dicts in ``items``, with lists of dicts (one per mapped chunk) flattened, in order."""
    if isinstance(items, Mapping):
        return [items]
    flat: list[Mapping[str, Any]] = []
    for item in items or ():
        if isinstance(item, Mapping):
            flat.append(item)
        elif isinstance(item, (list, tuple)):
            flat.extend(_flatten(item))
    return flat


# --------------------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------------------


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
    compliant_calls: int = 0
    compliance_known: int = 0
    greetings: int = 0
    greetings_known: int = 0
    sentiments: Counter[str] = field(default_factory=Counter)
    recommendations: Counter[str] = field(default_factory=Counter)
    failure_reasons: list[str] = field(default_factory=list)

    def add_results(self, analysis: Mapping[str, Any] | None) -> None:
        """Add a completed analysis's quality metrics (nothing when it or its results are missing)."""
        results = get_path(analysis, "results")
        if not isinstance(results, Mapping):
            return
        score = number_or_none(get_path(results, "coaching.customer_effort_score"))
        if score is not None:
            self.effort_scores.append(score)
        compliant = _call_compliant(results)
        if compliant is not None:
            self.compliance_known += 1
            self.compliant_calls += int(compliant)
        greeting = get_path(results, "quality.greeting.present")
        if isinstance(greeting, bool):
            self.greetings_known += 1
            self.greetings += int(greeting)
        label = _sentiment_label(get_path(results, "quality.sentiment_analysis.overall"))
        if label is not None:
            self.sentiments[label] += 1
        recommendations = get_path(results, "coaching.recommendations")
        if isinstance(recommendations, (list, tuple)):
            for item in recommendations:
                text = _recommendation_text(item)
                if text is not None:
                    self.recommendations[text] += 1

    def count_analysis(self, entry: Mapping[str, Any]) -> None:
        """Count one submitted call by its analysis's status."""
        self.submitted += 1
        status = entry["status"]
        if status == _STATUS_COMPLETED:
            self.completed += 1
            self.add_results(entry["analysis"])
        elif status == _STATUS_FAILED:
            self.failed += 1
            reason = entry["error_message"] or "analysis failed, no reason given"
            self.failure_reasons.append(f"{entry['contact_id'] or entry['id'] or '?'}: {reason}")
        else:
            self.pending += 1

    def count_rejected(self, contact_id: str | None, recording: str | None, error: str | None) -> None:
        """Count one call the API refused at submission."""
        self.rejected += 1
        where = f" ({PurePath(recording).name})" if recording else ""
        why = error or "the CallCov API refused the file"
        self.failure_reasons.append(f"{contact_id or '?'}: rejected at submission{where}: {why}")

    def merge(self, other: _Tally) -> None:
        """Add another tally's counts to this one."""
        for name in ("calls", "submitted", "rejected", "completed", "failed", "pending"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.effort_scores.extend(other.effort_scores)
        self.compliant_calls += other.compliant_calls
        self.compliance_known += other.compliance_known
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
            compliance_rate=self.compliant_calls / self.compliance_known if self.compliance_known else None,
            greeting_rate=self.greetings / self.greetings_known if self.greetings_known else None,
            sentiment_mix={label: self.sentiments.get(label, 0) for label in SENTIMENTS},
            top_recommendations=ranked[:TOP_RECOMMENDATIONS],
            failure_reasons=list(self.failure_reasons),
        )


def _status_entries(statuses: Any, analyses: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The batch's analyses, once per id, with agent, contact and error filled in from ``analyses``."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for record in _flatten(analyses):
        record_id = text_or_none(get_path(record, "id"))
        if record_id is not None:
            by_id.setdefault(record_id, record)
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for status in _flatten(statuses):
        analysis_id = text_or_none(status.get("id"))
        if analysis_id is not None:
            if analysis_id in seen:
                continue
            seen.add(analysis_id)
        analysis = by_id.get(analysis_id) if analysis_id is not None else None
        entries.append(
            {
                "id": analysis_id,
                "status": _status(status.get("status")) or _status(get_path(analysis, "status")),
                "agent_id": text_or_none(get_path(status, "agent_id"))
                or text_or_none(get_path(status, "call.agent_id"))
                or text_or_none(get_path(analysis, "call.agent_id")),
                "contact_id": text_or_none(get_path(status, "contact_id"))
                or text_or_none(get_path(status, "call.contact_id"))
                or text_or_none(get_path(analysis, "call.contact_id")),
                "error_message": text_or_none(status.get("error_message"))
                or text_or_none(get_path(status, "metadata.error_message"))
                or text_or_none(get_path(analysis, "metadata.error_message"))
                or text_or_none(get_path(analysis, "error")),
                "analysis": analysis,
            }
        )
    return entries


def tally_batch(calls: Any, statuses: Any, analyses: Any) -> dict[str, _Tally]:
    """Count the batch per agent (see the module's docstring for the rules)."""
    entries = _status_entries(statuses, analyses)
    by_id = {entry["id"]: entry for entry in entries if entry["id"] is not None}
    by_call: dict[tuple[str | None, str | None], deque[dict[str, Any]]] = defaultdict(deque)
    for entry in entries:
        by_call[(entry["agent_id"], entry["contact_id"])].append(entry)
    claimed: set[int] = set()

    def claim(entry: dict[str, Any]) -> None:
        claimed.add(id(entry))

    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for call in _flatten(calls):
        agent_id = text_or_none(call.get("agent_id")) or UNKNOWN_AGENT
        contact_id = text_or_none(call.get("contact_id"))
        recording = text_or_none(call.get("recording")) or text_or_none(call.get("audio_file"))
        tally = tallies[agent_id]
        tally.calls += 1
        if "analysis_id" in call:
            # A submission outcome: its analysis id says whether the API accepted it.
            analysis_id = text_or_none(call.get("analysis_id"))
            if analysis_id is None:
                tally.count_rejected(contact_id, recording, text_or_none(call.get("error")))
                continue
            found = by_id.get(analysis_id)
            if found is None or id(found) in claimed:
                # Accepted, but the sensor did not report it (yet): still being processed.
                found = {"id": analysis_id, "status": "", "contact_id": contact_id, "error_message": None}
                found["analysis"] = None
            else:
                claim(found)
            tally.count_analysis(found)
            continue
        queue = by_call.get((agent_id, contact_id))
        while queue and id(queue[0]) in claimed:
            queue.popleft()
        if queue:
            entry = queue.popleft()
            claim(entry)
            tally.count_analysis(entry)
            continue
        tally.count_rejected(contact_id, recording, None)

    # Batch analyses no call claimed: still the batch's calls.
    for entry in entries:
        if id(entry) not in claimed:
            tally = tallies[entry["agent_id"] or UNKNOWN_AGENT]
            tally.calls += 1
            tally.count_analysis(entry)
    return tallies


def build_daily_report(
    *,
    day: str,
    calls: Any,
    statuses: Any,
    analyses: Any,
    skipped: Iterable[Mapping[str, Any]] = (),
) -> DailyReport:
    """
    Build a day's report: one scorecard per agent, the skipped rows and the totals.

    :param day: The day, ``YYYY-MM-DD``.
    :param calls: The day's calls: planned calls or submission outcomes (``analysis_id``, ``error``,
        ``agent_id``, ``contact_id``), or lists of them (one per chunk). Every one is counted, refused
        ones included.
    :param statuses: The sensor's compact list of the batch's analyses (a single analysis dict is
        accepted too).
    :param analyses: Full or field-projected analyses; only those whose id is in ``statuses`` count.
    :param skipped: The manifest rows skipped before submission, ``{"row": n, "reason": "..."}``.
    :return: The :class:`DailyReport`; scorecards sorted by ``agent_id``.
    """
    tallies = tally_batch(calls, statuses, analyses)
    total = _Tally()
    for agent_id in sorted(tallies):
        total.merge(tallies[agent_id])
    return DailyReport(
        day=str(day),
        scorecards=[tallies[agent_id].scorecard(agent_id) for agent_id in sorted(tallies)],
        skipped=[{"row": row.get("row"), "reason": row.get("reason")} for row in skipped or ()],
        totals=total.scorecard(TOTAL_LABEL),
    )
