"""
The control and audit API under ``/_emulator``: read the request log and every analysis, change faults,
rate limits and processing at run time, move the clock, seed analyses in bulk, reset; plus two helpers
for tests and demos: synthetic audio to submit by URL, and a webhook receiver.

No key is needed: the emulator binds to loopback by default, and this API exists only on the emulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from callcov_provider.formats import AUDIO_FORMATS
from callcov_provider.models import AnalysisStatus
from callcov_provider.testing.audio import audio_bytes, wav_bytes
from callcov_provider.testing.config import FaultSettings, ProcessingSettings, RateLimitSettings
from callcov_provider.testing.render import control_view
from callcov_provider.testing.state import EmulatorState

SettingsT = TypeVar("SettingsT", bound=BaseModel)
MAX_SEED = 1_000_000
MAX_AUDIO_SECONDS = 3600.0


class AdvanceRequest(BaseModel):
    """Body of ``POST /_emulator/advance``."""

    seconds: float = Field(ge=0)


class ClockOffsetRequest(BaseModel):
    """Body of ``PUT /_emulator/clock``: the server clock's offset from the wall clock, in seconds."""

    offset: float = Field(ge=-10 * 365 * 86400, le=10 * 365 * 86400)


class SeedRequest(BaseModel):
    """
    Body of ``POST /_emulator/seed``: bulk-create analyses for one account.

    :param account: The account label (``acct_1``, ...).
    :param count: How many analyses.
    :param created_from: Creation time of the oldest (epoch seconds; default: a day ago).
    :param created_to: Creation time of the newest (default: now).
    :param statuses: Cycled through, one per analysis.
    :param agent_ids: Cycled through, one per analysis.
    :param contact_ids: Cycled through; default ``{contact_prefix}{seq:06d}``, unique per analysis.
    :param return_ids: Return the new ids (newest last).
    """

    model_config = ConfigDict(extra="forbid")

    account: str = "acct_1"
    count: int = Field(ge=1, le=MAX_SEED)
    created_from: float | None = None
    created_to: float | None = None
    statuses: list[AnalysisStatus] = Field(default_factory=lambda: [AnalysisStatus.COMPLETED], min_length=1)
    agent_ids: list[str] = Field(default_factory=lambda: ["agent_001"], min_length=1)
    contact_ids: list[str] | None = None
    contact_prefix: str = "customer_"
    audio_format: str = "wav"
    return_ids: bool = False

    @model_validator(mode="after")
    def _check(self) -> SeedRequest:
        if (
            self.created_from is not None
            and self.created_to is not None
            and self.created_to < self.created_from
        ):
            raise ValueError("created_to must not be before created_from")
        return self


def _validation_error(err: ValidationError) -> JSONResponse:
    return JSONResponse({"detail": json.loads(err.json(include_url=False))}, status_code=422)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _settings_endpoints(
    router: APIRouter,
    path: str,
    model: type[SettingsT],
    read: Callable[[], SettingsT],
    write: Callable[[SettingsT], None],
) -> None:
    """GET the settings; POST merges the given fields into them; PUT replaces them (unset = default)."""

    async def get_settings() -> dict[str, Any]:
        return read().model_dump()

    async def update(request: Request, merge: bool) -> Response:
        try:
            changes = await _body(request)
        except ValueError as err:
            return JSONResponse({"detail": f"invalid JSON body: {err}"}, status_code=400)
        data = {**read().model_dump(), **changes} if merge else changes
        try:
            settings = model.model_validate(data)
        except ValidationError as err:
            return _validation_error(err)
        write(settings)
        return JSONResponse(read().model_dump())

    async def post_settings(request: Request) -> Response:
        return await update(request, merge=True)

    async def put_settings(request: Request) -> Response:
        return await update(request, merge=False)

    router.add_api_route(path, get_settings, methods=["GET"], summary=f"Read the {model.__name__}")
    router.add_api_route(path, post_settings, methods=["POST"], summary=f"Merge into the {model.__name__}")
    router.add_api_route(path, put_settings, methods=["PUT"], summary=f"Replace the {model.__name__}")


