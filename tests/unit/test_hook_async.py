"""CallCovHook on the async path (httpx, mocked with httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from callcov_provider.exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    CallCovError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnexpectedResponseError,
)
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.models import AnalysisStatus
from callcov_provider.version import __version__
from tests.unit.conftest import (
    ANALYSIS_001,
    API,
    COMPLETED_002,
    KEY,
    SleepRecorder,
    analysis,
    guard_connection_lookup,
)

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """A scripted httpx transport: answers each request with the next entry, and records the requests."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def ahook(make_hook: Callable[..., CallCovHook], monkeypatch: pytest.MonkeyPatch) -> CallCovHook:
    hook = make_hook()
    # Airflow 3.3.2+: never the blocking lookup; older versions: only in the compat helper's worker thread.
    guard_connection_lookup(hook, "the async path must not use the blocking connection lookup")
    return hook


async def test_aget_analysis_with_api_key(ahook: CallCovHook) -> None:
    server = Server(ok(COMPLETED_002))
    ahook.async_transport = server.transport()
    result = await ahook.aget_analysis(COMPLETED_002["id"])
    assert result.status is AnalysisStatus.COMPLETED
    (request,) = server.requests
    assert str(request.url) == f"{API}/analysis/{COMPLETED_002['id']}"
    assert request.method == "GET"
    assert request.headers["X-API-Key"] == KEY
    assert "Authorization" not in request.headers
    assert request.headers["User-Agent"].startswith(f"airflow-provider-callcov/{__version__} httpx/")
    assert request.headers["Accept"] == "application/json"
    timeout = request.extensions["timeout"]
    assert timeout == {"connect": 10.0, "read": 60.0, "write": 60.0, "pool": 60.0}
    await ahook.aclose()
    assert ahook._async_client is None
    await ahook.aclose()


async def test_aget_analysis_with_bearer_and_the_injected_client(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> None:
    connection(auth_type="bearer")
    hook = make_hook()
    server = Server(ok(ANALYSIS_001))
    hook._async_client = httpx.AsyncClient(transport=server.transport())
    result = await hook.aget_analysis("550e8400-e29b-41d4-a716-446655440000")
    assert result.status is AnalysisStatus.PROCESSING
    assert result.results is None
    assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert "X-API-Key" not in server.requests[0].headers
    await hook.aclose()


async def test_alist_analyses_and_its_filters(ahook: CallCovHook) -> None:
    server = Server(
        ok({"object": "list", "data": [COMPLETED_002, ANALYSIS_001], "has_more": True, "total": 247})
    )
    ahook.async_transport = server.transport()
    listing = await ahook.alist_analyses(
        status_filter="completed", agent_id="agent_001", search="cust", contact_id="c1", limit=50, offset=100
    )
    assert [a.id for a in listing.data] == [COMPLETED_002["id"], ANALYSIS_001["id"]]
    assert listing.total == 247
    assert dict(server.requests[0].url.params) == {
        "status_filter": "completed",
        "agent_id": "agent_001",
        "contact_id": "c1",
        "search": "cust",
        "limit": "50",
        "offset": "100",
    }
    await ahook.aclose()


async def test_alist_checks_its_parameters_before_sending(ahook: CallCovHook) -> None:
    server = Server(ok({"data": []}))
    ahook.async_transport = server.transport()
    with pytest.raises(InvalidRequestError) as info:
        await ahook.alist_analyses(limit=1001)
    assert info.value.field == "limit"
    with pytest.raises(InvalidRequestError):
        await ahook.aget_analysis("")
    assert server.requests == []


async def test_async_retries_honour_the_server_and_log(
    ahook: CallCovHook, sleeps: SleepRecorder, hook_logs: list[dict[str, Any]]
) -> None:
    server = Server(
        ok({"detail": "busy"}, 503),
        ok({"error": {"code": "rate_limit_exceeded", "message": "slow"}}, 429, **{"Retry-After": "9"}),
        httpx.ReadTimeout("slow read"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed"),
        ok(analysis("a1")),
    )
    ahook.async_transport = server.transport()
    assert (await ahook.aget_analysis("a1")).id == "a1"
    assert len(server.requests) == 6
    assert len(sleeps.waits) == 5
    assert 0.0 <= sleeps.waits[0] <= 1.0
    assert 9.0 <= sleeps.waits[1] <= 10.0
    for attempt, wait in enumerate(sleeps.waits[2:], start=3):
        assert 0.0 <= wait <= 2.0 ** (attempt - 1)
    warnings = [e["event"] for e in hook_logs if e["log_level"] == "warning"]
    reasons = ["HTTP 503", "HTTP 429", "read timeout", "connect error", "connection dropped"]
    # A 429 that says when to come back is counted apart, against the larger bound for being paced.
    counts = [(1, 5), (1, 20), (2, 5), (3, 5), (4, 5)]
    assert warnings == [
        f"CallCov GET /analysis/a1: {reason}; retry {n} of {limit} in {wait:.2f}s"
        for reason, (n, limit), wait in zip(reasons, counts, sleeps.waits, strict=True)
    ]


@pytest.mark.parametrize(
    ("failure", "error", "text"),
    [
        (httpx.ReadTimeout("slow"), APITimeoutError, "read timeout"),
        (httpx.ConnectTimeout("slow"), APITimeoutError, "connect timeout"),
        (httpx.PoolTimeout("slow"), APITimeoutError, "connect timeout"),
        (httpx.ConnectError("refused"), APIConnectionError, "connect error"),
        (httpx.ReadError("reset"), APIConnectionError, "connection dropped"),
        (httpx.UnsupportedProtocol("gopher"), APIConnectionError, "failed: UnsupportedProtocol"),
    ],
)
async def test_async_transport_failures_become_typed_errors(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    sleeps: SleepRecorder,
    failure: Exception,
    error: type[CallCovError],
    text: str,
) -> None:
    connection(max_retries=2)
    hook = make_hook()
    server = Server(failure)
    hook.async_transport = server.transport()
    with pytest.raises(error, match=text) as info:
        await hook.aget_analysis("a1")
    assert KEY not in str(info.value)
    retried = not isinstance(failure, httpx.UnsupportedProtocol)
    assert len(server.requests) == (3 if retried else 1)
    assert len(sleeps.waits) == (2 if retried else 0)
    await hook.aclose()


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            ok({"detail": f"Invalid authentication credentials {KEY}"}, 401),
            AuthenticationError,
            "Invalid authentication credentials <redacted>",
        ),
        (ok({"detail": "Not found"}, 404), NotFoundError, "Not found"),
        (
            ok({"detail": [{"loc": ["query", "limit"], "msg": "too big", "type": "x"}]}, 422),
            InvalidRequestError,
            "limit: too big",
        ),
        (
            httpx.Response(502, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}),
            ServerError,
            "non-JSON response (text/html): <html>Bad Gateway</html>",
        ),
        (
            httpx.Response(200, text='{"id": "a1", "sta'),
            UnexpectedResponseError,
            "get response does not match the CallCov API contract: the body is not valid JSON",
        ),
        (
            ok({"status": "processing"}),
            UnexpectedResponseError,
            "get response does not match the CallCov API contract: id: Field required",
        ),
    ],
)
async def test_async_error_bodies(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    response: httpx.Response,
    error: type[CallCovError],
    message: str,
) -> None:
    connection(max_retries=0)
    hook = make_hook()
    hook.async_transport = Server(response).transport()
    with pytest.raises(error) as info:
        await hook.aget_analysis("a1")
    assert type(info.value) is error
    assert info.value.message == message
    assert info.value.status_code == response.status_code
    await hook.aclose()


