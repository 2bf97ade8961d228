"""
The emulator's settings: processing, rate limits, faults, and the whole configuration.

Every setting is a pydantic model, so the same class validates the console script's flags, the keyword
arguments of :func:`~callcov_provider.testing.server.run_emulator` and the JSON bodies of the control API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Hosts the emulator fetches ``audio_url`` from and delivers webhooks to, unless told otherwise.
DEFAULT_ALLOW_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The key used when none is configured (documented in the README; never printed or logged).
DEFAULT_API_KEY = "sk_test_callcov"
#: Statuses a fault may inject with a probability.
FAULT_STATUSES = (500, 502, 503, 504)


def parse_seconds_range(value: Any) -> tuple[float, float]:
    """
    Read a duration or a range of durations: ``2``, ``"2"``, ``"1-5"``, ``(1, 5)`` or ``[1, 5]``.

    :return: ``(minimum, maximum)``; equal for a fixed duration.
    :raises ValueError: for a negative value, an inverted range or text that is not a number.
    """
    low: float
    high: float
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError("a range needs exactly two values")
        low, high = float(value[0]), float(value[1])
    elif isinstance(value, str) and "-" in value.strip()[1:]:
        text = value.strip()
        cut = text.index("-", 1)
        low, high = float(text[:cut]), float(text[cut + 1 :])
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
        low = high = float(value)
    else:
        raise ValueError(f"expected seconds or a 'min-max' range, got {value!r}")
    if low < 0 or high < low:
        raise ValueError(f"invalid seconds range {low}-{high}: need 0 <= min <= max")
    return low, high


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProcessingSettings(_Settings):
    """
    How long analyses take and how often they fail.

    :param min_seconds: Shortest processing time of a new analysis (seconds; 0 completes at once).
    :param max_seconds: Longest processing time; each analysis gets a deterministic value in between.
    :param failure_rate: Share of analyses (0 to 1) that end ``failed``, chosen by a hash of the seed and
        the analysis id, so the same run fails the same analyses.
    """

    min_seconds: float = Field(2.0, ge=0)
    max_seconds: float = Field(2.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _accept_seconds(cls, data: Any) -> Any:
        # ``{"seconds": 2}`` or ``{"seconds": "1-5"}`` is a shorthand for min/max.
        if isinstance(data, Mapping) and "seconds" in data:
            values = dict(data)
            low, high = parse_seconds_range(values.pop("seconds"))
            values["min_seconds"], values["max_seconds"] = low, high
            return values
        return data

    @model_validator(mode="after")
    def _check_range(self) -> ProcessingSettings:
        if self.max_seconds < self.min_seconds:
            raise ValueError("max_seconds must be at least min_seconds")
        return self


QuotaMode = Literal["friendly", "documented"]
Plan = Literal["free", "starter", "business", "enterprise"]
ResetFormat = Literal["epoch", "epoch_ms", "delta"]

#: The documented plans: ``(submissions per minute, concurrent processing)``. Enterprise is "Custom" in
#: the documentation; the emulator reads that as unlimited unless limits are given explicitly.
PLANS: dict[str, tuple[int | None, int | None]] = {
    "free": (5, 1),
    "starter": (30, 5),
    "business": (150, 25),
    "enterprise": (None, None),
}
#: Documented defaults (the "Making Your First Request" page): requests and submissions per minute.
DOCUMENTED_REQUESTS_PER_MINUTE = 100
DOCUMENTED_SUBMISSIONS_PER_MINUTE = 20


class RateLimitSettings(_Settings):
    """
    Per-account quotas in fixed one-minute windows of the emulator's clock; ``None`` is off (or, in
    ``documented`` mode, the documented default).

    :param requests_per_minute: Every ``/api/v1`` request counts. Default: off in ``friendly`` mode,
        100 (the documented default) in ``documented`` mode.
    :param submissions_per_minute: Only submissions count. Default: the plan's, else off in ``friendly``
        mode and 20 (the documented default) in ``documented`` mode.
    :param mode: ``friendly`` (default): a 429 carries ``Retry-After``. ``documented``: exactly what the
        API documentation shows: no ``Retry-After``, the wait only in the message, request and
        submission quotas apart (the ``X-RateLimit-*`` headers describe the request quota only).
    :param plan: A documented plan preset (``free``, ``starter``, ``business``, ``enterprise``): its
        submissions per minute and concurrent processing, unless given explicitly.
    :param concurrent_processing: Analyses of one account processed at once; later ones stay
        ``processing`` (queued) until a slot frees, and their processing time starts then.
        ``None``: the plan's, else unlimited.
    :param reset_format: How ``X-RateLimit-Reset`` is written: ``epoch`` seconds (as documented),
        ``epoch_ms`` milliseconds, or ``delta`` seconds until the window ends.
    """

    requests_per_minute: int | None = Field(None, ge=1)
    submissions_per_minute: int | None = Field(None, ge=1)
    mode: QuotaMode = "friendly"
    plan: Plan | None = None
    concurrent_processing: int | None = Field(None, ge=1)
    reset_format: ResetFormat = "epoch"

    @property
    def documented(self) -> bool:
        """Whether 429s and quotas follow the documentation exactly."""
        return self.mode == "documented"

    def effective_requests_per_minute(self) -> int | None:
        """The request quota in force (``None``: unlimited)."""
        if self.requests_per_minute is not None:
            return self.requests_per_minute
        return DOCUMENTED_REQUESTS_PER_MINUTE if self.documented else None

    def effective_submissions_per_minute(self) -> int | None:
        """The submission quota in force (``None``: unlimited)."""
        if self.submissions_per_minute is not None:
            return self.submissions_per_minute
        if self.plan is not None:
            return PLANS[self.plan][0]
        return DOCUMENTED_SUBMISSIONS_PER_MINUTE if self.documented else None

    def effective_concurrent_processing(self) -> int | None:
        """How many analyses of one account are processed at once (``None``: unlimited)."""
        if self.concurrent_processing is not None:
            return self.concurrent_processing
        return PLANS[self.plan][1] if self.plan is not None else None

    def effective(self) -> dict[str, int | None]:
        """The quotas in force, as the control API reports them."""
        return {
            "requests_per_minute": self.effective_requests_per_minute(),
            "submissions_per_minute": self.effective_submissions_per_minute(),
            "concurrent_processing": self.effective_concurrent_processing(),
        }


class FaultSettings(_Settings):
    """
    Faults injected into ``/api/v1`` (never into ``/_emulator``), drawn from the seeded RNG.

    :param error_rates: Probability of answering each of 500, 502, 503 and 504 instead of handling the
        request (500/503 carry a JSON error body, 502/504 an HTML page as a proxy would send).
    :param burst_429: The next N requests are answered 429 ``rate_limit_exceeded``.
    :param retry_after: The ``Retry-After`` seconds of those 429s.
    :param latency_min: Added latency in seconds before a request is handled ...
    :param latency_max: ... drawn uniformly up to this (equal to ``latency_min`` for a fixed delay).
    :param latency_rate: Probability that a request gets the added latency.
    :param drop_rate: Probability of closing the connection without any response, before handling.
    :param lose_rate: Probability that a submission is accepted (the analysis is created) and its
        response then lost, the way ``lose_mode`` says.
    :param lose_mode: ``"503"`` answers 503 instead; ``"drop"`` closes the connection.
    :param next_errors: Statuses (4xx/5xx) forced on the next requests, one each, in order.
    :param drop_next: The next N requests have their connection dropped.
    :param lose_next: The next N submissions are accepted and their response lost.
    """

    error_rates: dict[int, float] = Field(default_factory=dict)
    burst_429: int = Field(0, ge=0)
    retry_after: int = Field(1, ge=0)
    latency_min: float = Field(0.0, ge=0)
    latency_max: float = Field(0.0, ge=0)
    latency_rate: float = Field(1.0, ge=0, le=1)
    drop_rate: float = Field(0.0, ge=0, le=1)
    lose_rate: float = Field(0.0, ge=0, le=1)
    lose_mode: Literal["503", "drop"] = "503"
    next_errors: list[int] = Field(default_factory=list)
    drop_next: int = Field(0, ge=0)
    lose_next: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_latency(cls, data: Any) -> Any:
        # ``{"latency": 0.05}`` or ``{"latency": "0.01-0.2"}`` is a shorthand for min/max.
        if isinstance(data, Mapping) and "latency" in data:
            values = dict(data)
            low, high = parse_seconds_range(values.pop("latency"))
            values["latency_min"], values["latency_max"] = low, high
            return values
        return data

    @model_validator(mode="after")
    def _check(self) -> FaultSettings:
        for status, rate in self.error_rates.items():
            if status not in FAULT_STATUSES:
                raise ValueError(f"error_rates keys must be among {FAULT_STATUSES}, got {status}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"error rate for {status} must be between 0 and 1")
        if sum(self.error_rates.values()) > 1.0:
            raise ValueError("error rates must add up to at most 1")
        if self.latency_max < self.latency_min:
            raise ValueError("latency_max must be at least latency_min")
        for status in self.next_errors:
            if not 400 <= status <= 599:
                raise ValueError(f"next_errors must be 4xx or 5xx statuses, got {status}")
        return self


def apply_fault_spec(faults: FaultSettings, spec: str) -> FaultSettings:
    """
    Apply one ``--fault`` flag to ``faults`` and return the new settings.

    Accepted forms: ``503=0.1`` (also 500, 502, 504), ``latency=0.05`` or ``latency=0.01-0.2`` (seconds),
    ``latency_rate=0.5``, ``drop=0.1``, ``lose=0.1``, ``lose_mode=drop``, ``burst429=5``,
    ``retry_after=2``, ``drop_next=1``, ``lose_next=1``, ``next_errors=503,502``.

    :raises ValueError: for an unknown name or a bad value.
    """
    name, sep, raw = spec.partition("=")
    name, raw = name.strip().lower(), raw.strip()
    if not sep or not name or not raw:
        raise ValueError(f"fault {spec!r} must look like NAME=VALUE, e.g. 503=0.1 or latency=0.05")
    data = faults.model_dump()
    if name.isdigit():
        rates = dict(faults.error_rates)
        rates[int(name)] = float(raw)
        data["error_rates"] = rates
    elif name == "latency":
        data["latency_min"], data["latency_max"] = parse_seconds_range(raw)
    else:
        aliases = {
            "drop": "drop_rate",
            "lose": "lose_rate",
            "burst429": "burst_429",
            "429": "burst_429",
            "burst_429": "burst_429",
        }
        field = aliases.get(name, name)
        if field not in FaultSettings.model_fields or field in ("error_rates", "latency_min", "latency_max"):
            raise ValueError(f"unknown fault {name!r}")
        if field == "next_errors":
            data[field] = [int(part) for part in raw.split(",") if part.strip()]
        else:
            data[field] = raw
    return FaultSettings.model_validate(data)


def faults_from(value: FaultSettings | Mapping[str, Any] | Iterable[str] | None) -> FaultSettings:
    """Build :class:`FaultSettings` from settings, a mapping (control API shape) or ``--fault`` specs."""
    if value is None:
        return FaultSettings()
    if isinstance(value, FaultSettings):
        return value.model_copy(deep=True)
    if isinstance(value, Mapping):
        return FaultSettings.model_validate(dict(value))
    faults = FaultSettings()
    for spec in value:
        faults = apply_fault_spec(faults, spec)
    return faults


class EmulatorConfig(_Settings):
    """
    Everything the emulator is started with. ``reset`` returns the emulator to exactly this.

    :param api_keys: Accepted keys; the n-th key is account ``acct_n``. Keys are kept only as SHA-256
        digests once the app is built, and never stored, logged or returned.
    :param processing: See :class:`ProcessingSettings`.
    :param rate_limits: See :class:`RateLimitSettings`.
    :param faults: See :class:`FaultSettings`.
    :param allow_hosts: Hosts ``audio_url`` may be fetched from and webhooks delivered to.
    :param db_path: A SQLite file that keeps analyses and idempotency keys across restarts; ``None``
        keeps them in memory.
    :param seed: Seeds the fault RNG, analysis ids and the failure-rate hash.
    :param webhook_attempts: Delivery attempts per webhook event.
    :param webhook_retry_seconds: First wait between delivery attempts (doubles each time).
    :param request_log_limit: Entries the request log keeps (oldest dropped first).
    :param clock_offset_seconds: The server's clock runs this many seconds ahead of (negative: behind)
        the wall clock: ``Date``, ``X-RateLimit-Reset``, ``created`` and every other time follow it, so a
        client whose clock differs from the server's can be tested.
    """

    api_keys: list[str] = Field(default_factory=lambda: [DEFAULT_API_KEY], min_length=1, repr=False)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    allow_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOW_HOSTS))
    db_path: str | None = None
    seed: int = 0
    webhook_attempts: int = Field(3, ge=1)
    webhook_retry_seconds: float = Field(0.2, ge=0)
    request_log_limit: int = Field(10_000, ge=1)
    clock_offset_seconds: float = Field(0.0, ge=-10 * 365 * 86400, le=10 * 365 * 86400)

    @model_validator(mode="after")
    def _check_keys(self) -> EmulatorConfig:
        if any(not key or key != key.strip() for key in self.api_keys):
            raise ValueError("API keys must be non-empty and have no surrounding spaces")
        if len(set(self.api_keys)) != len(self.api_keys):
            raise ValueError("API keys must be distinct")
        return self


def build_config(
    *,
    api_keys: Iterable[str] | None = None,
    processing_seconds: float | str | tuple[float, float] | None = None,
    failure_rate: float | None = None,
    rate_limit: int | None = None,
    submit_rate_limit: int | None = None,
    quota_mode: str | None = None,
    plan: str | None = None,
    concurrent_processing: int | None = None,
    reset_format: str | None = None,
    clock_offset: float | None = None,
    faults: FaultSettings | Mapping[str, Any] | Iterable[str] | None = None,
    allow_hosts: Iterable[str] | None = None,
    db: str | None = None,
    seed: int | None = None,
    base: EmulatorConfig | None = None,
    **extra: Any,
) -> EmulatorConfig:
    """
    Build an :class:`EmulatorConfig` from the flat options the CLI and ``run_emulator`` take.

    Options left ``None`` keep the value of ``base`` (or the default). ``extra`` may name any other
    :class:`EmulatorConfig` field (``webhook_attempts``, ``webhook_retry_seconds``, ...).

    :raises pydantic.ValidationError: for an invalid value; ``ValueError`` for a bad range or fault.
    """
    data: dict[str, Any] = (base or EmulatorConfig()).model_dump()
    if api_keys is not None:
        data["api_keys"] = list(api_keys)
    if processing_seconds is not None:
        data["processing"]["min_seconds"], data["processing"]["max_seconds"] = parse_seconds_range(
            processing_seconds
        )
    if failure_rate is not None:
        data["processing"]["failure_rate"] = failure_rate
    if rate_limit is not None:
        data["rate_limits"]["requests_per_minute"] = rate_limit
    if submit_rate_limit is not None:
        data["rate_limits"]["submissions_per_minute"] = submit_rate_limit
    if quota_mode is not None:
        data["rate_limits"]["mode"] = quota_mode
    if plan is not None:
        data["rate_limits"]["plan"] = plan
    if concurrent_processing is not None:
        data["rate_limits"]["concurrent_processing"] = concurrent_processing
    if reset_format is not None:
        data["rate_limits"]["reset_format"] = reset_format
    if clock_offset is not None:
        data["clock_offset_seconds"] = clock_offset
    if faults is not None:
        data["faults"] = faults_from(faults).model_dump()
    if allow_hosts is not None:
        data["allow_hosts"] = list(allow_hosts)
    if db is not None:
        data["db_path"] = db
    if seed is not None:
        data["seed"] = seed
    unknown = set(extra) - set(EmulatorConfig.model_fields)
    if unknown:
        raise TypeError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
    data.update(extra)
    return EmulatorConfig.model_validate(data)