def build_control_router(state: EmulatorState) -> APIRouter:
    """
    Build the ``/_emulator`` router over ``state``.

    :param state: The emulator's state.
    """
    router = APIRouter(tags=["emulator control"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, the emulator's clock and how much it stores."""
        return {"status": "ok", "now": state.now(), **state.store.counts()}

    @router.get("/config")
    async def config() -> dict[str, Any]:
        """The current settings (account labels, never keys)."""
        return state.settings()

    @router.get("/clock")
    async def clock() -> dict[str, Any]:
        """The emulator's time and how far it has been advanced."""
        return {"now": state.now(), "offset": state.clock.offset, "wall": time.time()}

    @router.put("/clock")
    async def set_clock(body: ClockOffsetRequest) -> dict[str, Any]:
        """
        Set the server clock's offset from the wall clock (may be negative or move it back), to test a
        client whose clock differs from the server's. ``reset`` returns to the start-up offset.
        """
        state.set_clock_offset(body.offset)
        return {"now": state.now(), "offset": state.clock.offset, "wall": time.time()}

    @router.get("/requests")
    async def requests_log(
        method: str | None = None,
        path: str | None = None,
        account: str | None = None,
        since: int = 0,
        limit: int = Query(10_000, ge=1),
    ) -> dict[str, Any]:
        """The ``/api/v1`` request log, oldest first; filter by method, path prefix, account, seq."""
        entries = [
            e.to_json()
            for e in list(state.request_log)
            if e.seq > since
            and (method is None or e.method == method.upper())
            and (path is None or e.path.startswith(path))
            and (account is None or e.account == account)
        ]
        return {"data": entries[-limit:], "total": len(entries)}

    @router.delete("/requests")
    async def clear_requests() -> dict[str, Any]:
        """Empty the request log."""
        state.request_log.clear()
        return {"cleared": True}

    @router.get("/analyses")
    async def analyses(account: str | None = None, status: AnalysisStatus | None = None) -> dict[str, Any]:
        """Every analysis with its account, newest first; filter by account and status."""
        now = state.now()
        records, total = state.store.query(account=account, now=now, status=status)
        return {"data": [control_view(record, now) for record in records], "total": total}

    @router.get("/analyses/{analysis_id}")
    async def analysis(analysis_id: str) -> Response:
        """One analysis with its account, whoever owns it."""
        record = state.store.get(analysis_id)
        if record is None:
            return JSONResponse({"detail": "Analysis not found"}, status_code=404)
        return JSONResponse(control_view(record, state.now()))

    _settings_endpoints(router, "/faults", FaultSettings, lambda: state.faults.settings, state.set_faults)
    _settings_endpoints(
        router, "/rate-limits", RateLimitSettings, lambda: state.rate_limits, state.set_rate_limits
    )
    _settings_endpoints(
        router, "/processing", ProcessingSettings, lambda: state.processing, state.set_processing
    )

    @router.post("/advance")
    async def advance(body: AdvanceRequest) -> dict[str, Any]:
        """Move the clock forward: processing, ``created`` of new analyses and rate-limit windows follow."""
        now = state.advance(body.seconds)
        return {"now": now, "offset": state.clock.offset}

    @router.post("/complete-all")
    async def complete_all() -> dict[str, Any]:
        """End the processing of every analysis now (failures still fail)."""
        return {"completed": state.complete_all()}

    @router.post("/seed")
    async def seed(body: SeedRequest) -> Response:
        """Bulk-create analyses (for benchmarks and list tests)."""
        if body.account not in state.keyring.accounts:
            return JSONResponse({"detail": f"unknown account {body.account!r}"}, status_code=422)
        now = state.now()
        created_to = body.created_to if body.created_to is not None else now
        created_from = body.created_from if body.created_from is not None else created_to - 86400.0
        records = state.seed_analyses(
            account=body.account,
            count=body.count,
            created_from=created_from,
            created_to=created_to,
            statuses=[s.value for s in body.statuses],
            agent_ids=body.agent_ids,
            contact_ids=body.contact_ids,
            contact_prefix=body.contact_prefix,
            audio_format=body.audio_format,
        )
        result: dict[str, Any] = {
            "created": len(records),
            "first_id": records[0].id,
            "last_id": records[-1].id,
        }
        if body.return_ids:
            result["ids"] = [record.id for record in records]
        return JSONResponse(result, status_code=201)

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        """Forget everything and return to the start-up configuration."""
        state.reset()
        return {"reset": True}

    @router.get("/webhooks")
    async def webhooks() -> dict[str, Any]:
        """Every webhook delivery attempt the emulator made, oldest first."""
        return {"data": list(state.webhook_log)}

    @router.post("/webhook-sink")
    async def webhook_sink_post(request: Request, fail: int = Query(0, ge=0)) -> Response:
        """
        A webhook receiver for tests and demos: records each event. With ``?fail=N`` it answers 500 to the
        first N deliveries of each analysis, to exercise retries.
        """
        try:
            payload = await _body(request)
        except ValueError:
            return JSONResponse({"detail": "invalid JSON"}, status_code=400)
        data = payload.get("data")
        analysis_id = str(data.get("id")) if isinstance(data, Mapping) else ""
        seen = state.sink_failures.get(analysis_id, 0)
        if seen < fail:
            state.sink_failures[analysis_id] = seen + 1
            return JSONResponse({"detail": "failing on purpose"}, status_code=500)
        state.webhook_sink.append(
            {"received_at": state.now(), "event": payload.get("event"), "body": payload}
        )
        return JSONResponse({"received": True})

    @router.get("/webhook-sink")
    async def webhook_sink_get() -> dict[str, Any]:
        """The events the webhook receiver accepted, oldest first."""
        return {"data": list(state.webhook_sink)}

    @router.get("/audio/{filename}")
    async def audio(
        filename: str,
        seconds: float = Query(3.0, ge=0, le=MAX_AUDIO_SECONDS),
        seed: int = 0,
        silent: bool = False,
        content_type: str | None = None,
    ) -> Response:
        """
        Synthetic audio in the format of ``filename``'s extension, to submit by ``audio_url``. Any other
        query parameter (a signed token, say) is ignored. ``content_type`` overrides the header.
        """
        extension = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        fmt = AUDIO_FORMATS.get(extension)
        if fmt is None:
            return JSONResponse({"detail": f"unknown audio extension {extension!r}"}, status_code=404)
        body = (
            wav_bytes(seconds, silent=silent, seed=seed)
            if fmt.name == "wav"
            else audio_bytes(extension, seconds, seed=seed)
        )
        return Response(body, media_type=content_type or fmt.content_type)

    return router
