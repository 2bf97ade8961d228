"""Wait for one or many CallCov analyses to finish: poke, reschedule or deferrable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator, conf

from callcov_provider.constants import DEFAULT_CONN_ID
from callcov_provider.exceptions import AnalysisFailedError, CallCovError, InvalidRequestError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from callcov_provider.hooks.callcov import CallCovHook
    from callcov_provider.tracking import BatchTracker
    from callcov_provider.waiting import Waiter

#: The task state store key under which reschedule mode keeps what its pokes learnt (Airflow 3.3+).
WAIT_STATE_KEY = "callcov_wait"
#: Seconds the completion method may spend reading a finished batch's summaries and failures back.
READ_BACK_SECONDS = 600.0


class AnalysisCompletedSensor(BaseSensorOperator):
    """
    Wait until one analysis, or a whole batch, is ``completed`` or ``failed``.

    ``analysis_id`` is one id or any sequence of ids, such as the XCom of a mapped
    :class:`~callcov_provider.operators.submit.SubmitAnalysisOperator` (a lazy sequence, passed as is), or
    the return value of :class:`~callcov_provider.operators.batch.SubmitAnalysisBatchOperator`, mapped over
    chunks or not (refused calls, which have no analysis, are skipped).
    A batch is polled with a bounded number of list requests per cycle, not one GET per id, in every mode.

    One id returns the finished analysis as a dict. Many ids return a compact list in input order, one
    ``{id, status, agent_id, contact_id, error_message}`` per distinct id, the same at every batch size
    and in every mode (use :class:`~callcov_provider.operators.list_analyses.ListAnalysesOperator` for
    full results).

    Failed analyses raise :class:`~callcov_provider.exceptions.AnalysisFailedError`, whose ``failures``
    holds every failed id and its reason and whose message counts them and names the first few; with
    ``fail_on_failed=False`` they are returned with their status instead.

    Every mode waits with the provider's one :class:`~callcov_provider.waiting.Waiter` (see
    ``docs/waiting.md``): a bounded number of requests per poll cycle, a 429 waited out for as long as the
    API asked, and the wait failing after
    :data:`~callcov_provider.waiting.MAX_CONSECUTIVE_FAILURES` failed cycles in a row. In ``reschedule``
    mode each poke reads a whole sweep and, on Airflow 3.3 and later, keeps what it learnt in the task
    state store for the next poke; older versions start each poke afresh and rotate which ids the
    sweep reads one by one.

    ``timeout`` and ``soft_fail`` behave alike in poke, reschedule and deferrable mode: running out of
    time raises Airflow's sensor timeout, or skips the task under ``soft_fail``. When deferring, the
    deadline travels to the trigger as an absolute time.

    :param analysis_id: One analysis id, a sequence of them, or batch outcomes (templated).
    :param callcov_conn_id: The CallCov connection id.
    :param fail_on_failed: Raise when an analysis failed (default), or return it with its status.
    :param deferrable: Wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("analysis_id", "callcov_conn_id", "fail_on_failed", "deferrable")
    ui_color = "#e8f5e9"

    def __init__(
        self,
        *,
        analysis_id: str | Sequence[str],
        callcov_conn_id: str = DEFAULT_CONN_ID,
        fail_on_failed: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 30.0,
        timeout: float = 6 * 60 * 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.analysis_id = analysis_id
        self.callcov_conn_id = callcov_conn_id
        self.fail_on_failed = fail_on_failed
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> CallCovHook:
        """The CallCov hook, built on first use (never at DAG parse time)."""
        from callcov_provider.hooks.callcov import CallCovHook

        return CallCovHook(self.callcov_conn_id)

    # -- input -------------------------------------------------------------------------------------------

    def _normalise(self) -> None:
        """Coerce the flags, which may have been rendered from templates as text."""
        from callcov_provider.operators.submit import as_bool

        self.fail_on_failed = as_bool(self.fail_on_failed, "fail_on_failed")
        self.deferrable = as_bool(self.deferrable, "deferrable")

    @property
    def _single(self) -> bool:
        return isinstance(self.analysis_id, str)

    def _ids(self) -> list[str]:
        """
        The ids to wait for, from one id, any sequence (a mapped task's lazy XCom included), or the
        outcomes of :class:`~callcov_provider.operators.batch.SubmitAnalysisBatchOperator` (mapped or
        not): refused calls have no analysis and are skipped.
        """
        from callcov_provider.operators.batch import analysis_ids_from

        if isinstance(self.analysis_id, dict) and "analysis_id" not in self.analysis_id:
            raise InvalidRequestError(
                "analysis_id must be an id, a sequence of ids or batch outcomes, got a dict without "
                "'analysis_id'",
                field="analysis_id",
            )
        values = analysis_ids_from(self.analysis_id)
        ids = [str(v).strip() for v in values if v is not None and str(v).strip()]
        if len(ids) < len(values):
            # A mapped submit whose instance failed leaves no id behind; the rest of the batch goes on.
            self.log.warning(
                "%d of %d analysis ids were empty and are skipped", len(values) - len(ids), len(values)
            )
        if not ids and self._single:
            raise InvalidRequestError("analysis_id names no analysis", field="analysis_id")
        return ids

    # -- results -----------------------------------------------------------------------------------------

    def _result(self, results: list[dict[str, Any]], failures: dict[str, str | None]) -> Any:
        self._normalise()
        if failures and self.fail_on_failed:
            raise AnalysisFailedError(failures)
        return results

    def _result_from_tracker(self, tracker: BatchTracker) -> Any:
        self._normalise()
        failures = tracker.failures()
        if failures and self.fail_on_failed:
            raise AnalysisFailedError(failures)
        if self._single:
            return tracker.finished[tracker.order[0]].to_xcom()
        return tracker.summaries()

    # -- poke / reschedule -------------------------------------------------------------------------------

    def _waiter(self, context: Context) -> Waiter:
        """
        The waiter of this poke: in ``poke`` mode the same one from poke to poke (a cycle's request budget
        each); in ``reschedule`` mode a new one per poke, reading a whole sweep, resumed from the task
        state store when Airflow has one (3.3+), else rotating the ids it reads one by one.
        """
        from callcov_provider.tracking import MAX_REQUESTS_PER_CYCLE
        from callcov_provider.waiting import Waiter

        if not self.reschedule:
            waiter: Waiter | None = getattr(self, "_poke_waiter", None)
            if waiter is None:
                waiter = self._poke_waiter = Waiter(self._ids(), budget=MAX_REQUESTS_PER_CYCLE)
            return waiter
        store = context.get("task_state_store")  # type: ignore[call-overload]
        # Without a store, pokes are poke_interval apart: the time tells successive pokes apart.
        rotation = 0 if store is not None else int(time.time() // max(float(self.poke_interval), 1.0))
        waiter = Waiter(self._ids(), budget=None, rotation=rotation)
        if store is not None:
            waiter.restore(store.get(WAIT_STATE_KEY, None))
        return waiter

    def _save(self, context: Context, waiter: Waiter) -> None:
        if not self.reschedule:
            return
        store = context.get("task_state_store")  # type: ignore[call-overload]
        if store is None:
            return
        if waiter.done:
            delete = getattr(store, "delete", None)
            if delete is not None:
                delete(WAIT_STATE_KEY)
            return
        store.set(WAIT_STATE_KEY, waiter.state())

    def poke(self, context: Context) -> Any:
        """
        One poll cycle over the batch; done when every analysis has finished.

        A failed cycle returns ``False`` (the next poke tries again) until the failure rule ends the wait;
        a 429 holds the next requests back for as long as the API asked, without counting as a failure.
        """
        from airflow.providers.common.compat.sdk import PokeReturnValue

        waiter = self._waiter(context)
        try:
            report = waiter.cycle(self.hook)
        except CallCovError:
            waiter.failures_in_row = 0  # the wait ends here; a retry of the task counts afresh
            self._save(context, waiter)
            raise
        self._save(context, waiter)
        waiter.log_cycle(self.log, report)
        if not waiter.done:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._result_from_tracker(waiter.tracker))

    # -- deferrable --------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Poke once; if not done and ``deferrable``, hand the wait to the triggerer."""
        self._normalise()
        ids = self._ids()
        if not ids:
            # Every submission of the batch failed (each failed its own task): nothing is left to wait for.
            self.log.warning("The batch names no analysis to wait for; returning an empty result")
            return []
        if not self.deferrable:
            return super().execute(context)
        end_time = time.time() + self.timeout
        first = self.poke(context)
        if first:
            return first.xcom_value
        from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
        from callcov_provider.waiting import DEFERRAL_TIMEOUT_MARGIN

        self.defer(
            trigger=AnalysisCompletedTrigger(
                analysis_ids=ids,
                callcov_conn_id=self.callcov_conn_id,
                poll_interval=self.poke_interval,
                end_time=end_time,
            ),
            method_name="execute_complete",
            # The ids the trigger waits on, so that the result is built from them, not re-rendered ones.
            kwargs={"analysis_ids": ids},
            timeout=timedelta(seconds=self.timeout + DEFERRAL_TIMEOUT_MARGIN),
        )

    def _read_back(self, ids: list[str]) -> BatchTracker:
        """Read a finished batch's summaries and failures from the API (the event could not carry them)."""
        from callcov_provider.waiting import Waiter

        waiter = Waiter(ids, budget=None)
        waiter.wait(self.hook, poll_interval=1.0, end_time=time.time() + READ_BACK_SECONDS, log=self.log)
        return waiter.tracker

    def execute_complete(
        self, context: Context, event: dict[str, Any], analysis_ids: list[str] | None = None
    ) -> Any:
        """
        Turn the trigger's event into the result, a failure, or Airflow's sensor timeout.

        :param analysis_ids: The ids the trigger waited on (given by :meth:`execute` when deferring); the
            rendered ``analysis_id`` is read only for an event deferred without them.
        """
        self._normalise()
        status = event.get("status")
        if status in ("success", "failed"):
            ids = [str(aid) for aid in analysis_ids] if analysis_ids is not None else self._ids()
            if self._single:
                analysis = self.hook.get_analysis(ids[0])
                failures = {analysis.id: analysis.error_message} if analysis.status.value == "failed" else {}
                self._result([], failures)
                return analysis.to_xcom()
            results = event.get("results")
            if results is None:
                # A large batch's event carries counts and the first failures only: read the rest back.
                return self._result_from_tracker(self._read_back(ids))
            # The summaries name every failure with its reason, however many the event listed.
            failures = {r["id"]: r.get("error_message") for r in results if r.get("status") == "failed"}
            return self._result(list(results), failures)
        if status == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {event.get('message')}")
        raise CallCovError(f"waiting for CallCov analyses failed: {event.get('message')}")
