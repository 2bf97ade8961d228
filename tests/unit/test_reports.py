"""Scorecards, CSV/HTML/text, the weekly trend and the manifest: ``callcov_provider.reporting``."""

from __future__ import annotations

import csv
import runpy
from pathlib import Path
from typing import Any

import pytest

import callcov_provider
from callcov_provider.reporting import (
    METRIC_DEFINITIONS,
    AgentScorecard,
    DailyReport,
    build_daily_report,
    build_weekly_trend,
    find_daily_reports,
    format_table,
    format_trend_table,
    read_scorecards_csv,
    render_html,
    render_trend_html,
    weekly_trend_report,
    write_csv,
    write_report,
    write_trend,
)
from callcov_provider.reporting import assets as example_assets
from callcov_provider.reporting.charts import COMPLIANCE, CUSTOMER_EFFORT
from callcov_provider.reporting.manifest import read_manifest
from callcov_provider.reporting.tables import CSV_COLUMNS
from callcov_provider.reporting.tally import TOTAL_LABEL, UNKNOWN_AGENT

REPO_ROOT = Path(__file__).resolve().parents[2]
WEEKLY_DAG = REPO_ROOT / "example_dags" / "callcov_weekly_trend.py"
EVIL = "<script>alert('x')</script>"


def _call(agent: str, contact: str, audio: str = "x.wav") -> dict[str, Any]:
    return {
        "agent_id": agent,
        "contact_id": contact,
        "audio_file": f"/day/{audio}",
        "call_direction": "inbound",
    }


def _analysis(aid: str, agent: str, contact: str, results: Any, status: str = "completed") -> dict[str, Any]:
    return {
        "id": aid,
        "status": status,
        "call": {"agent_id": agent, "contact_id": contact},
        "results": results,
        "metadata": {"error_message": None},
    }


#: A completed, compliant call of agent_a: every check passed (one by ``flagged: false`` alone).
RESULTS_A1 = {
    "compliance": {
        "identity_verification": {"passed": True, "flagged": False},
        "mandatory_disclosures": {"passed": True, "flagged": False},
        "purpose_declaration": {"flagged": False},
    },
    "quality": {"sentiment_analysis": {"overall": "positive", "score": 0.7}, "greeting": {"present": True}},
    "coaching": {"recommendations": ["Verify identity", "Smile"], "customer_effort_score": 2},
}
#: A completed call of agent_b: 1 of 2 known checks passed, so not compliant; recommendations as dicts.
RESULTS_B2 = {
    "compliance": {
        "identity_verification": {"flagged": True},
        "mandatory_disclosures": {"passed": None, "flagged": False},
        "purpose_declaration": None,
    },
    "quality": {"sentiment_analysis": {"overall": "Negative"}, "greeting": {"present": False}},
    "coaching": {
        "recommendations": [
            {"text": "Slow down"},
            {"recommendation": "Smile"},
            {"title": "Empathy"},
            {"other": "ignored"},
            "   ",
            42,
        ],
        "customer_effort_score": 4,
    },
}

CALLS = [
    _call("agent_b", "c4", "b4.wav"),
    _call("agent_a", "c1", "a1.wav"),
    _call("agent_a", "c2", "a2.wav"),
    _call("agent_a", "c3", "refused.wav"),  # never got an analysis id
    _call("agent_b", "c5", "b5.wav"),
]
STATUSES = [
    {"id": "A1", "status": "completed", "agent_id": "agent_a", "contact_id": "c1", "error_message": None},
    {"id": "A2", "status": "failed", "agent_id": "agent_a", "contact_id": "c2", "error_message": "too noisy"},
    {"id": "B1", "status": "completed", "agent_id": "agent_b", "contact_id": "c4", "error_message": None},
    # A huge batch's compact entry: agent and contact come from the analyses, joined by id.
    {"id": "B2", "status": "completed", "agent_id": None, "contact_id": None, "error_message": None},
]
ANALYSES = [
    _analysis("A1", "agent_a", "c1", RESULTS_A1),
    _analysis("B1", "agent_b", "c4", None),  # results null
    _analysis("B2", "agent_b", "c5", RESULTS_B2),
    # Another batch's analysis of the same agent and contact: not in ``statuses``, so ignored.
    _analysis(
        "OTHER",
        "agent_a",
        "c1",
        {"coaching": {"customer_effort_score": 5, "recommendations": ["Old advice"]}},
    ),
]
SKIPPED = [{"row": 7, "reason": "file missing.wav does not exist"}]


