"""Submit a list of calls to CallCov from one task instance, at the API's quota."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator

from callcov_provider.constants import DEFAULT_CONN_ID
from callcov_provider.exceptions import AuthenticationError, CallCovError, InvalidRequestError, safe_url
from callcov_provider.operators.submission import CALL_FIELDS, call_key, submit_call
from callcov_provider.redaction import redact_url

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context

    from callcov_provider.hooks.callcov import CallCovHook

#: ``task_state_store`` key of the calls accepted so far (Airflow 3.3+): idempotency key -> analysis id.
PROGRESS_STATE_KEY = "callcov_batch_accepted"
#: requests' connection pool keeps 10 connections per host; more threads would open and drop extras.
MAX_IN_FLIGHT_LIMIT = 10
#: The keys a call may have: the operator's own arguments, and an optional ``idempotency_key``.
ACCEPTED_CALL_KEYS = frozenset((*CALL_FIELDS, "idempotency_key"))


def call_outcome(
    call: Mapping[str, Any],
    *,
    analysis_id: str | None = None,
    status: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """
    One entry of the batch operator's return value.

    :return: ``analysis_id`` (``None`` when refused), ``status`` (the analysis's on submission), ``error``
        (``None`` when accepted), ``agent_id``, ``contact_id`` and ``recording`` (the file's name, or the URL
        without its query string).
    """
    audio_file, audio_url = call.get("audio_file"), call.get("audio_url")
    recording = (
        str(audio_file).rsplit("/", 1)[-1] if audio_file else safe_url(str(audio_url)) if audio_url else None
    )
    return {
        "analysis_id": analysis_id,
        "status": status,
        "error": error,
        "agent_id": call.get("agent_id"),
        "contact_id": call.get("contact_id"),
        "recording": recording,
    }


#: The fields of a call that may be signed URLs, with a token in their query string or user info.
URL_FIELDS = ("audio_url", "webhook_url")


def calls_without_url_secrets(calls: Any) -> Any:
    """
    ``calls`` with each call's ``audio_url`` and ``webhook_url`` redacted (query string, fragment and user
    info removed); anything that is not a list of dicts is returned as it is.
    """
    if isinstance(calls, (Mapping, str, bytes)) or not isinstance(calls, Sequence):
        return calls
    return [
        {
            name: redact_url(value) if name in URL_FIELDS and isinstance(value, str) else value
            for name, value in call.items()
        }
        if isinstance(call, Mapping)
        else call
        for call in calls
    ]


def analysis_ids_from(value: Any) -> list[Any]:
    """
    The analysis ids in ``value``, in order: an id, a batch outcome dict (its ``analysis_id``; ``None``
    for a refused call), or any nesting of lists of those, such as the XCom of a batch operator mapped
    over chunks (a list of lists of outcomes). Refused calls give ``None``, which waiters skip.
    """
    if value is None or isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [value.get("analysis_id", value.get("id"))]
    if isinstance(value, bytes) or not hasattr(value, "__iter__"):
        raise InvalidRequestError(
            f"analysis_id must be an id, a sequence of ids or batch outcomes, got {type(value).__name__}",
            field="analysis_id",
        )
    return [found for item in value for found in analysis_ids_from(item)]


@dataclass
class _Progress:
    """The batch's counts, shared by the sending threads (under ``lock``)."""

    total: int
    submitted: int = 0
    refused: int = 0
    failed: int = 0
    resumed: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, str] = field(default_factory=dict)

    def line(self, rate_limited: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        sent = self.submitted - self.resumed
        per_minute = sent / elapsed * 60.0
        left = self.total - self.submitted - self.refused - self.failed
        eta = f"about {left / per_minute:.1f} min left" if per_minute > 0 and left else "none left"
        return (
            f"CallCov batch: {self.submitted}/{self.total} submitted ({self.resumed} from earlier tries), "
            f"{self.refused} refused, {self.failed} not sent; {per_minute:.1f}/min; "
            f"{rate_limited} rate-limited answers; {eta}"
        )


class SubmitAnalysisBatchOperator(BaseOperator):
    """
    Submit many call recordings from one task instance; return one outcome per call, in input order.

    A day of calls needs no Airflow task per call: map this operator over chunks of a few hundred calls
    (``expand(calls=...)``) and Airflow's 1,024-task mapping limit covers hundreds of thousands of calls.
    Up to ``max_in_flight`` submissions are sent at once, paced by the hook's quota pacer: a 429 holds
    every submission of the process back for the wait the API names, and once the API has refused one,
    submissions are spaced at the quota it showed. Put the chunks in one Airflow pool so that they do not
    compete for the same quota.

    Each call's idempotency key is derived from the task instance (DAG, task, run, map index; not the try
    number), the call's ``agent_id`` and ``contact_id``, and its recording (the file's bytes, or the URL
    without query string): a task retry replays the analyses earlier tries created and submits only the
    rest. On Airflow 3.3+ the accepted calls are also kept in the task's ``task_state_store``, so a retry
    does not even re-send them. A call with its own ``idempotency_key`` uses that instead.

    A call refused by a local check or by the API (HTTP 400, 409, 413, 422) is reported in its entry and the
    others go on. The task fails on an authentication error, when no call could be submitted at all, or
    when calls could not be sent for a transient reason (server errors, timeouts, a rate-limit wait past
    the retry deadline) once retries are spent: its retry then sends only those.

    :param calls: The calls: a list of dicts with the keys ``SubmitAnalysisOperator`` takes (``agent_id``,
        ``contact_id``, ``audio_file`` or ``audio_url``, ``call_direction``, ``call_timestamp``,
        ``metadata``, ``webhook_url``, optionally ``idempotency_key``). Templated; may be an XComArg.
    :param max_in_flight: Submissions sent at once (1 to 10).
    :param progress_interval: Seconds between progress lines in the task log.
    :param callcov_conn_id: The CallCov connection id.
    :return: One dict per call, in input order: ``analysis_id`` (``None`` when refused), ``status``,
        ``error`` (``None`` when accepted), ``agent_id``, ``contact_id``, ``recording``.
        ``AnalysisCompletedSensor`` takes this list as its ``analysis_ids``.
    """

    template_fields: Sequence[str] = ("calls", "max_in_flight", "callcov_conn_id")
    template_fields_renderers = {"calls": "json"}
    ui_color = "#bbdefb"

    def __init__(
        self,
        *,
        calls: Any,
        max_in_flight: int = 4,
        progress_interval: float = 10.0,
        callcov_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.calls = calls
        # The rendered calls with their signed URLs intact, when ``calls`` itself shows them redacted.
        self._calls_to_submit: Any = None
        self.max_in_flight = max_in_flight
        self.progress_interval = progress_interval
        self.callcov_conn_id = callcov_conn_id

    @cached_property
    def hook(self) -> CallCovHook:
        """The CallCov hook, built on first use (never at DAG parse time)."""
        from callcov_provider.hooks.callcov import CallCovHook

        return CallCovHook(self.callcov_conn_id)

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """
        Render the templated fields, then show ``calls`` with their signed URLs redacted.

        Airflow stores the rendered fields (and shows them in the UI) right after rendering. A batch holds
        thousands of signed URLs, too many for the secrets masker (it recompiles one pattern of all its
        secrets on every addition: minutes for a day's batch), so ``calls`` itself is replaced by its
        redacted copy and the task submits the rendered original, kept aside. Rendering the redacted copy
        again (an email or a callback that re-renders) changes nothing and keeps the original.
        """
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            rendered = self.calls
            shown = calls_without_url_secrets(rendered)
            if shown != rendered:
                self._calls_to_submit = rendered
                self.calls = shown

    # -- checks ------------------------------------------------------------------------------------------

    def _checked_calls(self) -> list[Any]:
        calls = self.calls if self._calls_to_submit is None else self._calls_to_submit
        if isinstance(calls, (Mapping, str, bytes)) or not isinstance(calls, Sequence):
            raise AirflowFailException(
                f"calls must be a list of dicts (one per call), got {type(calls).__name__}"
            )
        return list(calls)

    def _max_in_flight(self) -> int:
        try:
            value = int(self.max_in_flight)
        except (TypeError, ValueError):
            value = 0
        if not 1 <= value <= MAX_IN_FLIGHT_LIMIT:
            raise AirflowFailException(
                f"max_in_flight must be a whole number from 1 to {MAX_IN_FLIGHT_LIMIT}, "
                f"got {self.max_in_flight!r}"
            )
        return value

    @staticmethod
    def _check_call(index: int, call: Any) -> Mapping[str, Any]:
        """The call's shape, checked locally; the hook checks the values before sending."""
        if not isinstance(call, Mapping):
            raise InvalidRequestError(
                f"call {index} must be a dict, got {type(call).__name__}", field="calls"
            )
        unknown = sorted(str(name) for name in call if name not in ACCEPTED_CALL_KEYS)
        if unknown:
            raise InvalidRequestError(
                f"unknown field {unknown[0]!r} (a call takes {', '.join(sorted(ACCEPTED_CALL_KEYS))})",
                field=unknown[0],
            )
        return call

    # -- execute -----------------------------------------------------------------------------------------

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """Submit every call not accepted by an earlier try; return the outcomes in input order."""
        calls = self._checked_calls()
        in_flight = self._max_in_flight()
        ti = context["ti"]
        scope = (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
        failed_replays_allowed = max(0, int(getattr(ti, "try_number", 1)) - 1)
        store = context.get("task_state_store")
        stored = store.get(PROGRESS_STATE_KEY, None) if store is not None else None
        accepted = {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}
        progress = _Progress(total=len(calls), accepted=accepted)

        outcomes: list[dict[str, Any] | None] = [None] * len(calls)
        pending: list[tuple[int, Mapping[str, Any], str]] = []
        for index, raw in enumerate(calls):
            try:
                call = self._check_call(index, raw)
                key = call_key(scope, call)
            except InvalidRequestError as err:
                outcomes[index] = call_outcome(raw if isinstance(raw, Mapping) else {}, error=str(err))
                progress.refused += 1
                continue
            if key in progress.accepted:
                outcomes[index] = call_outcome(call, analysis_id=progress.accepted[key], status="processing")
                progress.submitted += 1
                progress.resumed += 1
            else:
                pending.append((index, call, key))
        if progress.resumed:
            self.log.info(
                "%d of %d calls were accepted by earlier tries; not sending them again",
                progress.resumed,
                len(calls),
            )

        hook = self.hook
        # Read the connection, build the session and find the pacer once, before the threads share them:
        # connection lookups in a task go through the supervisor and belong to the task's own thread.
        hook.get_conn()
        _ = hook.settings, hook.pacer
        transient: list[str] = []

        def send(index: int, call: Mapping[str, Any], key: str) -> None:
            try:
                analysis = submit_call(hook, call, key, failed_replays_allowed=failed_replays_allowed)
            except InvalidRequestError as err:
                outcome, counted = call_outcome(call, error=str(err)), "refused"
            except AuthenticationError:
                raise
            except CallCovError as err:
                # Not the call's fault: the task fails at the end and its retry sends only these.
                with progress.lock:
                    transient.append(str(err))
                    progress.failed += 1
                return
            else:
                outcome, counted = (
                    call_outcome(call, analysis_id=analysis.id, status=analysis.status.value),
                    "ok",
                )
            with progress.lock:
                outcomes[index] = outcome
                if counted == "ok":
                    progress.accepted[key] = outcome["analysis_id"]
                    progress.submitted += 1
                else:
                    progress.refused += 1

        def checkpoint() -> None:
            self.log.info(progress.line(hook.pacer.stats().rate_limited))
            if store is not None:
                with progress.lock:
                    snapshot: dict[str, Any] = dict(progress.accepted)
                store.set(PROGRESS_STATE_KEY, snapshot)

        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="callcov-batch") as pool:
            futures: set[Future[None]] = {pool.submit(send, *item) for item in pending}
            try:
                while futures:
                    done, futures = wait(futures, timeout=self.progress_interval, return_when=FIRST_EXCEPTION)
                    for future in done:
                        future.result()  # an authentication error ends the batch
                    if futures:
                        checkpoint()
            except AuthenticationError as err:
                for future in futures:
                    future.cancel()
                raise AirflowFailException(f"CallCov refused the credentials: {err}") from err
            finally:
                checkpoint()

        results = [entry for entry in outcomes if entry is not None]
        self._lineage_calls = [
            (call.get("audio_file"), call.get("audio_url"))
            for call, entry in zip(calls, outcomes, strict=True)
            if isinstance(call, Mapping) and entry is not None and entry["analysis_id"]
        ]
        self._lineage_ids = [entry["analysis_id"] for entry in results if entry["analysis_id"]]
        if transient:
            raise AirflowException(
                f"{len(transient)} of {len(calls)} calls could not be sent (first: {transient[0]}); "
                f"{progress.submitted} were accepted and a retry of this task sends only the rest"
            )
        if calls and progress.submitted == 0:
            first = next((entry["error"] for entry in results if entry["error"]), "no reason given")
            raise AirflowFailException(
                f"none of the {len(calls)} calls could be submitted (first refusal: {first})"
            )
        return results

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Lineage for the ``openlineage`` provider: the recordings in, the analyses this try made out."""
        from callcov_provider.lineage import submission_lineage

        return submission_lineage(
            self.hook.settings.base_url,
            getattr(self, "_lineage_calls", []),
            getattr(self, "_lineage_ids", []),
        )
