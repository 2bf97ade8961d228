"""
The emulator's state and behaviour behind the HTTP layer: accounts, storage, clock, processing, rate
limits, faults, idempotency, the request log and webhook records.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from callcov_provider.exceptions import safe_url
from callcov_provider.formats import AUDIO_FORMATS
from callcov_provider.models import AnalysisStatus
from callcov_provider.testing.auth import KeyRing
from callcov_provider.testing.clock import Clock, iso
from callcov_provider.testing.config import (
    EmulatorConfig,
    FaultSettings,
    ProcessingSettings,
    RateLimitSettings,
)
from callcov_provider.testing.faults import FaultInjector
from callcov_provider.testing.fields import Submission
from callcov_provider.testing.probe import AudioProbe
from callcov_provider.testing.ratelimit import RateLimiter
from callcov_provider.testing.sniff import audio_format_by_name
from callcov_provider.testing.store import (
    WEBHOOK_NONE,
    WEBHOOK_PENDING,
    AnalysisRecord,
    IdempotencyEntry,
    Store,
)

#: Query parameter names whose values are never logged.
SECRET_PARAM_HINTS = ("key", "token", "sig", "secret", "password", "auth", "credential", "signature")
CLOCK_OFFSET = "clock_offset"
#: Processing time given to seeded analyses that should stay ``processing``.
FAR_FUTURE = 10 * 365 * 24 * 3600.0
#: Distinct recordings that seeded analyses are drawn from.
SEED_RECORDINGS = 257


def redact_query(query: str) -> str:
    """A query string with the values of secret-looking parameters replaced by ``<redacted>``."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    safe = [
        (name, "<redacted>" if any(hint in name.lower() for hint in SECRET_PARAM_HINTS) else value)
        for name, value in pairs
    ]
    return urlencode(safe)