def build_scorecards(**inputs: Any) -> list[AgentScorecard]:
    return build_daily_report(day="2026-03-02", **inputs).scorecards


@pytest.fixture
def daily() -> DailyReport:
    return build_daily_report(
        day="2026-03-02", calls=CALLS, statuses=STATUSES, analyses=ANALYSES, skipped=SKIPPED
    )


class TestScorecards:
    def test_agent_a(self) -> None:
        a, _ = build_scorecards(calls=CALLS, statuses=STATUSES, analyses=ANALYSES)
        assert a == AgentScorecard(
            agent_id="agent_a",
            calls=3,
            submitted=2,
            rejected=1,
            completed=1,
            failed=1,
            avg_customer_effort_score=2.0,
            compliance_rate=1.0,
            greeting_rate=1.0,
            sentiment_mix={"positive": 1, "neutral": 0, "negative": 0},
            top_recommendations=[("Smile", 1), ("Verify identity", 1)],
            failure_reasons=[
                "c2: too noisy",
                "c3: rejected at submission (refused.wav): the CallCov API refused the file",
            ],
            pending=0,
        )

    def test_agent_b_joined_by_id_with_null_results(self) -> None:
        _, b = build_scorecards(calls=CALLS, statuses=STATUSES, analyses=ANALYSES)
        assert (b.agent_id, b.calls, b.submitted, b.rejected, b.completed, b.failed) == (
            "agent_b",
            2,
            2,
            0,
            2,
            0,
        )
        # Only B2 carries results: B1's null results are left out, not counted as zeros.
        assert b.avg_customer_effort_score == 4.0
        assert b.compliance_rate == 0.0  # one flagged check makes the call non-compliant
        assert b.greeting_rate == 0.0
        assert b.sentiment_mix == {"positive": 0, "neutral": 0, "negative": 1}
        assert b.top_recommendations == [("Empathy", 1), ("Slow down", 1), ("Smile", 1)]
        assert b.failure_reasons == []

    def test_totals_are_computed_over_calls_not_agents(self, daily: DailyReport) -> None:
        t = daily.totals
        assert t.agent_id == TOTAL_LABEL
        assert (t.calls, t.submitted, t.rejected, t.completed, t.failed, t.pending) == (5, 4, 1, 3, 1, 0)
        assert t.avg_customer_effort_score == 3.0
        assert t.compliance_rate == 0.5  # 1 compliant call of the 2 with checks
        assert t.greeting_rate == 0.5
        assert t.sentiment_mix == {"positive": 1, "neutral": 0, "negative": 1}
        assert t.top_recommendations == [("Smile", 2), ("Empathy", 1), ("Slow down", 1)]
        assert len(t.failure_reasons) == 2
        assert [c.agent_id for c in daily.scorecards] == ["agent_a", "agent_b"]
        assert daily.skipped == SKIPPED

    def test_other_batch_is_ignored(self) -> None:
        cards = build_scorecards(calls=CALLS, statuses=STATUSES, analyses=ANALYSES)
        assert all(text != "Old advice" for c in cards for text, _ in c.top_recommendations)

    def test_each_planned_call_matches_one_status(self) -> None:
        calls = [_call("a", "same"), _call("a", "same")]
        statuses = [{"id": "1", "status": "completed", "agent_id": "a", "contact_id": "same"}]
        (card,) = build_scorecards(calls=calls, statuses=statuses, analyses=[])
        assert (card.calls, card.submitted, card.rejected, card.completed) == (2, 1, 1, 1)
        # With no analysis to read, the completed call adds no metrics.
        assert card.avg_customer_effort_score is None
        assert card.compliance_rate is None
        assert card.greeting_rate is None

    def test_odd_statuses_and_inputs(self) -> None:
        calls = [_call("a", "1"), _call("a", "2"), "not a call", {"contact_id": "3"}]
        statuses = [
            {"id": "p", "status": "processing", "agent_id": "a", "contact_id": "1"},
            {"id": "q", "status": "QUEUED", "agent_id": "a", "contact_id": "2"},
            {"id": "q", "status": "completed", "agent_id": "a", "contact_id": "2"},  # duplicate id
            {"id": "f", "status": "failed", "agent_id": "z", "contact_id": None},  # matches no planned call
            {"status": "failed", "agent_id": None},  # no id, no agent
            "not a status",
        ]
        cards = {
            c.agent_id: c for c in build_scorecards(calls=calls, statuses=statuses, analyses=[{"no": "id"}])
        }
        assert (cards["a"].pending, cards["a"].completed, cards["a"].submitted) == (2, 0, 2)
        assert cards["z"].calls == cards["z"].submitted == cards["z"].failed == 1
        assert cards["z"].failure_reasons == ["f: analysis failed, no reason given"]
        unknown = cards[UNKNOWN_AGENT]
        assert (unknown.calls, unknown.rejected, unknown.failed) == (2, 1, 1)

    def test_status_from_analysis_and_odd_values(self) -> None:
        results = {
            "compliance": {
                "identity_verification": True,
                "mandatory_disclosures": "yes",
                "purpose_declaration": {"details": "neither passed nor flagged"},
            },
            "quality": {
                "sentiment_analysis": {"overall": {"label": "neutral"}},
                "greeting": {"present": "yes"},
            },
            "coaching": {"customer_effort_score": True, "recommendations": "not a list"},
        }
        statuses = [
            {"id": "1", "agent_id": "a", "contact_id": "1"},  # no status: the analysis's own status counts
            {"id": "2", "status": "completed", "agent_id": "a", "contact_id": "2"},
        ]
        analyses = [
            _analysis("1", "a", "1", results),
            {
                "id": "2",
                "status": "completed",
                "results": {
                    "coaching": {"customer_effort_score": "nan"},
                    "quality": {"sentiment_analysis": 3},
                },
            },
        ]
        (card,) = build_scorecards(
            calls=[_call("a", "1"), _call("a", "2")], statuses=statuses, analyses=analyses
        )
        assert card.completed == 2
        assert card.compliance_rate == 1.0  # a bare boolean check; "yes" is unknown
        assert card.greeting_rate is None
        assert card.avg_customer_effort_score is None  # a bool and NaN are not scores
        assert card.sentiment_mix == {"positive": 0, "neutral": 1, "negative": 0}
        assert card.top_recommendations == []

    def test_failed_reason_from_analysis_and_flat_keys(self) -> None:
        statuses = [{"id": "9", "status": "failed"}]
        analyses = [
            {
                "id": "9",
                "call.agent_id": "a",
                "call.contact_id": "c",
                "metadata": {"error_message": "corrupt audio"},
            }
        ]
        (card,) = build_scorecards(calls=[_call("a", "c")], statuses=statuses, analyses=analyses)
        assert card.failure_reasons == ["c: corrupt audio"]
        assert card.rejected == 0

    def test_single_analysis_instead_of_a_list(self) -> None:
        single = _analysis("A1", "agent_a", "c1", RESULTS_A1)
        (card,) = build_scorecards(calls=[_call("agent_a", "c1")], statuses=single, analyses=[single])
        assert card.completed == 1
        assert card.avg_customer_effort_score == 2.0

    def test_empty_batch(self, tmp_path: Path) -> None:
        report = build_daily_report(day="2026-03-03", calls=[], statuses=[], analyses=[])
        assert report.scorecards == []
        assert report.totals.calls == 0
        assert report.totals.compliance_rate is None
        paths = write_report(report, tmp_path / "empty")
        rows = read_scorecards_csv(paths["csv"])
        assert [r["scope"] for r in rows] == ["total"]
        page = Path(paths["html"]).read_text(encoding="utf-8")
        assert "No calls in this batch" in page
        assert "<figure>" not in page  # no empty charts
        assert "TOTAL" in format_table(report)


