"""
Webhook delivery: when an analysis's processing ends, POST ``{"event", "data"}`` to its ``webhook_url``.

A small asyncio task (started by the app's lifespan) looks for due deliveries every
:data:`POLL_SECONDS`, or at once when the clock is advanced or processing is completed by the control
API. Each event is tried ``webhook_attempts`` times with doubling waits, and only to allowlisted hosts;
every attempt is recorded for ``GET /_emulator/webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from callcov_provider.exceptions import safe_url
from callcov_provider.testing.clock import iso
from callcov_provider.testing.render import webhook_event
from callcov_provider.testing.state import EmulatorState
from callcov_provider.testing.store import WEBHOOK_DELIVERED, WEBHOOK_FAILED, WEBHOOK_SKIPPED, AnalysisRecord
from callcov_provider.testing.uploads import host_allowed

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1
TIMEOUT_SECONDS = 5.0


class WebhookSender:
    """
    Delivers due webhook events for one :class:`EmulatorState`.

    :param state: The emulator state.
    """

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()

    async def start(self) -> None:
        """Start the polling task on the running loop."""
        loop = asyncio.get_running_loop()
        self.state.webhook_notifier = lambda: loop.call_soon_threadsafe(self._wakeup.set)
        self._task = asyncio.create_task(self._run(), name="callcov-emulator-webhooks")

    async def stop(self) -> None:
        """Stop polling and cancel deliveries in flight."""
        self.state.webhook_notifier = None
        tasks = [t for t in (self._task, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        import httpx

        async with httpx.AsyncClient(
            timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
        ) as client:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)
                self._wakeup.clear()
                try:
                    due = self.state.store.claim_due_webhooks(self.state.now())
                except Exception:  # pragma: no cover - the database closed under us at shutdown
                    log.debug("webhook poll failed", exc_info=True)
                    continue
                for record in due:
                    task = asyncio.create_task(self._deliver(client, record))
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, client: Any, record: AnalysisRecord) -> None:
        state = self.state
        url = record.webhook_url or ""
        body = webhook_event(record, state.now())
        base = {
            "analysis_id": record.id,
            "account": record.account,
            "event": body["event"],
            "url": safe_url(url),
        }
        if not host_allowed(url, state.allow_hosts):
            state.log_webhook(
                {
                    **base,
                    "attempt": 0,
                    "time": iso(state.now()),
                    "status": None,
                    "outcome": "skipped: host not on the allowlist",
                }
            )
            state.store.set_webhook_state(record.id, WEBHOOK_SKIPPED)
            return
        attempts = state.initial.webhook_attempts
        wait = state.initial.webhook_retry_seconds
        for attempt in range(1, attempts + 1):
            status: int | None = None
            outcome: str
            try:
                response = await client.post(url, json=body, headers={"X-CallCov-Event": body["event"]})
                status = response.status_code
                outcome = "delivered" if 200 <= status < 300 else f"HTTP {status}"
            except Exception as err:  # any transport failure is one failed attempt
                outcome = f"error: {type(err).__name__}"
            state.log_webhook(
                {**base, "attempt": attempt, "time": iso(state.now()), "status": status, "outcome": outcome}
            )
            if outcome == "delivered":
                state.store.set_webhook_state(record.id, WEBHOOK_DELIVERED)
                return
            if attempt < attempts:
                await asyncio.sleep(wait * 2 ** (attempt - 1))
        state.store.set_webhook_state(record.id, WEBHOOK_FAILED)
