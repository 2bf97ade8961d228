"""Classification of transport exceptions, and the package's lazy exports."""

from __future__ import annotations

import httpx
import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from callcov_provider.hooks.retry import TransportFailure
from callcov_provider.hooks.transport import RawResponse, classify_error


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ConnectTimeout(), TransportFailure.CONNECT_TIMEOUT),
        (requests.exceptions.ReadTimeout(), TransportFailure.READ_TIMEOUT),
        (requests.exceptions.ChunkedEncodingError(), TransportFailure.DROPPED),
        (requests.exceptions.ConnectionError(NewConnectionError(None, "refused")), TransportFailure.CONNECT),  # type: ignore[arg-type]
        (
            requests.exceptions.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "x"))),  # type: ignore[arg-type]
            TransportFailure.CONNECT,
        ),
        (
            requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())),
            TransportFailure.DROPPED,
        ),
        (requests.exceptions.ConnectionError(), TransportFailure.DROPPED),
        (requests.exceptions.InvalidURL("x"), None),
        (ValueError("not a transport error"), None),
        (OSError("a socket error outside both libraries"), None),
    ],
)
def test_classify_error_of_requests(exc: BaseException, expected: TransportFailure | None) -> None:
    assert classify_error(exc) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("x"), TransportFailure.CONNECT_TIMEOUT),
        (httpx.PoolTimeout("x"), TransportFailure.CONNECT_TIMEOUT),
        (httpx.ConnectError("x"), TransportFailure.CONNECT),
        (httpx.ReadTimeout("x"), TransportFailure.READ_TIMEOUT),
        (httpx.WriteTimeout("x"), TransportFailure.READ_TIMEOUT),
        (httpx.RemoteProtocolError("x"), TransportFailure.DROPPED),
        (httpx.ReadError("x"), TransportFailure.DROPPED),
        (httpx.WriteError("x"), TransportFailure.DROPPED),
        (httpx.CloseError("x"), TransportFailure.DROPPED),
        (httpx.UnsupportedProtocol("x"), None),
        (RuntimeError("x"), None),
    ],
)
def test_classify_error_of_httpx(exc: BaseException, expected: TransportFailure | None) -> None:
    assert classify_error(exc) is expected


def test_classify_error_of_a_subclass_defined_elsewhere() -> None:
    class ProxyReadTimeout(httpx.ReadTimeout):
        pass

    assert classify_error(ProxyReadTimeout("x")) is TransportFailure.READ_TIMEOUT


def test_raw_response_content_type() -> None:
    assert RawResponse(200, {"content-type": "text/html"}).content_type == "text/html"
    assert RawResponse(200).content_type is None


def test_lazy_package_exports() -> None:
    import callcov_provider
    from callcov_provider.hooks.callcov import CallCovHook

    assert callcov_provider.CallCovHook is CallCovHook
    assert "CallCovHook" in dir(callcov_provider)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = callcov_provider.Nope  # type: ignore[attr-defined]
