"""
The CallCov API contract in code: pydantic models of what the API returns, and its documented limits.

Both the hook and the emulator import this module, so the contract is written once. Sources are the
documentation pages in ``shared/callcov-api/``: page 000 ("Submitting Call Analysis", the older
``/calls/analyze`` generation), page 001 ("Making Your First Request") and page 002 ("List Analyses").
Where they disagree, the rules of that folder's README apply; each decision is noted where it is made.

Every model keeps fields it does not know (``extra="allow"``): the API will grow, and a new field must
not break a running pipeline. Sections that are ``null`` while an analysis is processing parse as ``None``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

MIB = 1024 * 1024


@dataclass(frozen=True)
class AudioFormat:
    """One supported audio format: its name, extension and maximum size (page 000's table)."""

    name: str
    extension: str
    max_bytes: int
    content_type: str


#: The documented formats. "MB" is read as MiB, the more permissive reading (shared README).
AUDIO_FORMATS: dict[str, AudioFormat] = {
    fmt.extension: fmt
    for fmt in (
        AudioFormat("wav", ".wav", 100 * MIB, "audio/wav"),
        AudioFormat("mp3", ".mp3", 50 * MIB, "audio/mpeg"),
        AudioFormat("m4a", ".m4a", 50 * MIB, "audio/mp4"),
        AudioFormat("flac", ".flac", 100 * MIB, "audio/flac"),
        AudioFormat("ogg", ".ogg", 50 * MIB, "audio/ogg"),
    )
}

LIST_LIMIT_MIN = 1
LIST_LIMIT_MAX = 1000
LIST_LIMIT_DEFAULT = 100


class AnalysisStatus(str, enum.Enum):
    """The three documented statuses of an analysis (page 001, "Status Values")."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the analysis has finished, successfully or not."""
        return self is not AnalysisStatus.PROCESSING


class CallDirection(str, enum.Enum):
    """The documented values of ``call_direction`` (page 000)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class _OpenModel(BaseModel):
    """A model that keeps unknown fields and accepts field names and aliases alike."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CallInfo(_OpenModel):
    """The ``call`` section: who was on the call and how long it lasted."""

    agent_id: str | None = None
    contact_id: str | None = None
    call_direction: str | None = None
    call_timestamp: str | None = None
    duration_ms: int | None = None
    duration_seconds: float | None = None


class AudioInfo(_OpenModel):
    """The ``audio`` section. Page 001 says ``file_size``, page 002 ``size_bytes``; both are kept."""

    url: str | None = None
    format: str | None = None
    duration_seconds: float | None = None
    file_size: int | None = None
    size_bytes: int | None = None


class TranscriptSegment(_OpenModel):
    """One utterance of the transcript."""

    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    text: str | None = None


class Transcript(_OpenModel):
    """The ``transcript`` section; ``None`` while processing."""

    text: str | None = None
    segments: list[TranscriptSegment] = Field(default_factory=list)
    language: str | None = None


class ComplianceCheck(_OpenModel):
    """One compliance check: page 002's agent report reads ``flagged``; ``passed`` is its complement."""

    passed: bool | None = None
    flagged: bool | None = None
    details: str | None = None


class ComplianceResults(_OpenModel):
    """The three documented compliance checks."""

    identity_verification: ComplianceCheck | None = None
    mandatory_disclosures: ComplianceCheck | None = None
    purpose_declaration: ComplianceCheck | None = None


class SentimentAnalysis(_OpenModel):
    """Overall sentiment of the call; the label is one of positive, neutral or negative."""

    overall: str | None = None
    score: float | None = None


class GreetingCheck(_OpenModel):
    """Whether the agent greeted the customer (page 002 reads ``greeting.present``)."""

    present: bool | None = None


class EmpatheticLanguage(_OpenModel):
    """How much empathetic language the agent used."""

    score: float | None = None
    examples: list[str] = Field(default_factory=list)


class QualityResults(_OpenModel):
    """The ``quality`` results."""

    sentiment_analysis: SentimentAnalysis | None = None
    greeting: GreetingCheck | None = None
    empathetic_language: EmpatheticLanguage | None = None


class CoachingResults(_OpenModel):
    """Coaching advice and the customer effort score (1 to 5, page 002)."""

    recommendations: list[Any] = Field(default_factory=list)
    customer_effort_score: int | None = None


class AnalysisResults(_OpenModel):
    """The ``results`` section; ``None`` while processing."""

    compliance: ComplianceResults | None = None
    quality: QualityResults | None = None
    coaching: CoachingResults | None = None


class AnalysisMetadata(_OpenModel):
    """The ``metadata`` section, where a failed analysis carries its ``error_message``."""

    webhook_url: str | None = None
    completed_at: str | None = None
    processing_time_ms: int | None = None
    error_message: str | None = None
    version: str | None = None


class LegacySummary(_OpenModel):
    """Page 000's ``analysis`` object of the ``/calls/analyze/{id}`` status response."""

    sentiment: Any = None
    summary: Any = None


class Analysis(_OpenModel):
    """
    One analysis, in either API generation's shape.

    Pages 001/002 return ``id``; page 000's submit response returns ``analysis_id``, accepted here as an
    alias. Page 000 reports a failure in ``error`` and page 001 in ``metadata.error_message``:
    :attr:`error_message` reads both.
    """

    id: str = Field(validation_alias=AliasChoices("id", "analysis_id"), min_length=1)
    object: str = "analysis"
    created: int | None = None
    status: AnalysisStatus
    livemode: bool | None = None
    call: CallInfo | None = None
    audio: AudioInfo | None = None
    transcript: Transcript | None = None
    results: AnalysisResults | None = None
    metadata: AnalysisMetadata | None = None
    # Page 000's generation.
    created_at: str | None = None
    estimated_completion: str | None = None
    webhook_url: str | None = None
    analysis: LegacySummary | None = None
    error: str | None = None

    @property
    def error_message(self) -> str | None:
        """The server's reason for a failed analysis, from whichever generation's field carries it."""
        if self.metadata is not None and self.metadata.error_message:
            return self.metadata.error_message
        return self.error

    @property
    def is_finished(self) -> bool:
        """Whether the analysis is ``completed`` or ``failed``."""
        return self.status.is_terminal

    @property
    def created_timestamp(self) -> float | None:
        """Creation time in epoch seconds, from ``created`` or page 000's ``created_at``."""
        if self.created is not None:
            return float(self.created)
        if self.created_at:
            return parse_iso8601(self.created_at).timestamp()
        return None

    def to_xcom(self) -> dict[str, Any]:
        """Return a JSON-safe dict of every field, unknown ones included, under the API's own names."""
        return self.model_dump(mode="json", exclude_unset=False)

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-safe summary for XCom: id, status, agent, contact and error message."""
        return {
            "id": self.id,
            "status": self.status.value,
            "agent_id": self.call.agent_id if self.call else None,
            "contact_id": self.call.contact_id if self.call else None,
            "error_message": self.error_message,
        }


class AnalysisList(_OpenModel):
    """One page of ``GET /analysis/`` (page 002): ``data``, ``has_more`` and ``total``."""

    object: str = "list"
    data: list[Analysis] = Field(default_factory=list)
    has_more: bool = False
    total: int | None = None

    def to_xcom(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the page."""
        return self.model_dump(mode="json")


class LegacyStatusResponse(_OpenModel):
    """Page 000's ``GET /calls/analyze/{id}`` body: ``{"status", "analysis", "error"}``."""

    status: AnalysisStatus
    analysis: LegacySummary | None = None
    error: str | None = None


class WebhookEvent(_OpenModel):
    """The body POSTed to a ``webhook_url`` when processing ends (page 001)."""

    event: str
    data: dict[str, Any]


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


#: How many leading bytes :func:`sniff_audio_format` needs to recognise every documented format.
SNIFF_BYTES = 12


def sniff_audio_format(head: bytes) -> str | None:
    """
    Recognise a documented audio format from a file's first bytes (its "magic number").

    ``RIFF....WAVE`` is WAV; ``ID3`` (a tag) or an MPEG frame sync (``0xFF`` then ``0xE0`` or above) is
    MP3; ``fLaC`` is FLAC; ``OggS`` is OGG; ``....ftyp`` (an ISO base media box) is M4A.

    :param head: At least the first :data:`SNIFF_BYTES` bytes of the file (fewer only for a shorter file).
    :return: The format's name as in :data:`AUDIO_FORMATS` (``"wav"``, ``"mp3"``, ...), or ``None``.
    """
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "m4a"
    return None


def audio_format_by_name(name: str) -> AudioFormat | None:
    """Return the documented :class:`AudioFormat` called ``name`` (``"wav"``, ``"mp3"``, ...), if any."""
    for fmt in AUDIO_FORMATS.values():
        if fmt.name == name:
            return fmt
    return None
