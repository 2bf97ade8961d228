"""CallCovHook on the sync path (requests, mocked with requests-mock): every public method, both auth
modes, both API generations, every error body, and the connection test."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests_mock as rm
from urllib3.exceptions import MaxRetryError, NewConnectionError

from callcov_provider.exceptions import (
    APIConnectionError,
    AuthenticationError,
    CallCovError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from callcov_provider.hooks.callcov import USER_AGENT, CallCovHook
from callcov_provider.hooks.retry import RetryPolicy
from callcov_provider.models import AnalysisList, AnalysisStatus
from callcov_provider.version import __version__
from tests.unit.conftest import ANALYSIS_001, API, COMPLETED_002, KEY, SUBMIT_000, analysis, page

IDEMPOTENCY_KEY = re.compile(r"^callcov-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")


def refused() -> requests.exceptions.ConnectionError:
    """The exception requests raises for a refused TCP connection."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/api/v1/analysis/", reason))  # type: ignore[arg-type]


def query(request: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


# -- construction and connection ---------------------------------------------------------------------------


def test_class_attributes() -> None:
    assert CallCovHook.conn_type == "callcov"
    assert CallCovHook.default_conn_name == "callcov_default"
    assert CallCovHook.conn_name_attr == "callcov_conn_id"
    assert CallCovHook.hook_name == "CallCov"
    behaviour = CallCovHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == ["schema", "login"]
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert behaviour["relabeling"]["password"] == "API key or token"


def test_construction_reads_no_connection_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, requests_mock: rm.Mocker
) -> None:
    lookups: list[str] = []
    monkeypatch.setattr(CallCovHook, "get_connection", classmethod(lambda cls, cid: lookups.append(cid)))
    hook = CallCovHook("does_not_exist")
    assert hook.callcov_conn_id == "does_not_exist"
    assert lookups == []
    assert requests_mock.request_history == []
    assert repr(hook) == "CallCovHook(callcov_conn_id='does_not_exist')"