class TestSubmissionOutcomes:
    """The batch submission operator's outcomes (one list per mapped chunk) as the report's calls."""

    def test_every_call_is_counted_refused_ones_included(self) -> None:
        chunks = [
            [
                {"analysis_id": "A1", "error": None, "agent_id": "agent_a", "contact_id": "c1"},
                {
                    "analysis_id": None,
                    "error": "400 invalid audio: not a recording",
                    "agent_id": "agent_a",
                    "contact_id": "c3",
                    "recording": "refused.wav",
                },
            ],
            [
                # Matched by id although the sensor's entry and the analysis name no agent or contact.
                {"analysis_id": "B2", "error": None, "agent_id": "agent_b", "contact_id": "c5"},
                # Accepted, but not (yet) reported by the sensor: pending, still counted.
                {"analysis_id": "LATE", "error": None, "agent_id": "agent_b", "contact_id": "c6"},
            ],
        ]
        statuses = [
            {"id": "A1", "status": "completed", "agent_id": "agent_a", "contact_id": "c1"},
            {"id": "B2", "status": "completed", "agent_id": None, "contact_id": None},
        ]
        analyses = [
            _analysis("A1", "agent_a", "c1", RESULTS_A1),
            {"id": "B2", "status": "completed", "results": RESULTS_B2},
        ]
        report = build_daily_report(day="d", calls=chunks, statuses=statuses, analyses=analyses)
        a, b = report.scorecards
        assert (a.calls, a.submitted, a.rejected, a.completed) == (2, 1, 1, 1)
        assert a.failure_reasons == [
            "c3: rejected at submission (refused.wav): 400 invalid audio: not a recording"
        ]
        assert (b.calls, b.submitted, b.rejected, b.completed, b.pending) == (2, 2, 0, 1, 1)
        assert b.avg_customer_effort_score == 4.0
        totals = report.totals
        assert (totals.calls, totals.rejected, totals.completed, totals.pending) == (4, 1, 2, 1)
        assert totals.calls == sum(len(chunk) for chunk in chunks)

    def test_flat_outcomes_and_an_unclaimed_analysis(self) -> None:
        outcomes = [{"analysis_id": "1", "error": None, "agent_id": "a", "contact_id": "c"}]
        statuses = [
            {"id": "1", "status": "failed", "agent_id": "a", "contact_id": "c", "error_message": "silent"},
            {"id": "2", "status": "completed", "agent_id": "a", "contact_id": "d"},
        ]
        (card,) = build_scorecards(calls=outcomes, statuses=statuses, analyses=[])
        assert (card.calls, card.failed, card.completed) == (2, 1, 1)
        assert card.failure_reasons == ["c: silent"]


