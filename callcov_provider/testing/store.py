"""
Storage of analyses and idempotency keys: SQLite, in memory by default or in a file that survives a restart.

A record keeps what was submitted and when it becomes ready; its status is never stored but computed from
the emulator's clock (:func:`status_of`), so nothing needs a background thread to move analyses along.
No API key is ever stored: only the account label (``acct_1``, ...).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from callcov_provider.models import AnalysisStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    account TEXT NOT NULL,
    created REAL NOT NULL,
    created_s INTEGER NOT NULL,
    ready_at REAL NOT NULL,
    fail_reason TEXT,
    agent_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    call_direction TEXT,
    call_timestamp TEXT,
    custom_metadata TEXT,
    webhook_url TEXT,
    webhook_state TEXT NOT NULL,
    audio_format TEXT NOT NULL,
    audio_size INTEGER NOT NULL,
    audio_sha256 TEXT NOT NULL,
    duration_seconds REAL,
    duration_exact INTEGER NOT NULL,
    audio_url TEXT NOT NULL,
    source_url TEXT,
    source TEXT NOT NULL,
    submit_path TEXT NOT NULL,
    idempotency_key TEXT,
    started REAL
);
CREATE INDEX IF NOT EXISTS analyses_by_account ON analyses (account, created_s DESC, seq DESC);
CREATE INDEX IF NOT EXISTS analyses_by_webhook ON analyses (webhook_state, ready_at);
CREATE TABLE IF NOT EXISTS idempotency (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    analysis_id TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: Webhook delivery states of a record.
WEBHOOK_NONE = "none"
WEBHOOK_PENDING = "pending"
WEBHOOK_SENDING = "sending"
WEBHOOK_DELIVERED = "delivered"
WEBHOOK_FAILED = "failed"
WEBHOOK_SKIPPED = "skipped"


@dataclass
class AnalysisRecord:
    """
    One stored analysis. Times are epoch seconds of the emulator's clock.

    :param ready_at: When processing ends; the status is ``processing`` before, then ``completed`` or,
        with a ``fail_reason``, ``failed``.
    :param audio_url: The URL shown as ``audio.url`` (the emulator's own storage name for the audio).
    :param source_url: For ``audio_url`` submissions, the source URL with its query string redacted.
    :param started: When processing started, if later than ``created`` (the analysis waited for a
        concurrent-processing slot); ``None`` means at creation.
    """

    id: str
    seq: int
    account: str
    created: float
    ready_at: float
    fail_reason: str | None
    agent_id: str
    contact_id: str
    call_direction: str | None
    call_timestamp: str | None
    custom_metadata: dict[str, Any] | None
    webhook_url: str | None
    webhook_state: str
    audio_format: str
    audio_size: int
    audio_sha256: str
    duration_seconds: float | None
    duration_exact: bool
    audio_url: str
    source_url: str | None
    source: str
    submit_path: str
    idempotency_key: str | None
    started: float | None = None

    def status(self, now: float) -> AnalysisStatus:
        """The status at time ``now``."""
        return status_of(self.ready_at, self.fail_reason, now)

    def processing_seconds(self) -> float:
        """How long processing took (or will take): from its start, not from submission."""
        start = self.created if self.started is None else min(self.started, self.ready_at)
        return max(0.0, self.ready_at - start)

    def to_row(self) -> dict[str, Any]:
        """The record as a row of the ``analyses`` table."""
        row = dict(vars(self))  # shallow: dataclasses.asdict's deep copy is slow for bulk inserts
        row["created_s"] = int(self.created)
        row["custom_metadata"] = None if self.custom_metadata is None else json.dumps(self.custom_metadata)
        row["duration_exact"] = int(self.duration_exact)
        return row


_COLUMNS = [f.name for f in fields(AnalysisRecord)]


def _insert_sql(names: Sequence[str]) -> str:
    # Column names come from the AnalysisRecord dataclass, never from a request.
    return f"INSERT INTO analyses ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"  # noqa: S608


def status_of(ready_at: float, fail_reason: str | None, now: float) -> AnalysisStatus:
    """The status of an analysis that becomes ready at ``ready_at``, at time ``now``."""
    if now < ready_at:
        return AnalysisStatus.PROCESSING
    return AnalysisStatus.FAILED if fail_reason else AnalysisStatus.COMPLETED


def _record(row: sqlite3.Row) -> AnalysisRecord:
    values = {name: row[name] for name in _COLUMNS}
    values["custom_metadata"] = None if row["custom_metadata"] is None else json.loads(row["custom_metadata"])
    values["duration_exact"] = bool(row["duration_exact"])
    return AnalysisRecord(**values)


@dataclass(frozen=True)
class IdempotencyEntry:
    """A remembered ``Idempotency-Key``: the request it came with, and what it answered."""

    fingerprint: str
    analysis_id: str
    status_code: int


class Store:
    """
    Thread-safe SQLite storage.

    :param path: A database file, or ``None`` for an in-memory database.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(analyses)")}
        if "started" not in columns:  # a database file written before the column existed
            self._db.execute("ALTER TABLE analyses ADD COLUMN started REAL")
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM analyses").fetchone()
        floor = self.get_meta("seq_floor")
        # Insertion numbers (and the ids derived from them) are never reused, not even after a reset.
        self._seq = max(int(row[0]), int(floor or 0))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- sequence and meta ---------------------------------------------------------------------------

    def next_seq(self, count: int = 1) -> int:
        """Reserve ``count`` insertion numbers and return the first."""
        with self._lock:
            first = self._seq + 1
            self._seq += count
            return first

    def get_meta(self, name: str) -> str | None:
        """A persisted setting (the clock offset, for one)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        """Persist a setting."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    # -- analyses ----------------------------------------------------------------------------------------

    def insert(self, records: Iterable[AnalysisRecord]) -> int:
        """Insert records in one transaction; return how many."""
        rows = [record.to_row() for record in records]
        if not rows:
            return 0
        names = list(rows[0])
        sql = _insert_sql(names)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(rows)

    def get(self, analysis_id: str, account: str | None = None) -> AnalysisRecord | None:
        """One analysis by id; with ``account``, only if it belongs to that account."""
        sql = "SELECT * FROM analyses WHERE id = ?"
        args: list[Any] = [analysis_id]
        if account is not None:
            sql += " AND account = ?"
            args.append(account)
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else _record(row)

    def query(
        self,
        *,
        account: str | None,
        now: float,
        status: AnalysisStatus | None = None,
        agent_id: str | None = None,
        contact_id: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[AnalysisRecord], int]:
        """
        Analyses matching the filters, newest first (``created`` seconds, then insertion order), and the
        total number that match.
        """
        where: list[str] = []
        args: list[Any] = []
        if account is not None:
            where.append("account = ?")
            args.append(account)
        if status is AnalysisStatus.PROCESSING:
            where.append("ready_at > ?")
            args.append(now)
        elif status is AnalysisStatus.COMPLETED:
            where.append("ready_at <= ? AND fail_reason IS NULL")
            args.append(now)
        elif status is AnalysisStatus.FAILED:
            where.append("ready_at <= ? AND fail_reason IS NOT NULL")
            args.append(now)
        if agent_id is not None:
            where.append("agent_id = ?")
            args.append(agent_id)
        if contact_id is not None:
            where.append("contact_id = ?")
            args.append(contact_id)
        if search:
            where.append("(instr(lower(agent_id), ?) > 0 OR instr(lower(contact_id), ?) > 0)")
            args.extend([search.lower(), search.lower()])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        page = "" if limit is None else " LIMIT ? OFFSET ?"
        page_args = [] if limit is None else [limit, offset]
        with self._lock:
            # The clauses are fixed text; every value is a bound parameter.
            count_sql = f"SELECT COUNT(*) FROM analyses{clause}"  # noqa: S608
            select_sql = f"SELECT * FROM analyses{clause} ORDER BY created_s DESC, seq DESC{page}"  # noqa: S608
            total = int(self._db.execute(count_sql, args).fetchone()[0])
            rows = self._db.execute(select_sql, [*args, *page_args]).fetchall()
        return [_record(row) for row in rows], total

    def complete_all(self, now: float) -> int:
        """End processing of every analysis still processing at ``now``; return how many."""
        with self._lock:
            cursor = self._db.execute("UPDATE analyses SET ready_at = ? WHERE ready_at > ?", (now, now))
        return int(cursor.rowcount)

    # -- webhooks ----------------------------------------------------------------------------------------

    def claim_due_webhooks(self, now: float, limit: int = 100) -> list[AnalysisRecord]:
        """Records whose webhook is pending and whose processing has ended; marked ``sending``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM analyses WHERE webhook_state = ? AND ready_at <= ? "
                "ORDER BY ready_at, seq LIMIT ?",
                (WEBHOOK_PENDING, now, limit),
            ).fetchall()
            ids = [row["id"] for row in rows]
            self._db.executemany(
                "UPDATE analyses SET webhook_state = ? WHERE id = ?", [(WEBHOOK_SENDING, i) for i in ids]
            )
        return [_record(row) for row in rows]

    def set_webhook_state(self, analysis_id: str, state: str) -> None:
        """Record the outcome of a webhook delivery."""
        with self._lock:
            self._db.execute("UPDATE analyses SET webhook_state = ? WHERE id = ?", (state, analysis_id))

    def requeue_unsent_webhooks(self) -> None:
        """After a restart, deliveries that were in flight are pending again."""
        with self._lock:
            self._db.execute(
                "UPDATE analyses SET webhook_state = ? WHERE webhook_state = ?",
                (WEBHOOK_PENDING, WEBHOOK_SENDING),
            )

    # -- idempotency -------------------------------------------------------------------------------------

    def get_idempotency(self, account: str, key: str) -> IdempotencyEntry | None:
        """The remembered request for ``key`` in ``account``."""
        with self._lock:
            row = self._db.execute(
                "SELECT fingerprint, analysis_id, status_code FROM idempotency WHERE account = ? AND key = ?",
                (account, key),
            ).fetchone()
        return None if row is None else IdempotencyEntry(row[0], row[1], int(row[2]))

    def create_with_idempotency(
        self, record: AnalysisRecord, key: str | None, fingerprint: str, status_code: int
    ) -> tuple[AnalysisRecord, IdempotencyEntry | None]:
        """
        Insert ``record`` unless ``key`` was already used in its account.

        :return: ``(record, None)`` when inserted; ``(first_record, entry)`` when the key was used before
            (the caller compares ``entry.fingerprint`` with its own).
        """
        with self._lock:
            if key is not None:
                entry = self.get_idempotency(record.account, key)
                if entry is not None:
                    first = self.get(entry.analysis_id)
                    if first is not None:
                        return first, entry
            self._db.execute("BEGIN")
            try:
                row = record.to_row()
                names = list(row)
                self._db.execute(_insert_sql(names), row)
                if key is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                        (record.account, key, fingerprint, record.id, status_code),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return record, None

    # -- housekeeping ------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many analyses and idempotency keys are stored."""
        with self._lock:
            analyses = int(self._db.execute("SELECT COUNT(*) FROM analyses").fetchone()[0])
            keys = int(self._db.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0])
        return {"analyses": analyses, "idempotency_keys": keys}

    def reset(self) -> None:
        """Delete every analysis, idempotency key and persisted setting (insertion numbers keep counting)."""
        with self._lock:
            self._db.executescript("DELETE FROM analyses; DELETE FROM idempotency; DELETE FROM meta;")
            self.set_meta("seq_floor", str(self._seq))

    def ids(self, account: str | None = None) -> Sequence[str]:
        """Every analysis id (of one account), newest first."""
        records, _ = self.query(account=account, now=0.0)
        return [record.id for record in records]
