"""
The emulator's ASGI app: the documented ``/api/v1`` endpoints of both API generations, and the
``/_emulator`` control API (see :mod:`callcov_provider.testing.control`).

Every ``/api/v1`` request first passes a gateway that draws its faults, authenticates it, applies the rate
limits, adds the ``X-RateLimit-*`` headers and writes the request log. ``/_emulator`` requests skip it:
they are never faulted, limited or logged, and need no key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match

from callcov_provider.constants import LEGACY_SUBMIT_PATH, SUBMIT_PATH
from callcov_provider.exceptions import safe_url
from callcov_provider.testing import errors
from callcov_provider.testing.auth import Identity
from callcov_provider.testing.config import EmulatorConfig
from callcov_provider.testing.errors import ApiError
from callcov_provider.testing.faults import FaultPlan, abort_connection
from callcov_provider.testing.fields import Submission, check_list_query, check_submission
from callcov_provider.testing.probe import probe_audio
from callcov_provider.testing.ratelimit import UNLIMITED, format_reset
from callcov_provider.testing.render import analysis_response, legacy_status_response, legacy_submit_response
from callcov_provider.testing.state import EmulatorState, RequestLogEntry
from callcov_provider.testing.store import AnalysisRecord, IdempotencyEntry
from callcov_provider.testing.uploads import StoredAudio, drain, fetch_audio, read_json, read_multipart

API_PREFIX = "/api/v1"
CONTROL_PREFIX = "/_emulator"
#: Both generations' submit paths, with and without a trailing slash.
SUBMIT_PATHS = frozenset(
    API_PREFIX + p
    for p in (SUBMIT_PATH, SUBMIT_PATH.rstrip("/"), LEGACY_SUBMIT_PATH, LEGACY_SUBMIT_PATH + "/")
)
#: The status a new submission gets on both paths (the current generation: ``201 Created``; the older
#: generation does not say).
CREATED = 201
MAX_IDEMPOTENCY_KEY = 255
DRAIN_LIMIT = 256 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

INJECTED_BODIES: dict[int, tuple[str, bytes]] = {
    500: (
        "application/json",
        b'{"error":{"code":"internal_error","message":"Internal server error (injected)"}}',
    ),
    502: (
        "text/html; charset=utf-8",
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
    ),
    503: (
        "application/json",
        b'{"error":{"code":"service_unavailable",'
        b'"message":"The service is temporarily unavailable (injected)"}}',
    ),
    504: (
        "text/html; charset=utf-8",
        b"<html><head><title>504 Gateway Time-out</title></head>"
        b"<body><h1>504 Gateway Time-out</h1></body></html>",
    ),
}


def _json_bytes(body: Any) -> bytes:
    import json

    return json.dumps(body, separators=(",", ":")).encode()


async def _send_raw(send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_error(send: Send, error: ApiError) -> None:
    await _send_raw(send, error.status, _json_bytes(error.body), "application/json", error.headers)


async def _drain_receive(receive: Receive, limit: int = DRAIN_LIMIT) -> None:
    """Read what is left of the request body so that the client gets to read our answer."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class EmulatorApp(FastAPI):
    """
    The FastAPI app of the emulator; ``/api/v1`` requests go through :meth:`gateway` first.

    Build it with :func:`create_app`. :attr:`emulator` is its :class:`EmulatorState`.
    """

    emulator: EmulatorState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        """ASGI entry point."""
        path = scope.get("path", "")
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # type: ignore[arg-type]
            return
        send = self._finishing(scope, send)
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            await self.gateway(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)  # type: ignore[arg-type]

    def allowed_methods(self, scope: Scope) -> list[str]:
        """Every method some route serves at this scope's path (for the ``Allow`` header of a 405)."""
        probe = {**scope, "method": "GET"}
        methods: set[str] = set()
        for route in self.router.routes:
            route_methods = getattr(route, "methods", None)
            if route_methods and route.matches(probe)[0] is not Match.NONE:
                methods.update(route_methods)
        return sorted(methods)

    def _finishing(self, scope: Scope, send: Send) -> Send:
        """
        Add a ``Date`` header in the emulator's clock (which may be offset from the wall clock), and make
        a 405's ``Allow`` list every method the path serves (the router names only one route's).
        """
        state = self.emulator

        async def finishing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                drop = {b"date"}
                headers = [(b"date", formatdate(state.now(), usegmt=True).encode())]
                if message.get("status") == 405:
                    drop.add(b"allow")
                    headers.append((b"allow", ", ".join(self.allowed_methods(scope)).encode()))
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() not in drop),
                    *headers,
                ]
            await send(message)

        # Dropping a connection needs the server's own send (see faults.abort_connection).
        finishing.__wrapped__ = send  # type: ignore[attr-defined]
        return finishing

    async def gateway(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Faults, authentication, rate limits, rate-limit headers and the request log of one API request.

        :param scope: The ASGI scope.
        :param receive: The ASGI receive callable.
        :param send: The server's own send callable (needed to drop a connection).
        """
        state = self.emulator
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        identity = state.keyring.identify(headers)
        method, path = scope["method"], scope["path"]
        is_submission = method == "POST" and path in SUBMIT_PATHS
        entry = state.new_log_entry(
            method,
            path,
            scope.get("query_string", b"").decode("latin-1"),
            identity.mode,
            identity.account,
            headers.get("idempotency-key"),
        )
        plan = state.faults.plan(is_submission=is_submission)
        entry.fault = plan.label
        try:
            if plan.latency:
                await asyncio.sleep(plan.latency)
            if plan.drop:
                if not abort_connection(send):
                    raise RuntimeError("injected fault: connection dropped")
                return
            if plan.status is not None:
                await _drain_receive(receive)
                await self._send_injected(send, plan.status)
                entry.status = plan.status
                return
            if identity.account is None:
                await _drain_receive(receive)
                await _send_error(send, errors.unauthorized())
                entry.status = 401
                return
            limits = state.rate_limits
            decision = state.limiter.check(
                identity.account,
                state.now(),
                requests_per_minute=limits.effective_requests_per_minute(),
                submissions_per_minute=limits.effective_submissions_per_minute(),
                is_submission=is_submission,
                separate_quotas=limits.documented,
                reset_format=limits.reset_format,
            )
            if not decision.allowed:
                await _drain_receive(receive)
                await _send_error(
                    send,
                    errors.rate_limited(
                        decision.retry_after, decision.headers(), documented=limits.documented
                    ),
                )
                entry.status = 429
                entry.extra["limit"] = decision.kind
                return
            scope["callcov.identity"] = identity
            scope["callcov.log"] = entry
            await super().__call__(  # type: ignore[arg-type]
                scope, receive, self._wrap_send(send, entry, plan, decision.headers())
            )
        finally:
            entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)

    async def _send_injected(self, send: Send, status: int) -> None:
        state = self.emulator
        if status == 429:
            limits = state.rate_limits
            retry_after = state.faults.settings.retry_after
            limit = limits.effective_requests_per_minute() or UNLIMITED
            reset = int(state.now()) + retry_after
            rl = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": format_reset(reset, retry_after, limits.reset_format),
            }
            await _send_error(send, errors.rate_limited(retry_after, rl, documented=limits.documented))
            return
        content_type, body = INJECTED_BODIES.get(
            status,
            (
                "application/json",
                _json_bytes({"error": {"code": "injected_error", "message": f"HTTP {status}"}}),
            ),
        )
        await _send_raw(send, status, body, content_type, {})

    def _wrap_send(
        self, send: Send, entry: RequestLogEntry, plan: FaultPlan, rl_headers: dict[str, str]
    ) -> Send:
        """Add the rate-limit headers, record the status, and lose a submission's answer when planned."""
        swallowing = False
        extra = [(k.lower().encode(), v.encode()) for k, v in rl_headers.items()]

        async def wrapped(message: Message) -> None:
            nonlocal swallowing
            if message["type"] == "http.response.start":
                status = int(message["status"])
                entry.status = status
                if plan.lose is not None and 200 <= status < 300:
                    swallowing = True
                    entry.extra["handled_status"] = status
                    if plan.lose == "drop" and abort_connection(send):
                        entry.status = None
                        return
                    entry.status = 503
                    content_type, body = INJECTED_BODIES[503]
                    await _send_raw(send, 503, body, content_type, rl_headers)
                    return
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
                await send(message)
            elif not swallowing:
                await send(message)

        return wrapped


def _state(request: Request) -> EmulatorState:
    app = request.app
    assert isinstance(app, EmulatorApp)
    return app.emulator


def _identity(request: Request) -> Identity:
    identity = request.scope["callcov.identity"]
    assert isinstance(identity, Identity)
    return identity


def _log(request: Request) -> RequestLogEntry:
    entry = request.scope["callcov.log"]
    assert isinstance(entry, RequestLogEntry)
    return entry


def _account(request: Request) -> str:
    account = _identity(request).account
    assert account is not None
    return account


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


class _Submit:
    """One submission's handling, for either generation's path."""

    def __init__(self, request: Request, legacy: bool) -> None:
        self.request = request
        self.legacy = legacy
        self.state = _state(request)
        self.account = _account(request)
        self.log = _log(request)
        self.key = request.headers.get("idempotency-key")

    def render(self, record: AnalysisRecord, status: int, replayed: bool = False) -> Response:
        now = self.state.now()
        body = legacy_submit_response(record, now) if self.legacy else analysis_response(record, now)
        self.log.analysis_id = record.id
        self.log.replayed = replayed
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return JSONResponse(body, status_code=status, headers=headers)

    def replay(self, entry: IdempotencyEntry, fingerprint: str) -> Response:
        if entry.fingerprint != fingerprint:
            raise errors.coded(
                409,
                "idempotency_conflict",
                f"Idempotency-Key {self.key!r} was already used with a different request",
            )
        record = self.state.store.get(entry.analysis_id, self.account)
        if record is None:  # pragma: no cover - keys and analyses are deleted together
            raise errors.not_found()
        return self.render(record, entry.status_code, replayed=True)

    def earlier(self, fingerprint: str) -> Response | None:
        if self.key is None:
            return None
        entry = self.state.store.get_idempotency(self.account, self.key)
        return None if entry is None else self.replay(entry, fingerprint)

    async def run(self) -> Response:
        request = self.request
        stream = request.stream()
        if self.key is not None and (not self.key.strip() or len(self.key) > MAX_IDEMPOTENCY_KEY):
            await drain(stream)
            raise errors.detail(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        content_type = request.headers.get("content-type", "")
        lowered = content_type.lower()
        if lowered.startswith("multipart/form-data"):
            body = await read_multipart(stream, content_type, self.state.tmpdir)
        elif lowered.startswith("application/json") or not lowered:
            body = await read_json(stream)
        else:
            await drain(stream)
            raise errors.detail(415, "Content-Type must be application/json or multipart/form-data")
        audio: StoredAudio | None = body.audio
        try:
            submission = check_submission(body.fields, has_file=audio is not None, kind=body.kind)
            if audio is None:
                assert submission.audio_url is not None
                self.log.audio_url = safe_url(submission.audio_url)
                fingerprint = submission.fingerprint(None)
                answer = self.earlier(fingerprint)
                if answer is not None:
                    return answer
                audio = await fetch_audio(submission.audio_url, self.state.allow_hosts, self.state.tmpdir)
            else:
                fingerprint = submission.fingerprint(audio.sha256)
                answer = self.earlier(fingerprint)
                if answer is not None:
                    return answer
            return await self.create(submission, audio, fingerprint)
        finally:
            if audio is not None:
                audio.discard()

    async def create(self, submission: Submission, audio: StoredAudio, fingerprint: str) -> Response:
        probe = await asyncio.to_thread(probe_audio, audio.path, audio.audio_format.name, audio.size)
        record, previous = self.state.create_analysis(
            account=self.account,
            submission=submission,
            audio_format=audio.audio_format.name,
            audio_size=audio.size,
            audio_sha256=audio.sha256,
            probe=probe,
            submit_path=self.request.url.path,
            idempotency_key=self.key,
            fingerprint=fingerprint,
            status_code=CREATED,
        )
        if previous is not None:  # a concurrent request with the same key won the race
            return self.replay(previous, fingerprint)
        return self.render(record, CREATED)


async def submit_analysis(request: Request) -> Response:
    """``POST /api/v1/analysis/``: multipart upload or JSON ``audio_url``; ``201`` with the analysis."""
    return await _Submit(request, legacy=False).run()


async def submit_legacy(request: Request) -> Response:
    """``POST /api/v1/calls/analyze``: the same, answered in the older generation's shape (also ``201``)."""
    return await _Submit(request, legacy=True).run()


def _find(request: Request, analysis_id: str) -> AnalysisRecord:
    record = _state(request).store.get(analysis_id, _account(request))
    if record is None:
        raise errors.not_found()
    _log(request).analysis_id = analysis_id
    return record


async def get_analysis(request: Request, analysis_id: str) -> Response:
    """``GET /api/v1/analysis/{id}``: the analysis, in this account only."""
    record = _find(request, analysis_id)
    return JSONResponse(analysis_response(record, _state(request).now()))


async def get_legacy_status(request: Request, analysis_id: str) -> Response:
    """``GET /api/v1/calls/analyze/{id}``: the older generation's ``{status, analysis, error}``."""
    record = _find(request, analysis_id)
    return JSONResponse(legacy_status_response(record, _state(request).now()))


async def list_analyses(request: Request) -> Response:
    """``GET /api/v1/analysis/``: filtered, newest first, with ``total`` and ``has_more``."""
    query = check_list_query(request.query_params)
    state = _state(request)
    now = state.now()
    records, total = state.store.query(
        account=_account(request),
        now=now,
        status=query.status,
        agent_id=query.agent_id,
        contact_id=query.contact_id,
        search=query.search,
        limit=query.limit,
        offset=query.offset,
    )
    return JSONResponse(
        {
            "object": "list",
            "data": [analysis_response(record, now) for record in records],
            "has_more": query.offset + len(records) < total,
            "total": total,
        }
    )


def create_app(config: EmulatorConfig | None = None) -> EmulatorApp:
    """
    Build the emulator's ASGI app.

    :param config: The configuration (defaults: one key ``sk_test_callcov``, 2 s processing, no limits,
        no faults, in-memory storage).
    :return: A FastAPI app; its state is ``app.emulator``. Its lifespan runs the webhook sender and
        closes the state (database, temporary files) on shutdown.
    """
    from callcov_provider.testing.control import build_control_router
    from callcov_provider.testing.webhooks import WebhookSender

    state = EmulatorState(config or EmulatorConfig())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sender = WebhookSender(state)
        await sender.start()
        try:
            yield
        finally:
            await sender.stop()
            state.close()

    app = EmulatorApp(
        title="CallCov emulator",
        description="A local emulator of the CallCov API (both generations) with fault injection.",
        redirect_slashes=False,
        lifespan=lifespan,
        docs_url=f"{CONTROL_PREFIX}/docs",
        openapi_url=f"{CONTROL_PREFIX}/openapi.json",
        redoc_url=None,
    )
    app.emulator = state
    app.add_exception_handler(ApiError, _api_error)
    for suffix in ("/analysis/", "/analysis"):
        app.add_api_route(API_PREFIX + suffix, submit_analysis, methods=["POST"], status_code=CREATED)
        app.add_api_route(API_PREFIX + suffix, list_analyses, methods=["GET"])
    for suffix in ("/calls/analyze", "/calls/analyze/"):
        app.add_api_route(API_PREFIX + suffix, submit_legacy, methods=["POST"], status_code=CREATED)
    app.add_api_route(API_PREFIX + "/analysis/{analysis_id}", get_analysis, methods=["GET"])
    app.add_api_route(API_PREFIX + "/calls/analyze/{analysis_id}", get_legacy_status, methods=["GET"])
    app.include_router(build_control_router(state), prefix=CONTROL_PREFIX)
    return app