class TestCompliance:
    def test_a_call_is_compliant_only_when_every_check_passed(self) -> None:
        def results(*passed: bool | None) -> dict[str, Any]:
            names = ("identity_verification", "mandatory_disclosures", "purpose_declaration")
            return {"compliance": {n: {"passed": p} for n, p in zip(names, passed, strict=True)}}

        cases = [results(True, True, True), results(True, True, False), results(True, None, None)]
        cases.append(results(None, None, None))  # no known check: left out
        calls = [_call("a", str(i)) for i in range(len(cases))]
        statuses = [
            {"id": str(i), "status": "completed", "agent_id": "a", "contact_id": str(i)}
            for i in range(len(cases))
        ]
        analyses = [_analysis(str(i), "a", str(i), r) for i, r in enumerate(cases)]
        (card,) = build_scorecards(calls=calls, statuses=statuses, analyses=analyses)
        # Per call: 2 compliant of the 3 with checks (per check it would have been 6 of 7).
        assert card.compliance_rate == pytest.approx(2 / 3)


class TestCsv:
    def test_round_trip(self, daily: DailyReport, tmp_path: Path) -> None:
        path = write_csv(daily, tmp_path / "deep" / "scorecards.csv")
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
            raw = list(reader)
        assert [r["agent_id"] for r in raw] == ["agent_a", "agent_b", "TOTAL"]
        assert [r["scope"] for r in raw] == ["agent", "agent", "total"]
        a = raw[0]
        assert a["day"] == "2026-03-02"
        assert (a["calls"], a["submitted"], a["rejected"], a["completed"], a["failed"]) == (
            "3",
            "2",
            "1",
            "1",
            "1",
        )
        assert a["avg_customer_effort_score"] == "2"
        assert a["compliance_rate"] == "1"
        assert a["greeting_rate"] == "1"
        assert (a["sentiment_positive"], a["sentiment_neutral"], a["sentiment_negative"]) == ("1", "0", "0")
        assert a["top_recommendations"] == "Smile (1) | Verify identity (1)"
        assert a["failure_reasons"].startswith("c2: too noisy | c3: rejected")
        assert raw[2]["compliance_rate"] == "0.5"
        assert read_scorecards_csv(path) == raw

    def test_formula_cells_are_defused(self, tmp_path: Path) -> None:
        calls = [_call("=HYPERLINK(1)", "c")]
        statuses = [{"id": "1", "status": "completed", "agent_id": "=HYPERLINK(1)", "contact_id": "c"}]
        report = build_daily_report(day="2026-03-02", calls=calls, statuses=statuses, analyses=[])
        path = write_csv(report, tmp_path / "s.csv")
        assert "'=HYPERLINK(1)" in path.read_text(encoding="utf-8")
        assert read_scorecards_csv(path)[0]["agent_id"] == "=HYPERLINK(1)"


