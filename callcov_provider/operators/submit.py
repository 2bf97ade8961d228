"""Submit one call recording to CallCov, and optionally wait for its analysis."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, ResumableJobMixin, conf

from callcov_provider.constants import DEFAULT_CONN_ID
from callcov_provider.exceptions import (
    AnalysisFailedError,
    CallCovError,
    DeadlineExceededError,
    InvalidRequestError,
    url_secrets,
)
from callcov_provider.flags import parse_argument_flag
from callcov_provider.links import ANALYSIS_URL_XCOM_KEY, CallCovAnalysisLink, dashboard_url
from callcov_provider.models import Analysis, AnalysisStatus
from callcov_provider.operators.submission import CALL_FIELDS, call_key, submit_call

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context

    from callcov_provider.hooks.callcov import CallCovHook

#: XCom key of the finished analysis, pushed when the operator waits for it.
ANALYSIS_XCOM_KEY = "analysis"


def as_bool(value: Any, field: str) -> bool:
    """
    A flag that may arrive as rendered template text (``"True"``, ``"off"``, ``"1"``); empty is false.

    The provider's one flag reading: :func:`callcov_provider.flags.parse_argument_flag`.
    """
    return parse_argument_flag(value, field, default=False)


def as_seconds(value: Any, field: str) -> float:
    """A positive number of seconds that may arrive as rendered template text (``"30"``)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"{field} must be a number of seconds, got {value!r}", field=field
            ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidRequestError(f"{field} must be a positive number of seconds, got {value!r}", field=field)
    return seconds


def mask_url_secrets(url: Any) -> None:
    """
    Register the credential parts of ``url`` (see :func:`~callcov_provider.exceptions.url_secrets`) with
    Airflow's secrets masker, so that rendered fields and logs show ``***`` in their place.
    """
    if not isinstance(url, str) or not url:
        return
    from airflow.providers.common.compat.sdk import mask_secret

    for part in url_secrets(url):
        mask_secret(part)