def _fraction(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class RequestLogEntry:
    """One ``/api/v1`` request as the audit log keeps it: never a key, never a secret query value."""

    seq: int
    time: float
    method: str
    path: str
    query: str
    auth_mode: str
    account: str | None
    idempotency_key: str | None
    status: int | None = None
    fault: str | None = None
    duration_ms: float | None = None
    analysis_id: str | None = None
    audio_url: str | None = None
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as the control API returns it."""
        return {
            "seq": self.seq,
            "time": self.time,
            "time_iso": iso(self.time),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "auth_mode": self.auth_mode,
            "account": self.account,
            "idempotency_key": self.idempotency_key,
            "fault": self.fault,
            "duration_ms": self.duration_ms,
            "analysis_id": self.analysis_id,
            "audio_url": self.audio_url,
            "replayed": self.replayed,
            **self.extra,
        }


class EmulatorState:
    """
    Everything the running emulator knows. Thread-safe: the control API and the API share it.

    :param config: The configuration; ``reset`` returns to it. The API keys are turned into digests here
        and not kept.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.keyring = KeyRing(config.api_keys)
        self.initial = config.model_copy(update={"api_keys": []}, deep=True)
        self.store = Store(config.db_path)
        stored = self.store.get_meta(CLOCK_OFFSET)
        self.clock = Clock(None if stored is None else float(stored), base=config.clock_offset_seconds)
        #: Per account, when each of its concurrent-processing slots is next free (emulator time).
        self._slots: dict[str, list[float]] = {}
        self.limiter = RateLimiter()
        self.faults = FaultInjector(config.faults, config.seed)
        self.processing = config.processing.model_copy(deep=True)
        self.rate_limits = config.rate_limits.model_copy(deep=True)
        self.allow_hosts = list(config.allow_hosts)
        self.seed = config.seed
        self.tmpdir = Path(tempfile.mkdtemp(prefix="callcov-emulator-"))
        self._lock = threading.Lock()
        self._log_seq = 0
        self.request_log: deque[RequestLogEntry] = deque(maxlen=config.request_log_limit)
        self.webhook_log: deque[dict[str, Any]] = deque(maxlen=config.request_log_limit)
        self.webhook_sink: deque[dict[str, Any]] = deque(maxlen=config.request_log_limit)
        self.sink_failures: dict[str, int] = {}
        #: Set by the webhook sender while it runs: wakes it from any thread.
        self.webhook_notifier: Callable[[], object] | None = None
        self.store.requeue_unsent_webhooks()

    def close(self) -> None:
        """Close the database and delete temporary files."""
        self.store.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- settings ----------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The current settings (never the keys)."""
        return {
            "accounts": self.keyring.accounts,
            "processing": self.processing.model_dump(),
            "rate_limits": self.rate_limits.model_dump(),
            "faults": self.faults.settings.model_dump(),
            "allow_hosts": list(self.allow_hosts),
            "db_path": self.initial.db_path,
            "seed": self.seed,
            "effective_rate_limits": self.rate_limits.effective(),
            "clock": {"now": self.clock.now(), "offset": self.clock.offset},
            "webhook_attempts": self.initial.webhook_attempts,
            "webhook_retry_seconds": self.initial.webhook_retry_seconds,
        }

    def set_processing(self, settings: ProcessingSettings) -> None:
        """Replace the processing settings; they apply to analyses submitted from now on."""
        self.processing = settings

    def set_rate_limits(self, settings: RateLimitSettings) -> None:
        """Replace the rate limits; counts in the current window are kept."""
        self.rate_limits = settings

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace the fault settings."""
        self.faults.configure(settings)

    def reset(self) -> None:
        """Forget every analysis, key, log entry and count, and return to the initial configuration."""
        self.store.reset()
        self.clock.reset()
        self.limiter.reset()
        with self._lock:
            self._slots.clear()
        self.faults.configure(self.initial.faults, reseed=True)
        self.processing = self.initial.processing.model_copy(deep=True)
        self.rate_limits = self.initial.rate_limits.model_copy(deep=True)
        self.allow_hosts = list(self.initial.allow_hosts)
        with self._lock:
            self.request_log.clear()
            self.webhook_log.clear()
            self.webhook_sink.clear()
            self.sink_failures.clear()

    # -- time ----------------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's time."""
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        """Advance the clock (persisted with a database file) and wake the webhook sender."""
        now = self.clock.advance(seconds)
        self.store.set_meta(CLOCK_OFFSET, repr(self.clock.offset))
        self.wake_webhooks()
        return now

    def set_clock_offset(self, offset: float) -> None:
        """Set the clock's offset from the wall clock (it may move back; persisted with a database)."""
        self.clock.set_offset(offset)
        self.store.set_meta(CLOCK_OFFSET, repr(self.clock.offset))
        self.wake_webhooks()

    def complete_all(self) -> int:
        """End the processing of every analysis now; return how many were still processing."""
        count = self.store.complete_all(self.now())
        with self._lock:
            self._slots.clear()
        self.wake_webhooks()
        return count

    def wake_webhooks(self) -> None:
        """Ask the webhook sender to look for due deliveries now."""
        notify = self.webhook_notifier
        if notify is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                notify()

    # -- request log -----------------------------------------------------------------------------------

    def new_log_entry(
        self,
        method: str,
        path: str,
        query: str,
        auth_mode: str,
        account: str | None,
        idempotency_key: str | None,
    ) -> RequestLogEntry:
        """Start and record a request log entry (its status is filled in when the answer goes out)."""
        with self._lock:
            self._log_seq += 1
            entry = RequestLogEntry(
                seq=self._log_seq,
                time=self.now(),
                method=method,
                path=path,
                query=redact_query(query),
                auth_mode=auth_mode,
                account=account,
                idempotency_key=idempotency_key,
            )
            self.request_log.append(entry)
        return entry

    def log_webhook(self, entry: dict[str, Any]) -> None:
        """Record one webhook delivery attempt."""
        with self._lock:
            self.webhook_log.append(entry)

    # -- analyses --------------------------------------------------------------------------------------

    def analysis_id(self, seq: int) -> str:
        """The id of the ``seq``-th analysis: a UUID derived from the seed, the same on every run."""
        digest = hashlib.sha256(f"callcov-emulator:{self.seed}:{seq}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def processing_seconds(self, analysis_id: str, settings: ProcessingSettings | None = None) -> float:
        """This analysis's processing time: fixed, or spread over the configured range by its id."""
        current = settings or self.processing
        spread = current.max_seconds - current.min_seconds
        return current.min_seconds + spread * _fraction("delay", self.seed, analysis_id)

    def processing_start(self, account: str, created: float) -> float:
        """
        When an analysis of ``account`` created at ``created`` starts processing: at once, or, beyond the
        concurrent-processing limit, when the earliest of the account's slots frees (first come, first
        served). Until then it stays ``processing``.
        """
        limit = self.rate_limits.effective_concurrent_processing()
        if limit is None:
            return created
        with self._lock:
            slots = sorted(self._slots.get(account, []))[-limit:]
            slots = [0.0] * (limit - len(slots)) + slots
            return max(created, slots[0])

    def _take_slot(self, account: str, ready_at: float) -> None:
        """Record that one of ``account``'s slots is busy until ``ready_at`` (the earliest free one)."""
        limit = self.rate_limits.effective_concurrent_processing()
        if limit is None:
            return
        with self._lock:
            slots = sorted(self._slots.get(account, []))[-limit:]
            slots = [0.0] * (limit - len(slots)) + slots
            slots[0] = ready_at
            self._slots[account] = slots

    def fails_by_rate(self, analysis_id: str) -> bool:
        """Whether the configured failure rate fails this analysis (decided by a hash, deterministically)."""
        rate = self.processing.failure_rate
        return rate > 0 and _fraction("fail", self.seed, analysis_id) < rate

    def create_analysis(
        self,
        *,
        account: str,
        submission: Submission,
        audio_format: str,
        audio_size: int,
        audio_sha256: str,
        probe: AudioProbe,
        submit_path: str,
        idempotency_key: str | None,
        fingerprint: str,
        status_code: int,
    ) -> tuple[AnalysisRecord, IdempotencyEntry | None]:
        """
        Store a new analysis, unless ``idempotency_key`` was used before in ``account``.

        :return: ``(record, None)`` for a new analysis; ``(first, entry)`` when the key was used before.
        """
        seq = self.store.next_seq()
        analysis_id = self.analysis_id(seq)
        created = self.now()
        started = self.processing_start(account, created)
        fail_reason = probe.error
        if fail_reason is None and self.fails_by_rate(analysis_id):
            fail_reason = "Analysis failed: the speech recognition engine could not process this recording"
        fmt = audio_format_by_name(audio_format)
        extension = fmt.extension if fmt else f".{audio_format}"
        record = AnalysisRecord(
            id=analysis_id,
            seq=seq,
            account=account,
            created=created,
            ready_at=started + self.processing_seconds(analysis_id),
            started=started if started > created else None,
            fail_reason=fail_reason,
            agent_id=submission.agent_id,
            contact_id=submission.contact_id,
            call_direction=submission.call_direction,
            call_timestamp=submission.call_timestamp,
            custom_metadata=submission.metadata,
            webhook_url=submission.webhook_url,
            webhook_state=WEBHOOK_PENDING if submission.webhook_url else WEBHOOK_NONE,
            audio_format=audio_format,
            audio_size=audio_size,
            audio_sha256=audio_sha256,
            duration_seconds=probe.duration_seconds,
            duration_exact=probe.exact,
            audio_url=f"callcov-emulator://audio/{account}/{analysis_id}{extension}",
            source_url=None if submission.audio_url is None else safe_url(submission.audio_url),
            source="url" if submission.audio_url else "upload",
            submit_path=submit_path,
            idempotency_key=idempotency_key,
        )
        result = self.store.create_with_idempotency(record, idempotency_key, fingerprint, status_code)
        if result[1] is None:
            self._take_slot(account, record.ready_at)
        if result[1] is None and submission.webhook_url:
            self.wake_webhooks()
        return result

    def seed_analyses(
        self,
        *,
        account: str,
        count: int,
        created_from: float,
        created_to: float,
        statuses: Sequence[str],
        agent_ids: Sequence[str],
        contact_ids: Sequence[str] | None = None,
        contact_prefix: str = "customer_",
        audio_format: str = "wav",
    ) -> list[AnalysisRecord]:
        """
        Bulk-create ``count`` analyses for ``account``, spread evenly over ``[created_from, created_to]``,
        cycling through ``statuses`` and ``agent_ids``. Their results are as real as an upload's.
        """
        now = self.now()
        fmt = (
            AUDIO_FORMATS[f".{audio_format}"]
            if f".{audio_format}" in AUDIO_FORMATS
            else AUDIO_FORMATS[".wav"]
        )
        first = self.store.next_seq(count)
        step = (created_to - created_from) / (count - 1) if count > 1 else 0.0
        records = []
        for index in range(count):
            seq = first + index
            analysis_id = self.analysis_id(seq)
            created = created_from + step * index
            status = AnalysisStatus(statuses[index % len(statuses)])
            # Seeded calls reuse a pool of "recordings", as a real call centre's results repeat; it also
            # keeps rendering 10,000 of them cheap (results are cached per recording).
            recording = int(_fraction("recording", self.seed, analysis_id) * SEED_RECORDINGS)
            duration = round(30.0 + 570.0 * _fraction("duration", self.seed, recording), 1)
            if status is AnalysisStatus.PROCESSING:
                ready_at = max(now, created) + FAR_FUTURE
            else:
                ready_at = min(now, created + 30.0 + duration / 10)
            contact = contact_ids[index % len(contact_ids)] if contact_ids else f"{contact_prefix}{seq:06d}"
            records.append(
                AnalysisRecord(
                    id=analysis_id,
                    seq=seq,
                    account=account,
                    created=created,
                    ready_at=max(ready_at, created),
                    fail_reason="Analysis failed: seeded failure"
                    if status is AnalysisStatus.FAILED
                    else None,
                    agent_id=agent_ids[index % len(agent_ids)],
                    contact_id=contact,
                    call_direction="inbound" if index % 3 else "outbound",
                    call_timestamp=iso(created - 60.0),
                    custom_metadata=None,
                    webhook_url=None,
                    webhook_state=WEBHOOK_NONE,
                    audio_format=fmt.name,
                    audio_size=int(duration * 32000) + 44,
                    audio_sha256=hashlib.sha256(f"seed-recording:{recording}".encode()).hexdigest(),
                    duration_seconds=duration,
                    duration_exact=True,
                    audio_url=f"callcov-emulator://audio/{account}/{analysis_id}{fmt.extension}",
                    source_url=None,
                    source="seed",
                    submit_path="/_emulator/seed",
                    idempotency_key=None,
                )
            )
        self.store.insert(records)
        return records