async def test_async_client_is_reused(ahook: CallCovHook) -> None:
    server = Server(ok(analysis("a1")))
    ahook.async_transport = server.transport()
    await ahook.aget_analysis("a1")
    client = ahook._async_client
    await ahook.aget_analysis("a1")
    assert ahook._async_client is client
    assert len(server.requests) == 2
    assert json.loads(server.requests[0].content or b"null") is None
    await ahook.aclose()


async def test_async_lookup_that_misses_falls_back_to_the_blocking_lookup_off_the_loop(
    make_hook: Callable[..., CallCovHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in `airflow dags test` on Airflow 3.3: the async lookup cannot reach the supervisor, so it misses
    # a connection the blocking lookup finds in the database.
    import threading

    from airflow.providers.common.compat import connection as compat_connection
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    async def async_miss(conn_id: str, hook: Any = None) -> Any:
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")

    monkeypatch.setattr(compat_connection, "get_async_connection", async_miss)
    hook = make_hook()
    original = hook.get_connection
    loop_thread = threading.get_ident()
    lookups: list[int] = []

    def blocking_lookup(conn_id: str) -> Any:
        lookups.append(threading.get_ident())
        return original(conn_id)

    hook.get_connection = blocking_lookup  # type: ignore[method-assign]
    server = Server(ok(COMPLETED_002))
    hook.async_transport = server.transport()
    result = await hook.aget_analysis(COMPLETED_002["id"])
    assert result.status is AnalysisStatus.COMPLETED
    assert len(lookups) == 1
    assert lookups[0] != loop_thread  # never blocks the event loop
    assert server.requests[0].headers["X-API-Key"] == KEY


async def test_a_connection_missing_everywhere_is_still_reported(
    make_hook: Callable[..., CallCovHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    monkeypatch.delenv("AIRFLOW_CONN_CALLCOV_DEFAULT")
    hook = make_hook("callcov_nowhere")
    with pytest.raises(AirflowNotFoundException, match="callcov_nowhere"):
        await hook.aget_analysis(COMPLETED_002["id"])
