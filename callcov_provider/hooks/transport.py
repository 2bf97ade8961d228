"""
The wire: the one module that sends requests, on both paths, and maps what goes wrong.

The sync path sends with ``requests`` (streaming uploads through ``requests_toolbelt``), the async path
with the loop's shared ``httpx.AsyncClient`` (:mod:`~callcov_provider.hooks.async_pool`). Both take their
turn on the account's quota pacer, retry through one tenacity adapter of
:class:`~callcov_provider.hooks.retry.RetryPolicy`, tell the pacer what each answer says about the quota,
and classify transport exceptions with one classifier. Why two HTTP libraries and not one: see the
performance documentation ("One HTTP stack or two").

Both libraries are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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

if TYPE_CHECKING:
    import httpx
    import requests

    from callcov_provider.hooks.pacing import QuotaPacer

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


def classify_error(exc: BaseException) -> TransportFailure | None:
    """
    Map a transport exception of either path (``requests`` or ``httpx``) to a :class:`TransportFailure`,
    or ``None`` for any other exception.
    """
    libraries = {cls.__module__.partition(".")[0] for cls in type(exc).__mro__}
    if "httpx" in libraries:
        return _classify_httpx(exc)
    if "requests" in libraries:
        return _classify_requests(exc)
    return None


def _classify_requests(exc: BaseException) -> TransportFailure | None:
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


def _classify_httpx(exc: BaseException) -> TransportFailure | None:
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


def wire_error(exc: BaseException, method: str, path: str, url: str) -> CallCovError:
    """The typed error for a transport exception that ended a request (after its retries)."""
    failure = classify_error(exc)
    if failure is None:
        return APIConnectionError(f"{method} {path} failed: {type(exc).__name__}")
    return transport_error(failure, method, url)


class RetryController:
    """
    Plugs :class:`RetryPolicy` into tenacity for one request: which outcomes retry, and how long to wait.

    :param policy: The policy to apply.
    :param method: The request's HTTP method.
    :param label: What to name in log lines (method and path, never a secret).
    :param classify: Maps a transport exception to a :class:`TransportFailure` (:func:`classify_error`).
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


# -- sending -----------------------------------------------------------------------------------------------

#: Builds a fresh request body per attempt: ``(body, content type, cleanup)``.
BodyFactory = Callable[[], tuple[Any, str, Callable[[], None]]]


def build_session(user_agent: str) -> requests.Session:
    """A ``requests.Session`` with the provider's headers that keeps no cookies (auth is per request)."""
    import requests

    from callcov_provider.hooks.async_pool import refuse_cookies

    session = requests.Session()
    session.headers["User-Agent"] = f"{user_agent} requests/{requests.__version__}"
    session.headers["Accept"] = "application/json"
    refuse_cookies(session.cookies)
    return session


def send(
    session: requests.Session,
    method: str,
    path: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: tuple[float, float],
    policy: RetryPolicy,
    pacer: QuotaPacer,
    sleep: Callable[[float], None],
    logger: WarningLogger,
    params: Mapping[str, Any] | None = None,
    json_body: Mapping[str, Any] | None = None,
    body_factory: BodyFactory | None = None,
) -> RawResponse:
    """
    Send one logical request on the sync path, with retries; return the final response (2xx or not).

    Every attempt first waits its turn on ``pacer`` (a POST is a submission), and tells it what the
    answer says about the quota.

    :param path: The API path, named in log lines and errors (never a secret, unlike ``url``'s query).
    :param url: The full URL.
    :param headers: Authentication and other per-request headers.
    :param timeout: ``(connect, read)`` seconds.
    :param body_factory: Builds the body per attempt (a stream consumed by a failed attempt cannot be
        replayed).
    :raises CallCovError: for a transport failure that outlasted its retries.
    """
    import requests
    import tenacity

    controller = RetryController(policy, method, f"{method} {path}", classify_error, logger)
    submission = method == "POST"
    own_gate = [0.0]  # the latest gate this request's own 429s set, which its retry waits sleep out

    def attempt() -> RawResponse:
        pacer.wait_turn(sleep, submission=submission, waited_until=own_gate[0])
        cleanup: Callable[[], None] = _noop
        data: Any = None
        request_headers = dict(headers)
        if body_factory is not None:
            data, content_type, cleanup = body_factory()
            request_headers["Content-Type"] = content_type
        try:
            response = session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=request_headers,
                timeout=timeout,
                allow_redirects=False,
            )
            raw = RawResponse(response.status_code, dict(response.headers), response.content)
        finally:
            cleanup()
        own_gate[0] = max(own_gate[0], teach(pacer, policy, raw, submission=submission))
        return raw

    try:
        return tenacity.Retrying(sleep=sleep, **controller.tenacity_kwargs())(attempt)
    except requests.exceptions.RequestException as err:
        raise wire_error(err, method, path, url) from None


async def asend(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    url: str,
    *,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    pacer: QuotaPacer,
    sleep: Callable[[float], Awaitable[None]],
    logger: WarningLogger,
    params: Mapping[str, Any] | None = None,
) -> RawResponse:
    """
    Async counterpart of :func:`send` for the read-only calls triggers make.

    Requests also take their turn on the loop's in-flight limit, so a burst of answers never stalls the
    other triggers of the loop.
    """
    import httpx
    import tenacity

    from callcov_provider.hooks import async_pool

    controller = RetryController(policy, method, f"{method} {path}", classify_error, logger)
    own_gate = [0.0]

    async def attempt() -> RawResponse:
        await pacer.await_turn(sleep, submission=False, waited_until=own_gate[0])
        async with async_pool.in_flight_limit():
            response = await client.request(method, url, params=params, headers=dict(headers))
        raw = RawResponse(response.status_code, dict(response.headers), response.content)
        own_gate[0] = max(own_gate[0], teach(pacer, policy, raw, submission=False))
        return raw

    try:
        retrying = tenacity.AsyncRetrying(sleep=sleep, **controller.tenacity_kwargs())
        return await retrying(attempt)
    except httpx.HTTPError as err:
        raise wire_error(err, method, path, url) from None


def teach(pacer: QuotaPacer, policy: RetryPolicy, response: RawResponse, *, submission: bool) -> float:
    """
    Tell the pacer what an answer says about the quota (a 429's wait, or an accepted submission), and
    return the gate a 429 set (0 otherwise).
    """
    if response.status == 429:
        return pacer.rate_limited(policy.paced_wait(response.outcome()), submission=submission)
    if submission and 200 <= response.status < 300:
        pacer.accepted()
    return 0.0


def _noop() -> None:
    return None


def multipart_body(path: Path, content_type: str, form: Mapping[str, Any]) -> BodyFactory:
    """
    A :data:`BodyFactory` of streaming multipart bodies: ``form``'s fields, then the file as
    ``audio_file``, read from disk as it is sent (memory stays flat whatever the file's size).
    """

    def build() -> tuple[Any, str, Callable[[], None]]:
        from requests_toolbelt.multipart.encoder import MultipartEncoder

        handle = path.open("rb")
        fields: dict[str, Any] = {name: str(value) for name, value in form.items()}
        fields["audio_file"] = (path.name, handle, content_type)
        encoder = MultipartEncoder(fields=fields)
        return encoder, encoder.content_type, handle.close

    return build