class TestHtmlAndText:
    def test_page(self, daily: DailyReport) -> None:
        page = render_html(daily)
        assert page.startswith("<!DOCTYPE html>")
        assert "2026-03-02" in page
        assert "<style>" in page
        assert "Row 7: file missing.wav does not exist" in page
        assert "too noisy" in page
        assert "<script" not in page
        assert "http://" not in page
        assert "https://" not in page
        # Links: the weekly trend beside the day folders, and the day's CSV.
        assert 'href="../weekly/trend.html"' in page
        assert 'href="scorecards.csv"' in page
        # Each table cell says which column it is, so that a phone can show a row as a card.
        assert 'data-label="Compliance">100%</td>' in page

    def test_one_chart_per_meaning(self, daily: DailyReport) -> None:
        page = render_html(daily)
        figures = page.split("<figure>")[1:]
        captions = [figure.split("<figcaption>")[1].split("</figcaption>")[0] for figure in figures]
        assert captions == [
            "Average customer effort score (1 effortless to 5 hard; lower is better)",
            "Compliance rate (share of compliant calls; higher is better)",
            "Greeting rate (share of calls with a greeting; higher is better)",
        ]
        ces_chart = figures[0]
        # agent_a's CES 2 on a 1-to-5 scale is a quarter of the track, and good (lower is better).
        assert 'class="bar good" style="width:25.0%"' in ces_chart
        assert "%</span>" not in ces_chart  # no rate on the effort chart
        # agent_b's CES 4 is poor; its 0 % compliance still shows a sliver, not a gap.
        assert 'class="bar poor" style="width:75.0%"' in ces_chart
        assert 'class="bar poor" style="width:1.5%"' in figures[1]
        # The team's 50 % compliance is poor, not "fair" for sitting mid-scale.
        assert 'class="bar poor" style="width:50.0%"' in figures[1]

    def test_bands(self) -> None:
        assert [CUSTOMER_EFFORT.band(v) for v in (1.0, 2.0, 2.5, 3.0, 3.1, 5.0)] == [
            "good",
            "good",
            "fair",
            "fair",
            "poor",
            "poor",
        ]
        assert [COMPLIANCE.band(v) for v in (1.0, 0.9, 0.8, 0.7, 0.69, 0.0)] == [
            "good",
            "good",
            "fair",
            "fair",
            "poor",
            "poor",
        ]

    def test_the_docs_quote_the_definitions(self) -> None:
        docs = (REPO_ROOT / "docs" / "reporting.md").read_text(encoding="utf-8")
        for term, text in METRIC_DEFINITIONS.items():
            assert f"- **{term}**: {text}" in docs

    def test_each_definition_is_stated_once(self, daily: DailyReport) -> None:
        page = render_html(daily)
        for term, text in METRIC_DEFINITIONS.items():
            assert page.count(text.replace("'", "&#39;")) == 1, term
        assert page.count("compliance check") == 1

    def test_malicious_agent_id_is_escaped(self, tmp_path: Path) -> None:
        calls = [_call(EVIL, "c1"), _call("ok", "<img src=x onerror=alert(1)>")]
        statuses = [{"id": "1", "status": "completed", "agent_id": EVIL, "contact_id": "c1"}]
        analyses = [_analysis("1", EVIL, "c1", {"coaching": {"recommendations": ["<b>bold</b>"]}})]
        skipped = [{"row": "<i>2</i>", "reason": "<script>bad()</script>"}]
        report = build_daily_report(
            day="<day>", calls=calls, statuses=statuses, analyses=analyses, skipped=skipped
        )
        page = Path(write_report(report, tmp_path / "r")["html"]).read_text(encoding="utf-8")
        for raw in ("<script", "<img", "<b>bold", "<i>2", "<day>"):
            assert raw not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page

    def test_table(self, daily: DailyReport) -> None:
        text = format_table(daily)
        lines = text.splitlines()
        assert lines[0] == "CallCov scorecards for 2026-03-02"
        header = lines[1]
        assert header.split()[:3] == ["agent", "calls", "sub"]
        rows = {line.split()[0]: line.split() for line in lines[3:6]}
        assert rows["agent_a"][1:6] == ["3", "2", "1", "1", "1"]
        assert rows["agent_a"][7:10] == ["2.00", "100%", "100%"]
        assert rows["TOTAL"][1] == "5"
        assert "  row 7: file missing.wav does not exist" in lines
        assert "  agent_a: c2: too noisy" in lines
        widths = {len(line) for line in lines[1:3]}
        assert len(widths) == 1  # header and rule line up

    def test_long_agent_ids_are_clipped_in_the_table(self) -> None:
        report = build_daily_report(day="d", calls=[_call("x" * 50, "c")], statuses=[], analyses=[])
        assert "x" * 31 + "…" in format_table(report)

    def test_write_report(self, daily: DailyReport, tmp_path: Path) -> None:
        paths = write_report(daily, tmp_path / "2026-03-02")
        assert Path(paths["csv"]).name == "scorecards.csv"
        assert Path(paths["html"]).name == "report.html"
        assert Path(paths["html"]).read_text(encoding="utf-8") == render_html(daily)


