"""Wait for one or many CallCov analyses to finish: poke, reschedule or deferrable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator, conf

from callcov_provider.exceptions import AnalysisFailedError, CallCovError, InvalidRequestError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from callcov_provider.hooks.callcov import CallCovHook
    from callcov_provider.tracking import BatchTracker

#: Seconds Airflow's own deferral timeout trails the trigger's deadline, so the trigger's event wins.
DEFERRAL_TIMEOUT_MARGIN = 60.0


class AnalysisCompletedSensor(BaseSensorOperator):
    """
    Wait until one analysis, or a whole batch, is ``completed`` or ``failed``.

    ``analysis_id`` is one id or any sequence of ids, such as the XCom of a mapped
    :class:`~callcov_provider.operators.submit.SubmitAnalysisOperator` (a lazy sequence, passed as is), or
    the return value of :class:`~callcov_provider.operators.batch.SubmitAnalysisBatchOperator`, mapped over
    chunks or not (refused calls, which have no analysis, are skipped).
    A batch is polled with a bounded number of list requests per cycle, not one GET per id, in every mode.

    One id returns the finished analysis as a dict. Many ids return a compact list in input order, one
    ``{id, status, agent_id, contact_id, error_message}`` per id (use
    :class:`~callcov_provider.operators.list_analyses.ListAnalysesOperator` for full results).

    Failed analyses raise :class:`~callcov_provider.exceptions.AnalysisFailedError` naming every failed id
    and its reason; with ``fail_on_failed=False`` they are returned with their status instead.

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
        callcov_conn_id: str = "callcov_default",
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
        if self._single:
            analysis_id = results[0]["id"]
            return self.hook.get_analysis(analysis_id).to_xcom()
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

    def poke(self, context: Context) -> Any:
        """
        One poll cycle over the batch; done when every analysis has finished.

        In ``poke`` mode the sensor keeps what it learnt between pokes and spends at most the trigger's
        per-cycle request budget on each; in ``reschedule`` mode nothing survives between pokes, so each
        poke makes a whole sweep.
        """
        from airflow.providers.common.compat.sdk import PokeReturnValue

        from callcov_provider.tracking import BatchTracker, poll_cycle
        from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

        tracker: BatchTracker | None = None if self.reschedule else getattr(self, "_tracker", None)
        if tracker is None:
            tracker = BatchTracker(self._ids())
            self._tracker = tracker
        budget = None if self.reschedule else AnalysisCompletedTrigger.max_requests_per_cycle
        poll_cycle(self.hook, tracker, budget)
        self.log.info("CallCov: %d of %d analyses finished", len(tracker.finished), len(tracker.order))
        if not tracker.done:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._result_from_tracker(tracker))

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

        self.defer(
            trigger=AnalysisCompletedTrigger(
                analysis_ids=ids,
                callcov_conn_id=self.callcov_conn_id,
                poll_interval=self.poke_interval,
                end_time=end_time,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFERRAL_TIMEOUT_MARGIN),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Turn the trigger's event into the result, a failure, or Airflow's sensor timeout."""
        status = event.get("status")
        if status in ("success", "failed"):
            failures = dict(event.get("failures") or {})
            results = event.get("results")
            if results is None:
                # A large batch's event carries only its failures; every other id completed.
                results = [
                    {
                        "id": aid,
                        "status": "failed" if aid in failures else "completed",
                        "agent_id": None,
                        "contact_id": None,
                        "error_message": failures.get(aid),
                    }
                    for aid in self._ids()
                ]
            return self._result(list(results), failures)
        if status == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {event.get('message')}")
        raise CallCovError(f"waiting for CallCov analyses failed: {event.get('message')}")
