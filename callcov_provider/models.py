"""
The CallCov API contract in code: pydantic models of what the API returns, and its documented limits.

Both the hook and the emulator import this module, so the contract is written once. The source is the
API documentation as ``docs/api-contract.md`` reads it: the older generation (``/calls/analyze``), the
current generation (``/analysis/``) and the listing reference. Where they disagree, the project's rules
apply; each decision is noted where it is made.

How strict each field is follows how precise the documentation is:

* Fields the pages show with a value (``id``, ``created``, ``customer_effort_score``, ...) keep that
  type, read as a number where a number is shown (``2.5`` and ``1`` are both an effort score).
* Sections the pages show only as ``{...}`` or ``[...]`` are modelled as far as their code samples read
  them (``greeting.present``, ``identity_verification.flagged``); a section of another shape is kept as
  the raw JSON the API sent rather than refused.
* A status other than the three documented ones is "not finished" (:meth:`AnalysisStatus.parse`).
* One analysis of a listing that still cannot be read is skipped with a warning naming its id
  (:class:`AnalysisList`): it never costs the other 999 of a page.

Every model keeps fields it does not know (``extra="allow"``): the API will grow, and a new field must
not break a running pipeline. Sections that are ``null`` while an analysis is processing parse as ``None``.

URLs the API returns (``audio.url`` may be a presigned object-storage URL) are :class:`ApiUrl` values:
shown, logged and serialised without their query string, fragment and user info; every string in
:meth:`Analysis.to_xcom` has the query of any URL in it redacted too (an error message may echo one).
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from callcov_provider.api_url import ApiUrl
from callcov_provider.redaction import redact_urls

log = logging.getLogger(__name__)

LIST_LIMIT_MIN = 1
LIST_LIMIT_MAX = 1000
LIST_LIMIT_DEFAULT = 100


class AnalysisStatus(str, enum.Enum):
    """
    The three documented statuses of an analysis (the current generation, "Status Values").

    ``AnalysisStatus(text)`` accepts only those three (a ``status_filter`` must be one of them). A status
    the API returns goes through :meth:`parse`, which also accepts any other text ("queued", say) as a
    status that is not finished, so a new server-side state never fails a running pipeline.
    """

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @classmethod
    def parse(cls, value: Any) -> AnalysisStatus:
        """
        Read a status the API returned: one of the documented three, or an undocumented one.

        An undocumented status is logged once per value (as a warning) and is not terminal.

        :raises ValueError: for a value that is not a non-empty string.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValueError(f"status must be a string, got {type(value).__name__}")
        try:
            return cls(value)
        except ValueError:
            pass
        if not _STATUS_WORD.fullmatch(value):
            # Not a status at all (free text may echo anything, a credential included): never shown.
            raise ValueError("status is neither a documented status nor a single word") from None
        return _undocumented_status(value)

    @property
    def is_documented(self) -> bool:
        """Whether this is one of the three documented statuses."""
        return self.value in _DOCUMENTED_STATUSES

    @property
    def is_terminal(self) -> bool:
        """Whether the analysis has finished, successfully or not (an undocumented status has not)."""
        return self is AnalysisStatus.COMPLETED or self is AnalysisStatus.FAILED

    def __reduce_ex__(self, protocol: Any) -> tuple[Callable[[Any], AnalysisStatus], tuple[str]]:
        # Through parse, so that an undocumented status survives pickling too.
        return AnalysisStatus.parse, (self.value,)


_DOCUMENTED_STATUSES = frozenset(s.value for s in AnalysisStatus)
#: What an undocumented status may look like: a word such as ``queued`` or ``in-review``.
_STATUS_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_UNDOCUMENTED: dict[str, AnalysisStatus] = {}
_UNDOCUMENTED_LOCK = threading.Lock()


def _undocumented_status(value: str) -> AnalysisStatus:
    """The one pseudo-member of :class:`AnalysisStatus` for ``value``, logged when first seen."""
    with _UNDOCUMENTED_LOCK:
        member = _UNDOCUMENTED.get(value)
        if member is None:
            member = str.__new__(AnalysisStatus, value)
            member._value_ = value
            member._name_ = value.upper()
            _UNDOCUMENTED[value] = member
            log.warning(
                "The CallCov API returned the undocumented analysis status %r; it is treated as not "
                "finished (documented: processing, completed, failed)",
                value,
            )
    return member