def _daily_folder(root: Path, day: str, ces_a: int, failed_b: bool) -> Path:
    calls = [_call("agent_a", "c1"), _call("agent_b", "c2")]
    statuses = [
        {"id": f"{day}-1", "status": "completed", "agent_id": "agent_a", "contact_id": "c1"},
        {
            "id": f"{day}-2",
            "status": "failed" if failed_b else "completed",
            "agent_id": "agent_b",
            "contact_id": "c2",
        },
    ]
    analyses = [
        _analysis(f"{day}-1", "agent_a", "c1", {"coaching": {"customer_effort_score": ces_a}}),
        _analysis(f"{day}-2", "agent_b", "c2", {"coaching": {"customer_effort_score": 3}}),
    ]
    report = build_daily_report(day=day, calls=calls, statuses=statuses, analyses=analyses)
    return Path(write_report(report, root / day)["csv"])


class TestWeeklyTrend:
    def test_trend(self, tmp_path: Path) -> None:
        second = _daily_folder(tmp_path, "2026-03-02", ces_a=4, failed_b=True)
        first = _daily_folder(tmp_path, "2026-03-01", ces_a=2, failed_b=False)
        trend = build_weekly_trend([second, first])
        assert [(t["day"], t["agent_id"]) for t in trend] == [
            ("2026-03-01", "agent_a"),
            ("2026-03-01", "agent_b"),
            ("2026-03-02", "agent_a"),
            ("2026-03-02", "agent_b"),
        ]
        assert trend[0] == {
            "day": "2026-03-01",
            "agent_id": "agent_a",
            "calls": 1,
            "completed": 1,
            "failed": 0,
            "avg_customer_effort_score": 2.0,
            "compliance_rate": None,
            "greeting_rate": None,
        }
        assert trend[3]["failed"] == 1
        assert trend[3]["avg_customer_effort_score"] is None
        page = render_trend_html(trend)
        assert "<svg" in page
        assert "<polyline" in page  # agent_a has two points
        assert "2026-03-01 to 2026-03-02" in page
        assert 'href="../2026-03-01/report.html"' in page
        assert 'href="../2026-03-02/report.html"' in page
        assert page.count("<svg") == 2  # effort and compliance, each on its own scale
        paths = write_trend(trend, tmp_path / "weekly")
        with Path(paths["csv"]).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["avg_customer_effort_score"] for r in rows] == ["2", "3", "4", ""]
        table = format_trend_table(trend)
        assert "2026-03-02  agent_a" in table

    def test_summary_says_better_or_worse_per_metric(self, tmp_path: Path) -> None:
        first = _daily_folder(tmp_path, "2026-03-01", ces_a=2, failed_b=False)
        second = _daily_folder(tmp_path, "2026-03-02", ces_a=4, failed_b=True)
        page = render_trend_html(build_weekly_trend([first, second]))
        summary = page.split("Per agent over the period")[1].split("<details>")[0]
        # agent_a's effort went from 2 to 4: worse, since lower is better.
        assert 'data-label="Avg CES, first day → last">2.00 → 4.00 (worse)</td>' in summary
        # agent_b has a score on one day only: no change to speak of.
        assert 'data-label="Avg CES, first day → last">3.00</td>' in summary
        assert "<summary>Every agent and day (4 rows)</summary>" in page

    def test_day_from_folder_and_escaping(self, tmp_path: Path) -> None:
        path = tmp_path / "2026-03-05" / "scorecards.csv"
        path.parent.mkdir()
        path.write_text(
            "agent_id,calls,avg_customer_effort_score\n" + f'"{EVIL}",2,x\n' + "TOTAL,2,\n", encoding="utf-8"
        )
        trend = build_weekly_trend([path])
        # Without a scope column, the TOTAL row is still recognised and left out.
        assert [(t["day"], t["agent_id"], t["calls"]) for t in trend] == [("2026-03-05", EVIL, 2)]
        page = render_trend_html(trend)
        assert "<script" not in page
        assert "No values yet" in page

    def test_empty_trend(self) -> None:
        page = render_trend_html([])
        assert "No daily reports yet." in page
        assert "No scorecards." in page

    def test_find_daily_reports(self, tmp_path: Path) -> None:
        assert find_daily_reports(tmp_path / "missing") == []
        for day in range(1, 10):
            _daily_folder(tmp_path, f"2026-03-0{day}", ces_a=2, failed_b=False)
        (tmp_path / "weekly").mkdir()
        (tmp_path / "weekly" / "scorecards.csv").write_text("", encoding="utf-8")
        (tmp_path / "2026-02-28").mkdir()  # a day folder without a report
        found = find_daily_reports(tmp_path)
        assert [p.parent.name for p in found] == [f"2026-03-0{d}" for d in range(3, 10)]
        assert find_daily_reports(tmp_path, limit=0) == []
        assert weekly_trend_report(tmp_path / "missing") == ([], {})