class SubmitAnalysisOperator(ResumableJobMixin, BaseOperator):  # type: ignore[misc]
    """
    Submit a call recording for analysis; return the analysis id.

    Give exactly one of ``audio_file`` (a local path, streamed from disk) or ``audio_url``. Every argument
    is templated and checked before anything is sent. Nothing touches a connection or the network until
    the task runs.

    The submission's idempotency key defaults to one derived from the DAG id, task id, run id and map
    index (not the try number) and the recording: the file's bytes, or the URL without its query string
    and fragment. A task retry or a clear that sends the same recording (a re-signed URL included) gets
    the analysis the first try created instead of a second one; a recording that was replaced gets a new
    analysis. If the replay is an analysis that already *failed*, it is submitted once more under a key
    derived from the old one; a 409 ``idempotency_conflict`` (same recording, other fields) is submitted
    under a key derived from the new fields. Pass ``idempotency_key`` to choose the key yourself, e.g.
    ``"{{ run_id }}-{{ ti.try_number }}"`` to force a fresh analysis on every try.

    With ``wait_for_completion`` the task waits for the analysis and pushes it, finished, under the XCom
    key ``analysis``; a ``failed`` analysis fails the task with the server's reason. Waiting happens in the
    worker, or in the triggerer when ``deferrable``. On Airflow 3.3 and later the worker wait is durable
    (``ResumableJobMixin``): a worker that dies mid-wait reconnects to the same analysis on retry.

    .. seealso::
        :meth:`callcov_provider.hooks.callcov.CallCovHook.submit_analysis` for the argument checks.

    :param agent_id: The agent's id.
    :param contact_id: The customer's id.
    :param audio_file: Path of a local WAV, MP3, M4A, FLAC or OGG recording.
    :param audio_url: URL the API downloads the recording from.
    :param call_direction: ``inbound`` or ``outbound``.
    :param call_timestamp: When the call happened (ISO 8601 or a datetime).
    :param metadata: JSON-serialisable mapping stored with the analysis.
    :param webhook_url: URL to notify when the analysis finishes.
    :param idempotency_key: Overrides the derived idempotency key.
    :param wait_for_completion: Wait until the analysis finishes.
    :param deferrable: Wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: Seconds between status checks while waiting.
    :param timeout: Seconds to wait before failing with :class:`DeadlineExceededError`.
    :param callcov_conn_id: The CallCov connection id.
    """

    template_fields: Sequence[str] = (
        *CALL_FIELDS,
        "idempotency_key",
        "wait_for_completion",
        "deferrable",
        "poll_interval",
        "timeout",
        "callcov_conn_id",
    )
    template_fields_renderers = {"metadata": "json"}
    operator_extra_links = (CallCovAnalysisLink(),)
    ui_color = "#e3f2fd"
    external_id_key = "callcov_analysis_id"

    def __init__(
        self,
        *,
        agent_id: str,
        contact_id: str,
        audio_file: str | None = None,
        audio_url: str | None = None,
        call_direction: str | None = None,
        call_timestamp: Any = None,
        metadata: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float = 3 * 60 * 60,
        callcov_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.agent_id = agent_id
        self.contact_id = contact_id
        self.audio_file = audio_file
        self.audio_url = audio_url
        self.call_direction = call_direction
        self.call_timestamp = call_timestamp
        self.metadata = metadata
        self.webhook_url = webhook_url
        self.idempotency_key = idempotency_key
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
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
        Render the templated fields, then mask the credentials of a signed ``audio_url`` / ``webhook_url``.

        Airflow stores the rendered fields (and shows them in the UI) right after rendering, and the task
        log shows what the task prints: masking the URL's query string, fragment and user info here, with
        the secrets masker, keeps a signed URL's token out of the metadata database and the logs. Both the
        plain and the mapped (``partial``/``expand``) paths render through this method.
        """
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            mask_url_secrets(self.audio_url)
            mask_url_secrets(self.webhook_url)

    # -- submitting --------------------------------------------------------------------------------------

    def _call(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CALL_FIELDS}

    def _base_key(self, context: Context) -> str:
        if self.idempotency_key:
            return str(self.idempotency_key)
        ti = context["ti"]
        return call_key((ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1)), self._call())

    def _normalise(self) -> None:
        """Coerce the waiting arguments, which may have been rendered from templates as text."""
        self.wait_for_completion = as_bool(self.wait_for_completion, "wait_for_completion")
        self.deferrable = as_bool(self.deferrable, "deferrable")
        self.poll_interval = as_seconds(self.poll_interval, "poll_interval")
        self.timeout = as_seconds(self.timeout, "timeout")

    def submit(self, context: Context) -> Analysis:
        """
        Submit under the idempotency key; step past replays of analyses that failed on earlier tries.

        A try can only replay submissions of earlier tries, so at most ``try_number - 1`` steps are taken:
        a failure on the first try is the analysis's own and is reported as such (the task fails with the
        server's reason), as is a resubmission that comes back failed again.
        """
        try:
            key = self._base_key(context)
            hops_allowed = max(0, int(getattr(context["ti"], "try_number", 1)) - 1)
            analysis = submit_call(self.hook, self._call(), key, failed_replays_allowed=hops_allowed)
        except InvalidRequestError as err:
            # The same request would be refused again: fail now instead of spending the task's retries.
            raise AirflowFailException(f"CallCov refused the submission: {err}") from err
        context["ti"].xcom_push(
            key=ANALYSIS_URL_XCOM_KEY, value=dashboard_url(self.hook.settings.dashboard_url, analysis.id)
        )
        if analysis.status is AnalysisStatus.FAILED:
            # Not a replay this try may step past: the analysis is this task's own, and it failed.
            raise AnalysisFailedError({analysis.id: analysis.error_message})
        self.log.info("CallCov analysis %s submitted (status %s)", analysis.id, analysis.status.value)
        self._lineage_analysis_id = analysis.id
        return analysis

    # -- execute -----------------------------------------------------------------------------------------

    def execute(self, context: Context) -> str:
        """Submit, then return the id, wait in the worker (durably), or defer to the triggerer."""
        self._normalise()
        if self.wait_for_completion and not self.deferrable:
            return str(self.execute_resumable(context))
        analysis = self.submit(context)
        if not self.wait_for_completion:
            return analysis.id
        # Check once before deferring: an analysis that is already finished needs no triggerer.
        if not analysis.is_finished:
            analysis = self.hook.get_analysis(analysis.id)
        if analysis.is_finished:
            return self._finish(context, analysis)
        from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
        from callcov_provider.waiting import DEFERRAL_TIMEOUT_MARGIN

        self.defer(
            trigger=AnalysisCompletedTrigger(
                analysis_ids=[analysis.id],
                callcov_conn_id=self.callcov_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFERRAL_TIMEOUT_MARGIN),
        )
        raise AssertionError("defer() returned")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Finish after the trigger's event: push the analysis, or fail with the reason."""
        self._normalise()
        status = event.get("status")
        results = event.get("results") or [{}]
        analysis_id = str(results[0].get("id", ""))
        self._lineage_analysis_id = analysis_id
        if status == "success":
            return self._finish(context, self.hook.get_analysis(analysis_id))
        if status == "failed":
            raise AnalysisFailedError(event.get("failures") or {analysis_id: None})
        if status == "timeout":
            raise DeadlineExceededError(f"analysis {analysis_id} did not finish within {self.timeout}s")
        raise CallCovError(f"waiting for analysis {analysis_id} failed: {event.get('message')}")

    def _finish(self, context: Context, analysis: Analysis) -> str:
        if analysis.status is AnalysisStatus.FAILED:
            raise AnalysisFailedError({analysis.id: analysis.error_message})
        context["ti"].xcom_push(key=ANALYSIS_XCOM_KEY, value=analysis.to_xcom())
        return analysis.id

    # -- ResumableJobMixin: the durable wait in the worker -------------------------------------------------

    def submit_job(self, context: Context) -> str:
        """Submit the analysis and return its id (stored by the mixin for a later try to reconnect to)."""
        return self.submit(context).id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """The stored analysis's current status."""
        analysis = self.hook.get_analysis(str(external_id))
        self._lineage_analysis_id = analysis.id
        # A reconnecting try still owes the link to the analysis it waits for.
        context["ti"].xcom_push(
            key=ANALYSIS_URL_XCOM_KEY, value=dashboard_url(self.hook.settings.dashboard_url, analysis.id)
        )
        return analysis.status.value

    def is_job_active(self, status: str) -> bool:
        """Whether the analysis is still processing."""
        return status == AnalysisStatus.PROCESSING.value

    def is_job_succeeded(self, status: str) -> bool:
        """Whether the analysis completed."""
        return status == AnalysisStatus.COMPLETED.value

    def poll_until_complete(self, external_id: Any, context: Context) -> str:  # type: ignore[override]
        """
        Poll in the worker until the analysis finishes; push it and return its id.

        The wait is the provider's one :class:`~callcov_provider.waiting.Waiter`, as in the trigger and
        the sensor: a 429 is waited out as long as the API asked, and only the failure rule, the
        deadline, an authentication error or an unknown id end it.
        """
        from callcov_provider.waiting import Waiter

        analysis_id = str(external_id)
        waiter = Waiter([analysis_id], clock=time.time)
        finished = waiter.wait(
            self.hook,
            poll_interval=self.poll_interval,
            end_time=time.time() + self.timeout,
            sleep=time.sleep,
            log=self.log,
        )
        if not finished:
            raise DeadlineExceededError(f"analysis {analysis_id} did not finish within {self.timeout}s")
        self._finished_id = self._finish(context, waiter.tracker.finished[analysis_id])
        return self._finished_id

    def get_job_result(self, external_id: Any, context: Context) -> str:
        """Push the finished analysis (unless the wait just did) and return its id."""
        if getattr(self, "_finished_id", None) == str(external_id):
            return str(external_id)
        return self._finish(context, self.hook.get_analysis(str(external_id)))

    # -- OpenLineage ---------------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Lineage for the ``openlineage`` provider: the recording in, the analysis this try made out."""
        from callcov_provider.lineage import submission_lineage

        analysis_id = getattr(self, "_lineage_analysis_id", None)
        return submission_lineage(
            self.hook.settings.base_url,
            [(self.audio_file, self.audio_url)],
            [analysis_id] if analysis_id else [],
        )