#: An analysis status as the API returns it: see :meth:`AnalysisStatus.parse`.
ApiStatus = Annotated[AnalysisStatus, BeforeValidator(AnalysisStatus.parse)]


class CallDirection(str, enum.Enum):
    """The documented values of ``call_direction`` (the older generation)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


#: A URL in JSON text whose query string or user info is not redacted yet.
_UNREDACTED_URL = re.compile(r"""://[^\s"'<>]*(?:\?(?!<redacted>)|@)""")


def _redacted_dump(model: BaseModel) -> dict[str, Any]:
    """``model``'s JSON-safe dump with every URL redacted; walked only when some URL needs it."""
    dumped: dict[str, Any] = model.model_dump(mode="json")
    if _UNREDACTED_URL.search(model.model_dump_json()):
        dumped = _redact_json(dumped)
    return dumped


def _redact_json(value: Any) -> Any:
    """Redact the query of every URL in every string of a JSON-safe value (dicts and lists walked)."""
    if isinstance(value, str):
        return redact_urls(value) if "://" in value else value
    if isinstance(value, dict):
        return {key: _redact_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    return value


class _OpenModel(BaseModel):
    """A model that keeps unknown fields and accepts field names and aliases alike."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Unknown fields are plain JSON: a signed URL among them must not reach a log through a repr.
        for name, value in super().__repr_args__():
            yield name, _redact_json(value)


def _section() -> Any:
    """
    A section the pages show only as ``{...}``: read as its model when it fits, otherwise kept as the raw
    JSON object the API sent (never a reason to refuse the analysis).
    """
    return Field(default=None, union_mode="left_to_right")


class CallInfo(_OpenModel):
    """The ``call`` section: who was on the call and how long it lasted."""

    agent_id: str | None = None
    contact_id: str | None = None
    call_direction: str | None = None
    call_timestamp: str | None = None
    duration_ms: int | None = None
    duration_seconds: float | None = None


class AudioInfo(_OpenModel):
    """
    The ``audio`` section. The current generation says ``file_size``, the listing reference ``size_bytes``;
    both are kept.

    ``url`` is where the API stores the recording, possibly a presigned URL: an :class:`ApiUrl`.
    """

    url: ApiUrl | None = None
    format: str | None = None
    duration_seconds: float | None = None
    file_size: int | None = None
    size_bytes: int | None = None


class TranscriptSegment(_OpenModel):
    """One utterance of the transcript (the pages show ``segments`` only as ``[...]``)."""

    #: A label ("agent") or a channel number (0): the pages do not say which.
    speaker: str | int | None = None
    start: float | None = None
    end: float | None = None
    text: str | None = None


class Transcript(_OpenModel):
    """The ``transcript`` section; ``None`` while processing."""

    text: str | None = None
    #: Each segment read as a :class:`TranscriptSegment` when it fits, otherwise kept as sent.
    segments: list[Annotated[TranscriptSegment | Any, Field(union_mode="left_to_right")]] = Field(
        default_factory=list
    )
    language: str | None = None


class ComplianceCheck(_OpenModel):
    """One compliance check: the listing reference reads ``flagged``; ``passed`` is its complement."""

    passed: bool | None = None
    flagged: bool | None = None
    #: Text or an object: the pages show the check only as ``{...}``.
    details: Any = None


class ComplianceResults(_OpenModel):
    """The three documented compliance checks (each a :class:`ComplianceCheck`, or the raw object)."""

    identity_verification: ComplianceCheck | dict[str, Any] | None = _section()
    mandatory_disclosures: ComplianceCheck | dict[str, Any] | None = _section()
    purpose_declaration: ComplianceCheck | dict[str, Any] | None = _section()


class SentimentAnalysis(_OpenModel):
    """Overall sentiment of the call; the label is one of positive, neutral or negative."""

    overall: str | None = None
    score: float | None = None


class GreetingCheck(_OpenModel):
    """Whether the agent greeted the customer (the listing reference reads ``greeting.present``)."""

    present: bool | None = None


class EmpatheticLanguage(_OpenModel):
    """How much empathetic language the agent used."""

    score: float | None = None
    #: Quotes, or an object of them: the pages show the section only as ``{...}``.
    examples: Any = Field(default_factory=list)


class QualityResults(_OpenModel):
    """The ``quality`` results (each section a model, or the raw object when it does not fit)."""

    sentiment_analysis: SentimentAnalysis | dict[str, Any] | None = _section()
    greeting: GreetingCheck | dict[str, Any] | None = _section()
    empathetic_language: EmpatheticLanguage | dict[str, Any] | None = _section()


class CoachingResults(_OpenModel):
    """Coaching advice and the customer effort score (the listing reference shows ``1``, out of 5)."""

    #: The pages show ``[...]``: any JSON list.
    recommendations: list[Any] = Field(default_factory=list)
    #: A number: ``1`` on the page, and nothing says a score cannot be ``2.5``; an int stays an int.
    customer_effort_score: int | float | None = None


class AnalysisResults(_OpenModel):
    """The ``results`` section; ``None`` while processing."""

    compliance: ComplianceResults | None = None
    quality: QualityResults | None = None
    coaching: CoachingResults | None = None


class AnalysisMetadata(_OpenModel):
    """The ``metadata`` section, where a failed analysis carries its ``error_message``."""

    webhook_url: ApiUrl | None = None
    completed_at: str | None = None
    processing_time_ms: int | None = None
    error_message: str | None = None
    version: str | None = None


class LegacySummary(_OpenModel):
    """The older generation's ``analysis`` object of the ``/calls/analyze/{id}`` status response."""

    sentiment: Any = None
    summary: Any = None


class Analysis(_OpenModel):
    """
    One analysis, in either API generation's shape.

    The current generation returns ``id``; the older generation's submit response returns ``analysis_id``,
    accepted here as an alias. The older generation reports a failure in ``error`` and the current one in
    ``metadata.error_message``: :attr:`error_message` reads both.
    """

    id: str = Field(validation_alias=AliasChoices("id", "analysis_id"), min_length=1)
    object: str = "analysis"
    #: Epoch seconds (an integer on the pages; a fractional value is read as such).
    created: int | float | None = None
    status: ApiStatus
    livemode: bool | None = None
    call: CallInfo | None = None
    audio: AudioInfo | None = None
    transcript: Transcript | None = None
    results: AnalysisResults | None = None
    metadata: AnalysisMetadata | None = None
    # The older generation.
    created_at: str | None = None
    estimated_completion: str | None = None
    webhook_url: ApiUrl | None = None
    analysis: LegacySummary | None = None
    error: str | None = None

    @property
    def error_message(self) -> str | None:
        """
        The server's reason for a failed analysis, from whichever generation's field carries it.

        Any URL in it is shown without its query (a reason may quote the signed URL it could not read).
        """
        if self.metadata is not None and self.metadata.error_message:
            return redact_urls(self.metadata.error_message)
        return None if self.error is None else redact_urls(self.error)

    @property
    def is_finished(self) -> bool:
        """Whether the analysis is ``completed`` or ``failed``."""
        return self.status.is_terminal

    @property
    def created_timestamp(self) -> float | None:
        """Creation time in epoch seconds, from ``created`` or the older generation's ``created_at``."""
        if self.created is not None:
            return float(self.created)
        if self.created_at:
            return parse_iso8601(self.created_at).timestamp()
        return None

    def to_xcom(self) -> dict[str, Any]:
        """
        Return a JSON-safe dict of every field, unknown ones included, under the API's own names.

        No URL in it keeps its query string, fragment or user info (see :class:`ApiUrl`).
        """
        # Free text and unknown fields may quote a signed URL too.
        return _redacted_dump(self)

    def summary(self) -> dict[str, Any]:
        """The compact, JSON-safe :class:`AnalysisSummary` of this analysis, for XCom."""
        return AnalysisSummary.of(self).to_xcom()


class AnalysisSummary(BaseModel):
    """
    The compact form of an analysis that waits and batches report, one per id: id, status, agent,
    contact and the failure reason. The one definition of that shape (XCom, trigger events, reports).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    status: str
    agent_id: str | None = None
    contact_id: str | None = None
    error_message: str | None = None

    @classmethod
    def of(cls, analysis: Analysis) -> AnalysisSummary:
        """The summary of an analysis the API returned."""
        return cls(
            id=analysis.id,
            status=analysis.status.value,
            agent_id=analysis.call.agent_id if analysis.call else None,
            contact_id=analysis.call.contact_id if analysis.call else None,
            error_message=analysis.error_message,
        )

    @classmethod
    def unfinished(cls, analysis_id: str) -> AnalysisSummary:
        """The summary of an id nothing is known about yet: still ``processing``."""
        return cls(id=analysis_id, status=AnalysisStatus.PROCESSING.value)

    @classmethod
    def finished(
        cls, analysis_id: str, *, failure: str | None = None, failed: bool = False
    ) -> AnalysisSummary:
        """The summary of an id known only to have finished: ``failed`` (with a reason) or ``completed``."""
        is_failed = failed or failure is not None
        status = AnalysisStatus.FAILED if is_failed else AnalysisStatus.COMPLETED
        return cls(
            id=analysis_id,
            status=status.value,
            error_message=None if failure is None else redact_urls(failure),
        )

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-safe dict: ``{"id", "status", "agent_id", "contact_id", "error_message"}``."""
        return self.model_dump(mode="json")


#: How many characters of an unreadable item's id a warning shows.
_ID_IN_WARNING_CHARS = 100


class _PageShape(_OpenModel):
    """The fields of a listing page, read all or nothing: the fast path of :class:`AnalysisList`."""

    object: str = "list"
    data: list[Analysis] = Field(default_factory=list)
    has_more: bool = False
    total: int | None = None


class AnalysisList(_PageShape):
    """
    One page of ``GET /analysis/`` (the listing reference): ``data``, ``has_more`` and ``total``.

    An item of ``data`` that cannot be read as an :class:`Analysis` even leniently (no id, say, or a
    ``created`` that is not a number) is left out with a warning naming its id and what is wrong with it
    (never its values). :attr:`item_count` still counts it, so that paging by offset steps over it, and
    :attr:`skipped_ids` names it.
    """

    _item_count: int | None = PrivateAttr(default=None)
    _skipped_ids: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _skip_unreadable_items(
        cls, value: Any, handler: ModelWrapValidatorHandler[AnalysisList]
    ) -> AnalysisList:
        items = value.get("data") if isinstance(value, dict) else None
        if not isinstance(items, list):
            return handler(value)
        readable: list[Analysis] = []
        skipped: list[str] = []
        for index, item in enumerate(items):
            try:
                readable.append(Analysis.model_validate(item))
            except ValidationError as err:
                label = _item_label(item, index)
                skipped.append(label)
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())) or '(item)'}: {e.get('msg', 'invalid')}"
                    for e in err.errors(include_input=False, include_url=False)[:3]
                )
                log.warning(
                    "Skipped analysis %s of a CallCov listing page: it does not match the API contract (%s)",
                    label,
                    problems,
                )
        page = handler({**value, "data": readable})
        page._item_count = len(items)
        page._skipped_ids = tuple(skipped)
        return page

    @classmethod
    def model_validate_json(  # type: ignore[override]
        cls, json_data: str | bytes | bytearray, **kwargs: Any
    ) -> AnalysisList:
        """
        Parse a page from JSON: in one pass when every item fits (the usual case, and several times
        faster), otherwise item by item, leaving out the unreadable ones.
        """
        try:
            shape = _PageShape.model_validate_json(json_data, **kwargs)
        except ValidationError:
            page: AnalysisList = super().model_validate_json(json_data, **kwargs)
            return page
        return cls.model_construct(
            _fields_set=shape.model_fields_set,
            object=shape.object,
            data=shape.data,
            has_more=shape.has_more,
            total=shape.total,
            **(shape.model_extra or {}),
        )

    @property
    def item_count(self) -> int:
        """How many items the page carried, readable or not: what an offset steps over."""
        return len(self.data) if self._item_count is None else self._item_count

    @property
    def skipped_ids(self) -> tuple[str, ...]:
        """The ids (or positions, for items without a readable id) of the items left out."""
        return self._skipped_ids

def _item_label(item: Any, index: int) -> str:
    """How a warning names an unreadable listing item: its id, or its position when it has none."""
    if isinstance(item, dict):
        for key in ("id", "analysis_id"):
            raw = item.get(key)
            if isinstance(raw, (str, int)) and str(raw).strip():
                return repr(str(raw)[:_ID_IN_WARNING_CHARS])
    return f"at position {index} (no readable id)"


def parse_iso8601(value: str) -> datetime:
    """
    Parse an ISO 8601 timestamp; a trailing ``Z`` is UTC and a naive value is taken as UTC.

    :raises ValueError: if ``value`` is not ISO 8601.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
