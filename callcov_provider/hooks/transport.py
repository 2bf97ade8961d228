"""
What the sync and async paths share around the wire: response parsing, error mapping, and the tenacity
adapter that applies :class:`~callcov_provider.hooks.retry.RetryPolicy`.

The transports themselves (``requests`` and ``httpx``) are imported lazily by the hook; this module only
classifies their exceptions by name of class, so importing it stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from callcov_provider.exceptions import (
    APIConnectionError,
    APITimeoutError,
    CallCovError,
    UnexpectedResponseError,
    error_from_response,
)
from callcov_provider.hooks.retry import (
    UNANNOUNCED_QUOTA_WAIT,
    Outcome,
    RetryPolicy,
    TransportFailure,
    server_requested_wait,
)

ModelT = TypeVar("ModelT", bound=BaseModel)


class WarningLogger(Protocol):
    """Anything with a ``warning`` method: a :class:`logging.Logger` or Airflow's task SDK logger."""

    def warning(self, msg: Any, /, *args: Any) -> Any:
        """Log ``msg % args`` as a warning."""


@dataclass(frozen=True)
class RawResponse:
    """A transport-neutral HTTP response."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def outcome(self) -> Outcome:
        """This response as the retry policy sees it."""
        return Outcome(status=self.status, headers=self.headers, body=self.body[:4096])

    @property
    def content_type(self) -> str | None:
        """The response's ``Content-Type``, if any."""
        for key, value in self.headers.items():
            if key.lower() == "content-type":
                return value
        return None


def raise_for_status(response: RawResponse, *, secrets: Iterable[str] = ()) -> None:
    """
    Raise the typed :class:`CallCovError` for a non-2xx response.

    :param secrets: Values to remove from the server's error text
        (see :func:`~callcov_provider.exceptions.redact`).
    """
    if 200 <= response.status < 300:
        return
    retry_after = server_requested_wait(response.headers, body=response.body, status=response.status)
    if response.status == 429 and retry_after is None:
        retry_after = UNANNOUNCED_QUOTA_WAIT
    error = error_from_response(
        response.status,
        response.body,
        content_type=response.content_type,
        retry_after=retry_after,
        secrets=secrets,
    )
    raise error


def parse_model(
    response: RawResponse, model: type[ModelT], what: str, *, secrets: Iterable[str] = ()
) -> ModelT:
    """
    Parse a 2xx response into ``model``.

    :param secrets: Values to remove from the text of an error response.
    :raises UnexpectedResponseError: for a body that is not JSON or does not match the contract. The message
        names the fields that are wrong but never echoes values (a response may carry a signed URL).
    """
    raise_for_status(response, secrets=secrets)
    try:
        return model.model_validate_json(response.body)
    except PydanticValidationError as err:
        problems = []
        for item in err.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in item.get("loc", ())) or "(body)"
            problems.append(f"{loc}: {item.get('msg', 'invalid')}")
        if any(e.get("type") == "json_invalid" for e in err.errors(include_input=False)):
            summary = "the body is not valid JSON"
        else:
            summary = "; ".join(problems[:5])
        raise UnexpectedResponseError(
            f"{what} response does not match the CallCov API contract: {summary}", status_code=response.status
        ) from None


def classify_requests_error(exc: BaseException) -> TransportFailure | None:
    """Map a ``requests`` exception to a :class:`TransportFailure`, or ``None`` for any other exception."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportFailure.CONNECT_TIMEOUT
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportFailure.READ_TIMEOUT
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return TransportFailure.DROPPED
    if isinstance(exc, requests.exceptions.ConnectionError):
        from urllib3.exceptions import MaxRetryError, NewConnectionError

        reason: Any = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, NewConnectionError):
            return TransportFailure.CONNECT
        # Anything else (reset, remote disconnected) may have happened after the request was sent.
        return TransportFailure.DROPPED
    return None


def classify_httpx_error(exc: BaseException) -> TransportFailure | None:
    """Map an ``httpx`` exception to a :class:`TransportFailure`, or ``None`` for any other exception."""
    import httpx

    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return TransportFailure.CONNECT_TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return TransportFailure.CONNECT
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
        return TransportFailure.READ_TIMEOUT
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return TransportFailure.DROPPED
    return None


def transport_error(failure: TransportFailure, method: str, url: str) -> CallCovError:
    """The typed error raised when a transport failure outlasts its retries."""
    from callcov_provider.exceptions import safe_url

    target = f"{method} {safe_url(url)}"
    if failure in (TransportFailure.CONNECT_TIMEOUT, TransportFailure.READ_TIMEOUT):
        return APITimeoutError(f"{failure.value} on {target}")
    return APIConnectionError(f"{failure.value} on {target}")


class RetryController:
    """
    Plugs :class:`RetryPolicy` into tenacity for one request: which outcomes retry, and how long to wait.

    :param policy: The policy to apply.
    :param method: The request's HTTP method.
    :param label: What to name in log lines (method and path, never a secret).
    :param classify: Maps a transport exception to a :class:`TransportFailure`.
    :param logger: Where each retry is logged as a warning with its reason and wait.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        method: str,
        label: str,
        classify: Callable[[BaseException], TransportFailure | None],
        logger: WarningLogger,
    ) -> None:
        self.policy = policy
        self.method = method
        self.label = label
        self.classify = classify
        self.logger = logger
        self._next_wait = 0.0
        # Retries spent waiting out 429s that said when to come back: they count against their own bound,
        # not against the retries left for failures.
        self._paced_retries = 0

    def _outcome(self, retry_state: Any) -> Outcome | None:
        attempt = retry_state.outcome
        if attempt is None:
            return None
        if attempt.failed:
            failure = self.classify(attempt.exception())
            return None if failure is None else Outcome(failure=failure)
        response: RawResponse = attempt.result()
        return response.outcome()

    def should_retry(self, retry_state: Any) -> bool:
        """tenacity ``retry=`` hook: decide, remember the wait, and log the retry."""
        outcome = self._outcome(retry_state)
        if outcome is None or (outcome.status is not None and outcome.status < 400):
            return False
        # With sleep patched out in tests the wall clock barely moves; the sleeps still count.
        elapsed = max(retry_state.seconds_since_start or 0.0, retry_state.idle_for)
        paced = self.policy.is_paced(outcome)
        counted = self._paced_retries + 1 if paced else retry_state.attempt_number - self._paced_retries
        wait = self.policy.next_wait(self.method, counted, outcome, elapsed)
        if wait is None:
            return False
        self._next_wait = wait
        if paced:
            self._paced_retries += 1
        self.logger.warning(
            "CallCov %s: %s; retry %d of %d in %.2fs",
            self.label,
            outcome.describe(),
            counted,
            self.policy.retry_limit(outcome),
            wait,
        )
        return True

    def wait(self, retry_state: Any) -> float:
        """tenacity ``wait=`` hook: the wait decided in :meth:`should_retry`."""
        return self._next_wait

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying`` (add ``sleep=``)."""
        import tenacity

        return {
            "retry": self.should_retry,
            "wait": self.wait,
            "stop": tenacity.stop_never,
            "reraise": True,
        }
