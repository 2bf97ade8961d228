"""
One call's submission as both submit operators make it: its key, and the steps past a replay that cannot
stand (an analysis that already failed, or a key the API holds for a different request).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from callcov_provider.exceptions import IdempotencyConflictError
from callcov_provider.hooks import validation
from callcov_provider.idempotency import recording_identity, submission_key, successor_key
from callcov_provider.models import Analysis, AnalysisStatus

if TYPE_CHECKING:
    from callcov_provider.hooks.callcov import CallCovHook

#: The fields of a call, as ``SubmitAnalysisOperator`` takes them (and ``expand_kwargs`` maps them).
CALL_FIELDS = (
    "agent_id",
    "contact_id",
    "audio_file",
    "audio_url",
    "call_direction",
    "call_timestamp",
    "metadata",
    "webhook_url",
)

log = logging.getLogger(__name__)


def call_key(scope: tuple[object, ...], call: Mapping[str, Any]) -> str:
    """
    The idempotency key of ``call`` sent from ``scope`` (DAG, task, run, map index): the call's own
    ``idempotency_key`` when it has one, else derived from the scope, the call's ids and its recording.

    :raises InvalidRequestError: naming ``audio_file`` when it cannot be read.
    """
    if call.get("idempotency_key"):
        return str(call["idempotency_key"])
    audio_file = call.get("audio_file")
    if audio_file is not None:
        # The same check the hook makes before sending, so a missing file is named, not an OSError.
        validation.check_audio_file(audio_file)
    recording = recording_identity(audio_file=audio_file, audio_url=call.get("audio_url"))
    return submission_key(*scope, call.get("agent_id"), call.get("contact_id"), recording=recording)


def _request_digest(call: Mapping[str, Any]) -> str:
    """What else a request carries besides its recording, for a key that must differ when it does."""
    rest = {name: call.get(name) for name in CALL_FIELDS if name not in ("audio_file", "audio_url")}
    return json.dumps(rest, sort_keys=True, default=str)


def submit_call(
    hook: CallCovHook, call: Mapping[str, Any], key: str, *, failed_replays_allowed: int
) -> Analysis:
    """
    Submit ``call`` under ``key``, stepping past what a replay cannot stand:

    - a 409 ``idempotency_conflict`` (the API holds ``key`` for a request with other fields, e.g. edited
      metadata) is resubmitted once under a key derived from ``key`` and the new fields;
    - a replayed analysis that already *failed* is resubmitted under a successor key, at most
      ``failed_replays_allowed`` times (a try can only replay what earlier tries submitted).

    :raises CallCovError: whatever the hook raises for the submission itself.
    """
    fields: dict[str, Any] = {name: call.get(name) for name in CALL_FIELDS}
    try:
        analysis = hook.submit_analysis(**fields, idempotency_key=key)
    except IdempotencyConflictError:
        key = successor_key(key, "request:" + _request_digest(call))
        log.warning("The API holds this call's key for another request; submitting it under a new key")
        analysis = hook.submit_analysis(**fields, idempotency_key=key)
    while analysis.status is AnalysisStatus.FAILED and failed_replays_allowed > 0:
        log.warning(
            "Submission replayed analysis %s, which failed on an earlier try (%s); submitting again",
            analysis.id,
            analysis.error_message or "no reason given",
        )
        key = successor_key(key, analysis.id)
        analysis = hook.submit_analysis(**fields, idempotency_key=key)
        failed_replays_allowed -= 1
    return analysis