def test_settings_are_read_once(
    make_hook: Callable[..., CallCovHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = make_hook()
    calls = 0
    original = CallCovHook.get_connection

    def counting(conn_id: str) -> Any:
        nonlocal calls
        calls += 1
        return original(conn_id)

    monkeypatch.setattr(hook, "get_connection", counting)
    assert hook.settings is hook.settings
    assert calls == 1
    assert hook.settings.base_url == API


def test_retry_policy_override(make_hook: Callable[..., CallCovHook]) -> None:
    policy = RetryPolicy(max_retries=1)
    assert make_hook(retry_policy=policy).settings.retry_policy is policy


def test_one_session_is_reused_and_closed(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{API}/analysis/a1", json=analysis("a1"))
    session = hook.get_conn()
    hook.get_analysis("a1")
    hook.get_analysis("a1")
    assert hook.get_conn() is session
    hook.close()
    assert hook._session is None
    assert hook.get_conn() is not session
    hook.close()
    hook.close()


# -- auth, headers and timeouts ----------------------------------------------------------------------------


def test_api_key_auth_user_agent_and_timeouts(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{API}/analysis/a1", json=COMPLETED_002 | {"id": "a1"})
    hook.get_analysis("a1")
    request = requests_mock.last_request
    assert request.headers["X-API-Key"] == KEY
    assert "Authorization" not in request.headers
    assert request.headers["User-Agent"].startswith(f"airflow-provider-callcov/{__version__} requests/")
    assert f"airflow-provider-callcov/{__version__}" == USER_AGENT
    assert request.headers["Accept"] == "application/json"
    assert request.timeout == (10.0, 60.0)


def test_bearer_auth_and_custom_timeouts(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    connection(auth_type="bearer", connect_timeout=3, read_timeout="7.5")
    requests_mock.get(f"{API}/analysis/a1", json=analysis("a1"))
    make_hook().get_analysis("a1")
    request = requests_mock.last_request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert "X-API-Key" not in request.headers
    assert request.timeout == (3.0, 7.5)


def test_empty_host_means_the_public_api(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    connection(host=None)
    requests_mock.get("https://api.callcov.com/api/v1/analysis/a1", json=analysis("a1"))
    assert make_hook().get_analysis("a1").id == "a1"


def test_named_connection(
    monkeypatch: pytest.MonkeyPatch, make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    from tests.unit.conftest import set_connection

    set_connection(monkeypatch, conn_id="callcov_eu", host="https://eu.callcov.test", password="sk_eu_key")
    requests_mock.get("https://eu.callcov.test/api/v1/analysis/a1", json=analysis("a1"))
    make_hook("callcov_eu").get_analysis("a1")
    assert requests_mock.last_request.headers["X-API-Key"] == "sk_eu_key"


# -- submit ------------------------------------------------------------------------------------------------


def test_submit_by_url_to_the_current_api(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.post(f"{API}/analysis/", status_code=201, json=ANALYSIS_001)
    result = hook.submit_analysis(
        agent_id=" agent_john_doe ",
        contact_id="customer_12345",
        audio_url="https://example.com/recordings/call-001.wav",
        call_direction="Outbound",
        call_timestamp=datetime(2024, 1, 15, 14, 20),
        metadata={"campaign": "renewals", "priority": 2},
        webhook_url="https://your-app.com/webhooks/analysis",
    )
    assert result.id == ANALYSIS_001["id"]
    assert result.status is AnalysisStatus.PROCESSING
    request = requests_mock.last_request
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert IDEMPOTENCY_KEY.match(request.headers["Idempotency-Key"])
    assert request.json() == {
        "audio_url": "https://example.com/recordings/call-001.wav",
        "agent_id": "agent_john_doe",
        "contact_id": "customer_12345",
        "call_direction": "outbound",
        "call_timestamp": "2024-01-15T14:20:00+00:00",
        "metadata": {"campaign": "renewals", "priority": 2},
        "webhook_url": "https://your-app.com/webhooks/analysis",
    }


def test_submit_leaves_out_absent_fields_and_uses_the_callers_key(
    hook: CallCovHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.post(f"{API}/analysis/", status_code=201, json=ANALYSIS_001)
    hook.submit_analysis(
        agent_id="a", contact_id="c", audio_url="http://example.com/x.wav", idempotency_key="batch-7-call-3"
    )
    assert requests_mock.last_request.json() == {
        "audio_url": "http://example.com/x.wav",
        "agent_id": "a",
        "contact_id": "c",
    }
    assert requests_mock.last_request.headers["Idempotency-Key"] == "batch-7-call-3"


def test_each_submission_gets_a_fresh_idempotency_key(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.post(f"{API}/analysis/", status_code=201, json=ANALYSIS_001)
    for _ in range(3):
        hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    keys = [r.headers["Idempotency-Key"] for r in requests_mock.request_history]
    assert len(set(keys)) == 3
    assert all(IDEMPOTENCY_KEY.match(k) for k in keys)


def test_submit_to_the_legacy_path_reads_the_page_000_response(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    connection(submit_path="/calls/analyze")
    requests_mock.post(f"{API}/calls/analyze", status_code=200, json=SUBMIT_000)
    result = make_hook().submit_analysis(
        agent_id="AGENT_001",
        contact_id="CONTACT_12345",
        audio_url="https://your-storage.com/recordings/call_12345.wav",
        call_direction="outbound",
        call_timestamp="2024-01-15T14:20:00Z",
    )
    assert result.id == "anl_1a2b3c4d5e"
    assert result.status is AnalysisStatus.PROCESSING
    assert result.estimated_completion == "2024-01-15T10:32:00Z"
    assert requests_mock.last_request.json()["call_timestamp"] == "2024-01-15T14:20:00Z"
    assert requests_mock.last_request.headers["X-API-Key"] == KEY


def test_submit_file_to_the_legacy_path_as_multipart(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    tmp_path: Any,
) -> None:
    connection(submit_path="/calls/analyze", auth_type="bearer")
    audio = tmp_path / "call_recording.mp3"
    audio.write_bytes(b"ID3" + b"\x01" * 1000)
    bodies: list[bytes] = []

    def respond(request: Any, context: Any) -> dict[str, Any]:
        bodies.append(request.body.read())
        return SUBMIT_000

    requests_mock.post(f"{API}/calls/analyze", json=respond)
    result = make_hook().submit_analysis(
        agent_id="AGENT_001",
        contact_id="CONTACT_12345",
        audio_file=str(audio),
        call_direction="inbound",
        metadata={"queue": "billing"},
    )
    assert result.id == "anl_1a2b3c4d5e"
    request = requests_mock.last_request
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    assert int(request.headers["Content-Length"]) == len(bodies[0])
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert IDEMPOTENCY_KEY.match(request.headers["Idempotency-Key"])
    body = bodies[0]
    for name, value in [
        ("agent_id", b"AGENT_001"),
        ("contact_id", b"CONTACT_12345"),
        ("call_direction", b"inbound"),
        ("metadata", b'{"queue": "billing"}'),
    ]:
        assert f'name="{name}"'.encode() + b"\r\n\r\n" + value + b"\r\n" in body
    assert b'name="audio_file"; filename="call_recording.mp3"\r\nContent-Type: audio/mpeg\r\n\r\n' in body
    assert b"ID3" + b"\x01" * 1000 + b"\r\n" in body
    assert b"call_timestamp" not in body


# -- read --------------------------------------------------------------------------------------------------


def test_get_analysis_reads_the_full_analysis_and_quotes_the_id(
    hook: CallCovHook, requests_mock: rm.Mocker
) -> None:
    requests_mock.get(f"{API}/analysis/{COMPLETED_002['id']}", json=COMPLETED_002)
    result = hook.get_analysis(COMPLETED_002["id"])
    assert result.status is AnalysisStatus.COMPLETED
    assert result.results is not None
    assert result.results.coaching is not None
    requests_mock.get(f"{API}/analysis/a%2Fb%20c%3Fx", json=analysis("a/b c?x"))
    assert hook.get_analysis("a/b c?x").id == "a/b c?x"
    assert requests_mock.last_request.path == "/api/v1/analysis/a%2fb%20c%3fx"


def test_list_analyses_sends_only_given_filters(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    body = {"object": "list", "data": [COMPLETED_002, ANALYSIS_001], "has_more": True, "total": 247}
    requests_mock.get(f"{API}/analysis/", json=body)
    listing = hook.list_analyses()
    assert isinstance(listing, AnalysisList)
    assert [a.status.value for a in listing.data] == ["completed", "processing"]
    assert listing.has_more
    assert listing.total == 247
    assert query(requests_mock.last_request) == {"limit": ["100"], "offset": ["0"]}
    hook.list_analyses(
        status_filter="completed",
        agent_id="Agent_001",
        contact_id="C 1",
        search="Customer",
        limit=50,
        offset=100,
    )
    assert query(requests_mock.last_request) == {
        "status_filter": ["completed"],
        "agent_id": ["Agent_001"],
        "contact_id": ["C 1"],
        "search": ["Customer"],
        "limit": ["50"],
        "offset": ["100"],
    }
    hook.list_analyses(status_filter=AnalysisStatus.FAILED, limit=1000)
    assert query(requests_mock.last_request)["status_filter"] == ["failed"]


# -- iter_analyses -----------------------------------------------------------------------------------------


def _pages(requests_mock: rm.Mocker, ids: list[str]) -> None:
    """Serve ``ids`` (newest first) from the list endpoint, honouring limit and offset."""

    def respond(request: Any, context: Any) -> dict[str, Any]:
        params = query(request)
        limit, offset = int(params["limit"][0]), int(params["offset"][0])
        chunk = ids[offset : offset + limit]
        return page(chunk, has_more=offset + limit < len(ids), total=len(ids))

    requests_mock.get(f"{API}/analysis/", json=respond)


def _offsets(requests_mock: rm.Mocker) -> list[tuple[int, int]]:
    return [(int(query(r)["limit"][0]), int(query(r)["offset"][0])) for r in requests_mock.request_history]


def test_iter_reads_everything_in_one_request_when_it_fits(
    hook: CallCovHook, requests_mock: rm.Mocker
) -> None:
    ids = [f"a{i}" for i in range(247)]
    _pages(requests_mock, ids)
    assert [a.id for a in hook.iter_analyses(status_filter="completed")] == ids
    assert _offsets(requests_mock) == [(1000, 0)]
    assert query(requests_mock.last_request)["status_filter"] == ["completed"]


def test_iter_pages_with_the_largest_page(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    ids = [f"a{i}" for i in range(2500)]
    _pages(requests_mock, ids)
    assert [a.id for a in hook.iter_analyses(agent_id="agent_001")] == ids
    assert _offsets(requests_mock) == [(1000, 0), (1000, 1000), (1000, 2000)]


def test_iter_respects_max_results_with_the_fewest_requests(
    hook: CallCovHook, requests_mock: rm.Mocker
) -> None:
    ids = [f"a{i}" for i in range(2500)]
    _pages(requests_mock, ids)
    assert [a.id for a in hook.iter_analyses(max_results=5)] == ids[:5]
    assert _offsets(requests_mock) == [(5, 0)]
    requests_mock.reset_mock()
    assert len(list(hook.iter_analyses(max_results=1500))) == 1500
    assert _offsets(requests_mock) == [(1000, 0), (500, 1000)]
    requests_mock.reset_mock()
    assert list(hook.iter_analyses(max_results=0)) == []
    assert requests_mock.request_history == []


def test_iter_yields_an_analysis_that_shifts_pages_once(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    # Between the two requests a new analysis arrives at the front: "c" moves from page 1 to page 2.
    requests_mock.get(
        f"{API}/analysis/",
        [
            {"json": page(["a", "b", "c"], has_more=True)},
            {"json": page(["c", "d", "e"], has_more=True)},
            {"json": page(["f"], has_more=False)},
        ],
    )
    assert [a.id for a in hook.iter_analyses(page_size=3)] == ["a", "b", "c", "d", "e", "f"]
    assert _offsets(requests_mock) == [(3, 0), (3, 3), (3, 6)]


def test_iter_max_results_counts_distinct_analyses(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        f"{API}/analysis/",
        [{"json": page(["a", "b", "c"], has_more=True)}, {"json": page(["c", "d"], has_more=True)}],
    )
    assert [a.id for a in hook.iter_analyses(page_size=3, max_results=4)] == ["a", "b", "c", "d"]
    assert _offsets(requests_mock) == [(3, 0), (1, 3)]
    assert len(requests_mock.request_history) == 2


def test_iter_is_lazy_and_stops_on_an_empty_page(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        f"{API}/analysis/", [{"json": page(["a", "b"], has_more=True)}, {"json": page([], has_more=True)}]
    )
    iterator = hook.iter_analyses(page_size=2)
    assert requests_mock.request_history == []
    assert next(iterator).id == "a"
    assert len(requests_mock.request_history) == 1
    assert [a.id for a in iterator] == ["b"]
    assert len(requests_mock.request_history) == 2


# -- errors ------------------------------------------------------------------------------------------------

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "cls", "code", "message", "field"),
    [
        (
            400,
            {"error": {"code": "invalid_file_format", "message": "Audio file must be in WAV, MP3 format"}},
            None,
            InvalidRequestError,
            "invalid_file_format",
            "Audio file must be in WAV, MP3 format",
            None,
        ),
        (
            413,
            {"error": {"code": "file_too_large", "message": "Audio file exceeds maximum size of 100 MB"}},
            None,
            PayloadTooLargeError,
            "file_too_large",
            "Audio file exceeds maximum size of 100 MB",
            None,
        ),
        (
            429,
            {"error": {"code": "rate_limit_exceeded", "message": "Rate limit exceeded."}},
            None,
            RateLimitedError,
            "rate_limit_exceeded",
            "Rate limit exceeded.",
            None,
        ),
        (
            401,
            {"detail": "Invalid authentication credentials"},
            None,
            AuthenticationError,
            "authentication_failed",
            "Invalid authentication credentials",
            None,
        ),
        (404, {"detail": "Not found"}, None, NotFoundError, "not_found", "Not found", None),
        (
            409,
            {"detail": "key reused"},
            None,
            IdempotencyConflictError,
            "idempotency_conflict",
            "key reused",
            None,
        ),
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["query", "limit"],
                        "msg": "ensure this value is less than or equal to 1000",
                        "type": "value_error.number.not_le",
                    }
                ]
            },
            None,
            InvalidRequestError,
            "validation_error",
            "limit: ensure this value is less than or equal to 1000",
            "limit",
        ),
        (
            502,
            HTML_502,
            "text/html",
            ServerError,
            "server_error",
            f"non-JSON response (text/html): {HTML_502}",
            None,
        ),
        (
            500,
            '{"detail": "inter',
            "application/json",
            ServerError,
            "server_error",
            'non-JSON response (application/json): {"detail": "inter',
            None,
        ),
        (
            200,
            '{"id": "a1", "status": "compl',
            "application/json",
            UnexpectedResponseError,
            "unexpected_response",
            "get response does not match the CallCov API contract: the body is not valid JSON",
            None,
        ),
        (
            200,
            {"status": "completed", "object": "analysis"},
            None,
            UnexpectedResponseError,
            "unexpected_response",
            "get response does not match the CallCov API contract: id: Field required",
            None,
        ),
        (
            200,
            HTML_502,
            "text/html",
            UnexpectedResponseError,
            "unexpected_response",
            "get response does not match the CallCov API contract: the body is not valid JSON",
            None,
        ),
    ],
    ids=[
        "error-400",
        "error-413",
        "error-429",
        "detail-401",
        "detail-404",
        "detail-409",
        "detail-list-422",
        "html-502",
        "truncated-500",
        "truncated-200",
        "no-id-200",
        "html-200",
    ],
)
def test_every_error_body_becomes_its_typed_error(
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    status: int,
    body: Any,
    content_type: str | None,
    cls: type[CallCovError],
    code: str,
    message: str,
    field: str | None,
) -> None:
    hook = make_hook(retry_policy=RetryPolicy(max_retries=0, max_rate_limited_retries=0))
    kwargs: dict[str, Any] = {"status_code": status}
    if isinstance(body, str):
        kwargs["text"] = body
        kwargs["headers"] = {"Content-Type": content_type}
    else:
        kwargs["json"] = body
    requests_mock.get(f"{API}/analysis/a1", **kwargs)
    with pytest.raises(CallCovError) as info:
        hook.get_analysis("a1")
    err = info.value
    assert type(err) is cls
    assert (err.status_code, err.code, err.message, err.field) == (status, code, message, field)
    assert len(requests_mock.request_history) == 1


def test_redirect_is_not_followed(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{API}/analysis/a1", status_code=302, headers={"Location": "https://evil.test/"})
    with pytest.raises(UnexpectedResponseError) as info:
        hook.get_analysis("a1")
    assert info.value.status_code == 302
    assert len(requests_mock.request_history) == 1


def test_rate_limited_error_reports_the_servers_wait(
    make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    hook = make_hook(retry_policy=RetryPolicy(max_retries=0))
    requests_mock.get(
        f"{API}/analysis/",
        status_code=429,
        headers={"Retry-After": "32"},
        json={"error": {"code": "rate_limit_exceeded", "message": "try again in 32 seconds"}},
    )
    with pytest.raises(RateLimitedError) as info:
        hook.list_analyses()
    assert info.value.retry_after == 32.0


def test_unknown_transport_error_is_a_connection_error(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{API}/analysis/a1", exc=requests.exceptions.InvalidHeader("bad header"))
    with pytest.raises(APIConnectionError, match=r"GET /analysis/a1 failed: InvalidHeader"):
        hook.get_analysis("a1")
    assert len(requests_mock.request_history) == 1


# -- test_connection ---------------------------------------------------------------------------------------


def test_connection_success(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{API}/analysis/", json=page(["a1"], has_more=True, total=9))
    ok, message = hook.test_connection()
    assert ok is True
    assert message == f"Connected to the CallCov API at {API} (connection 'callcov_default')"
    assert query(requests_mock.last_request) == {"limit": ["1"]}
    assert requests_mock.last_request.headers["X-API-Key"] == KEY


@pytest.mark.parametrize("status", [401, 403])
def test_connection_with_a_refused_key(hook: CallCovHook, requests_mock: rm.Mocker, status: int) -> None:
    # A server that echoes the key it refused: the message still must not carry it.
    requests_mock.get(f"{API}/analysis/", status_code=status, json={"detail": f"Invalid API key {KEY}"})
    ok, message = hook.test_connection()
    assert ok is False
    assert "authentication" in message.lower()
    assert KEY not in message
    assert len(requests_mock.request_history) == 1


def test_connection_to_an_unreachable_host(hook: CallCovHook, requests_mock: rm.Mocker, sleeps: Any) -> None:
    requests_mock.get(f"{API}/analysis/", exc=refused())
    ok, message = hook.test_connection()
    assert ok is False
    assert "reach" in message.lower()
    assert "connect" in message.lower()
    assert KEY not in message
    assert len(requests_mock.request_history) == 1
    assert sleeps.waits == []


def test_connection_with_a_server_error(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        f"{API}/analysis/", status_code=500, text=HTML_502, headers={"Content-Type": "text/html"}
    )
    ok, message = hook.test_connection()
    assert ok is False
    assert message.startswith(
        f"The CallCov API at {API} answered with an error (connection 'callcov_default'): "
        "HTTP 500 [server_error]"
    )
    assert len(requests_mock.request_history) == 1


def test_connection_without_a_key(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    connection(password="")
    ok, message = make_hook().test_connection()
    assert ok is False
    assert "no API key" in message
    assert requests_mock.request_history == []


def test_connection_refused_for_real_on_loopback(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> None:
    """The real requests/urllib3 exception for a refused connection is classified as unreachable."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: connecting is refused at once, without leaving the machine.
    connection(host=f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=2)
    hook = make_hook()
    ok, message = hook.test_connection()
    assert ok is False
    assert message.startswith("Cannot reach the CallCov API at http://127.0.0.1:")
    assert "(connection 'callcov_default')" in message
    assert "connect error on GET http://127.0.0.1:" in message
    assert KEY not in message


def test_json_request_body_is_sent_unchanged_on_retry(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.post(f"{API}/analysis/", [{"status_code": 503}, {"status_code": 201, "json": ANALYSIS_001}])
    hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    first, second = requests_mock.request_history
    assert json.loads(first.body) == json.loads(second.body)


def test_created_timestamp_from_the_legacy_submit(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    requests_mock.post(f"{API}/analysis/", json=SUBMIT_000)
    result = hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert result.created_timestamp == datetime(2024, 1, 15, 10, 30, 5, tzinfo=UTC).timestamp()


def test_iter_steps_over_a_page_whose_items_were_all_unreadable(
    hook: CallCovHook, requests_mock: rm.Mocker
) -> None:
    unreadable = {"object": "analysis", "status": "completed"}  # no id: skipped, with a warning
    requests_mock.get(
        f"{API}/analysis/",
        [
            {"json": {"object": "list", "data": [unreadable] * 2, "has_more": True}},
            {"json": page(["a1", "a2"], has_more=False)},
        ],
    )
    assert [a.id for a in hook.iter_analyses(page_size=2)] == ["a1", "a2"]
    # The second page starts after the two items the first carried, readable or not.
    assert _offsets(requests_mock) == [(2, 0), (2, 2)]
