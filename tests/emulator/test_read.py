"""Reading analyses: by id on both paths, the list with its filters and pagination, account isolation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from callcov_provider.models import Analysis, AnalysisList
from callcov_provider.testing.server import EmulatorHandle

from .conftest import KEY_2, Api


def test_get_analysis_on_both_paths(api: Api, wav: Callable[..., Path]) -> None:
    created = api.upload(wav()).json()
    response = api.get(f"/analysis/{created['id']}")
    assert response.status_code == 200
    analysis = Analysis.model_validate(response.json())
    assert analysis.id == created["id"]
    assert analysis.status.value == "completed"
    results = analysis.results
    assert results is not None
    assert results.compliance is not None
    assert results.quality is not None
    for check in (
        results.compliance.identity_verification,
        results.compliance.mandatory_disclosures,
        results.compliance.purpose_declaration,
    ):
        assert check is not None
        assert check.passed is not check.flagged
        assert check.details
    assert results.quality.sentiment_analysis is not None
    assert results.quality.sentiment_analysis.overall in ("positive", "neutral", "negative")
    assert results.quality.greeting is not None
    assert isinstance(results.quality.greeting.present, bool)
    assert results.quality.empathetic_language is not None
    assert results.coaching is not None
    assert results.coaching.recommendations
    assert all(isinstance(r, str) for r in results.coaching.recommendations)
    assert 1 <= (results.coaching.customer_effort_score or 0) <= 5
    transcript = analysis.transcript
    assert transcript is not None
    assert transcript.language == "en"
    assert transcript.text
    assert transcript.segments[0].speaker == "agent"
    assert transcript.segments[-1].end == 3.0
    assert analysis.metadata is not None
    assert analysis.metadata.completed_at is not None
    assert analysis.metadata.processing_time_ms == 0

    legacy = api.get(f"/calls/analyze/{created['id']}")
    # The older generation's status body: {"status", "analysis": {"sentiment", "summary"}, "error"}.
    body = legacy.json()
    assert body["status"] == "completed"
    assert body["analysis"]["sentiment"] == results.quality.sentiment_analysis.overall
    assert isinstance(body["analysis"]["summary"], str)
    assert body["error"] is None


def test_results_are_deterministic_from_the_audio(api: Api, wav: Callable[..., Path]) -> None:
    first = api.upload(wav("a.wav", seed=1)).json()
    again = api.upload(wav("b.wav", seed=1)).json()
    other = api.upload(wav("c.wav", seed=2)).json()
    assert first["id"] != again["id"]
    assert first["results"] == again["results"]
    assert first["transcript"] == again["transcript"]
    assert (first["results"], first["transcript"]) != (other["results"], other["transcript"])


def test_unknown_id_is_404(api: Api) -> None:
    for path in ("/analysis/nope", "/calls/analyze/nope"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Analysis not found"}


def test_an_account_never_sees_another_accounts_analyses(api: Api, wav: Callable[..., Path]) -> None:
    mine = api.upload(wav(), agent_id="agent_shared").json()
    theirs = api.upload(wav(), key=KEY_2, agent_id="agent_shared").json()
    assert api.get(f"/analysis/{theirs['id']}").status_code == 404
    assert api.get(f"/calls/analyze/{mine['id']}", key=KEY_2).status_code == 404
    listed = api.get("/analysis/", search="agent_shared").json()
    assert [a["id"] for a in listed["data"]] == [mine["id"]]
    assert listed["total"] == 1
    listed_2 = api.get("/analysis/", key=KEY_2, mode="bearer").json()
    assert [a["id"] for a in listed_2["data"]] == [theirs["id"]]
    accounts = {a["id"]: a["account"] for a in api.emu.control.analyses()}
    assert accounts == {mine["id"]: "acct_1", theirs["id"]: "acct_2"}


@pytest.fixture
def catalogue(api: Api, emu: EmulatorHandle) -> dict[str, str]:
    """Six analyses with known agents, contacts and statuses, created oldest first."""
    specs = [
        ("agent_001", "customer_123", "completed"),
        ("agent_002", "customer_456", "failed"),
        ("AGENT_001", "vip_123", "completed"),
        ("agent_003", "customer_123", "processing"),
        ("agent_001", "customer_789", "completed"),
        ("agent_002", "CUSTOMER_999", "completed"),
    ]
    ids: dict[str, str] = {}
    for index, (agent, contact, status) in enumerate(specs):
        emu.control.seed(
            1,
            agent_ids=[agent],
            contact_ids=[contact],
            statuses=[status],
            created_from=1_700_000_000 + index,
            created_to=1_700_000_000 + index,
        )
        ids[f"{index}"] = emu.control.analyses()[0]["id"]
    return ids


def _ids(api: Api, **params: object) -> list[str]:
    response = api.get("/analysis/", **params)
    assert response.status_code == 200, response.text
    page = AnalysisList.model_validate(response.json())
    return [a.id for a in page.data]


def test_list_is_newest_first_and_filters(api: Api, catalogue: dict[str, str]) -> None:
    newest_first = [catalogue[str(i)] for i in range(5, -1, -1)]
    assert _ids(api) == newest_first
    assert _ids(api, status_filter="failed") == [catalogue["1"]]
    assert _ids(api, status_filter="processing") == [catalogue["3"]]
    assert _ids(api, status_filter="completed") == [catalogue[i] for i in ("5", "4", "2", "0")]
    # agent_id and contact_id filter exactly; search is a case-insensitive substring of either.
    assert _ids(api, agent_id="agent_001") == [catalogue["4"], catalogue["0"]]
    assert _ids(api, contact_id="customer_123") == [catalogue["3"], catalogue["0"]]
    assert _ids(api, search="agent_001") == [catalogue[i] for i in ("4", "2", "0")]
    assert _ids(api, search="customer_9") == [catalogue["5"]]
    assert _ids(api, search="_123") == [catalogue[i] for i in ("3", "2", "0")]
    assert _ids(api, status_filter="completed", agent_id="agent_001", limit=50) == [
        catalogue["4"],
        catalogue["0"],
    ]


def test_list_pagination_total_and_has_more(api: Api, catalogue: dict[str, str]) -> None:
    first = api.get("/analysis/", limit=4).json()
    assert (len(first["data"]), first["total"], first["has_more"], first["object"]) == (4, 6, True, "list")
    second = api.get("/analysis/", limit=4, offset=4).json()
    assert (len(second["data"]), second["total"], second["has_more"]) == (2, 6, False)
    assert [a["id"] for a in first["data"] + second["data"]] == _ids(api)
    beyond = api.get("/analysis/", offset=10).json()
    assert (beyond["data"], beyond["total"], beyond["has_more"]) == ([], 6, False)
    exact = api.get("/analysis/", limit=6).json()
    assert exact["has_more"] is False


def test_same_second_ties_are_broken_by_insertion_order(api: Api, emu: EmulatorHandle) -> None:
    emu.control.seed(3, created_from=1_700_000_000, created_to=1_700_000_000, return_ids=True)
    ids = emu.control.seed(3, created_from=1_700_000_000, created_to=1_700_000_000, return_ids=True)["ids"]
    listed = _ids(api)
    assert listed[:3] == list(reversed(ids))


@pytest.mark.parametrize(
    ("params", "item"),
    [
        (
            {"limit": 1001},
            {
                "loc": ["query", "limit"],
                "msg": "ensure this value is less than or equal to 1000",
                "type": "value_error.number.not_le",
            },
        ),
        (
            {"limit": 0},
            {
                "loc": ["query", "limit"],
                "msg": "ensure this value is greater than or equal to 1",
                "type": "value_error.number.not_ge",
            },
        ),
        (
            {"offset": -1},
            {
                "loc": ["query", "offset"],
                "msg": "ensure this value is greater than or equal to 0",
                "type": "value_error.number.not_ge",
            },
        ),
        (
            {"limit": "ten"},
            {"loc": ["query", "limit"], "msg": "value is not a valid integer", "type": "type_error.integer"},
        ),
    ],
)
def test_out_of_range_parameters_get_page_002s_422(
    api: Api, params: dict[str, object], item: dict[str, object]
) -> None:
    response = api.get("/analysis/", **params)
    assert response.status_code == 422
    assert response.json() == {"detail": [item]}


def test_unknown_status_filter_is_422(api: Api) -> None:
    response = api.get("/analysis/", status_filter="done")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "type_error.enum"


def test_limit_bounds_are_inclusive(api: Api, emu: EmulatorHandle) -> None:
    emu.control.seed(1001)
    assert len(api.get("/analysis/", limit=1000).json()["data"]) == 1000
    page = api.get("/analysis/", limit=1).json()
    assert len(page["data"]) == 1
    assert page["total"] == 1001
    assert page["has_more"] is True
    assert len(api.get("/analysis/").json()["data"]) == 100