class TestExampleAssets:
    def test_reports_root_is_never_inside_the_package(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.delenv(example_assets.REPORTS_ROOT_ENV, raising=False)
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
        assert example_assets.default_reports_root() == tmp_path / "home" / "callcov_reports"
        monkeypatch.delenv("AIRFLOW_HOME")
        root = example_assets.default_reports_root()
        assert root == Path("~/airflow/callcov_reports").expanduser()
        assert not root.resolve().is_relative_to(Path(callcov_provider.__file__).resolve().parent)
        monkeypatch.setenv(example_assets.REPORTS_ROOT_ENV, str(tmp_path))
        assert example_assets.default_reports_root() == tmp_path

    def test_asset(self) -> None:
        from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS

        asset = example_assets.DAILY_REPORT_ASSET
        assert asset.uri == "callcov://reports/daily_scorecards"
        if AIRFLOW_V_3_0_PLUS:
            assert type(asset).__name__ == "Asset"
            assert asset.name == "callcov_daily_scorecards"
        else:  # Airflow 2.11: the compat Asset is a Dataset, which has a URI and no name
            assert type(asset).__name__ == "Dataset"


class TestManifest:
    def test_skipped_rows_name_files_relative_to_the_day(self, tmp_path: Path) -> None:
        day = tmp_path / "recordings" / "2026-03-02"
        day.mkdir(parents=True)
        (day / "ok.wav").write_bytes(b"RIFF" + b"\0" * 64)
        (day / "odd.aac").write_bytes(b"\0" * 64)
        (day / "calls.csv").write_text(
            "file,agent_id,contact_id\nok.wav,a,c1\nmissing.wav,a,c2\nodd.aac,a,c3\n", encoding="utf-8"
        )
        calls, skipped = read_manifest(day)
        assert [call["contact_id"] for call in calls] == ["c1"]
        assert [row["row"] for row in skipped] == [3, 4]
        assert "'missing.wav'" in skipped[0]["reason"]
        assert "'odd.aac'" in skipped[1]["reason"]
        for row in skipped:
            assert str(tmp_path) not in row["reason"]


@pytest.fixture(scope="module")
def namespace() -> dict[str, Any]:
    """The weekly DAG file's globals: ``dag`` and the ``weekly_trend`` task decorator."""
    return runpy.run_path(str(WEEKLY_DAG))


class TestWeeklyDag:
    def test_dag(self, namespace: dict[str, Any]) -> None:
        dag = namespace["dag"]
        assert dag.dag_id == "callcov_weekly_trend"
        assert dag.catchup is False
        assert set(dag.tags) == {"callcov", "example"}
        assert [t.task_id for t in dag.tasks] == ["weekly_trend"]
        # Scheduled on the daily report's asset: an asset condition on Airflow 3, a dataset one on 2.11
        # (whose timetable's repr does not show it).
        timetable = dag.timetable
        condition = getattr(timetable, "asset_condition", None) or timetable.dataset_condition
        assert "callcov://reports/daily_scorecards" in repr(condition)

    def test_task_writes_the_trend(self, namespace: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
        _daily_folder(tmp_path, "2026-03-01", ces_a=2, failed_b=False)
        _daily_folder(tmp_path, "2026-03-02", ces_a=4, failed_b=True)
        paths = namespace["weekly_trend"].function(params={"reports_root": str(tmp_path)})
        assert paths == {
            "csv": str(tmp_path / "weekly" / "trend.csv"),
            "html": str(tmp_path / "weekly" / "trend.html"),
        }
        with Path(paths["csv"]).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 4
        assert "<svg" in Path(paths["html"]).read_text(encoding="utf-8")
        assert "CallCov weekly trend" in capsys.readouterr().out

    def test_task_skips_without_reports(self, namespace: dict[str, Any], tmp_path: Path) -> None:
        from airflow.providers.common.compat.sdk import AirflowSkipException

        with pytest.raises(AirflowSkipException):
            namespace["weekly_trend"].function(params={"reports_root": str(tmp_path)})


@pytest.mark.parametrize("name", ["callcov_daily_batch.py", "callcov_weekly_trend.py"])
def test_dag_docs_are_markdown(name: str) -> None:
    """The DAGs' ``doc_md`` (their docstring) is Markdown in the UI: no Sphinx roles or RST literals."""
    import ast
    import re

    doc = ast.get_docstring(ast.parse((REPO_ROOT / "example_dags" / name).read_text(encoding="utf-8")))
    assert doc
    assert not re.search(r":(class|func|mod|data|attr|meth):`", doc)
    assert "``" not in doc
