"""
The emulator never answers 5xx to bad input, and every error it gives is in one of the three documented
shapes: ``{"error": {"code", "message"}}``, ``{"detail": "..."}`` or ``{"detail": [{"loc", "msg", "type"}]}``.

Known hostile inputs first, then property-based fuzzing (hypothesis, derandomised and bounded, a few
seconds in all) of every documented endpoint: list queries, JSON and multipart submissions, raw bodies,
headers and methods.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcov_provider.testing.pytest_plugin import QUOTA_MODES
from callcov_provider.testing.server import EmulatorHandle

from .conftest import Api

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Every documented path (with and without its trailing slash) and the methods it serves.
SERVED = {
    "/analysis/": {"GET", "POST"},
    "/analysis": {"GET", "POST"},
    "/calls/analyze": {"POST"},
    "/calls/analyze/": {"POST"},
    "/analysis/some-id": {"GET"},
    "/calls/analyze/some-id": {"GET"},
}
SUBMIT_PATHS = ("/analysis/", "/calls/analyze")
FIELDS = (
    "agent_id",
    "contact_id",
    "call_direction",
    "call_timestamp",
    "metadata",
    "audio_url",
    "webhook_url",
)
QUERY = ("status_filter", "agent_id", "contact_id", "search", "limit", "offset")


def is_documented_error(body: Any) -> bool:
    """Whether ``body`` is one of the three documented error shapes."""
    if not isinstance(body, dict) or len(body) != 1:
        return False
    if "error" in body:
        error = body["error"]
        return (
            isinstance(error, dict)
            and set(error) == {"code", "message"}
            and all(isinstance(v, str) for v in error.values())
        )
    if "detail" in body:
        detail = body["detail"]
        if isinstance(detail, str):
            return True
        return (
            isinstance(detail, list)
            and len(detail) > 0
            and all(
                isinstance(item, dict)
                and isinstance(item.get("loc"), list)
                and isinstance(item.get("msg"), str)
                and isinstance(item.get("type"), str)
                for item in detail
            )
        )
    return False


def check(response: requests.Response) -> None:
    """No 5xx; a 4xx carries a documented error body."""
    what = f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}"
    assert response.status_code < 500, what
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), what
        assert is_documented_error(response.json()), what


def nested(depth: int, leaf: str = "null") -> str:
    """A JSON text of objects nested ``depth`` deep (built as text: ``json.dumps`` itself would recurse)."""
    return '{"a":' * depth + leaf + "}" * depth


def post_json_text(api: Api, text: str, path: str = "/analysis/") -> requests.Response:
    headers = {**api.auth(), "Content-Type": "application/json"}
    return api.session.post(api.base + path, headers=headers, data=text.encode(), timeout=30)


@pytest.mark.parametrize("offset", [2**63 - 1, 2**63, 2**64 + 5, 10**40, -(2**63) - 1])
def test_huge_offsets_are_a_4xx_or_an_empty_page(api: Api, offset: int) -> None:
    response = api.get("/analysis/", offset=offset)
    check(response)
    if offset < 0:
        assert response.status_code == 422
    elif response.status_code == 200:
        assert response.json()["data"] == []


@pytest.mark.parametrize("limit", [2**63, 10**40, -(2**63)])
def test_huge_limits_are_refused(api: Api, limit: int) -> None:
    response = api.get("/analysis/", limit=limit)
    check(response)
    assert response.status_code == 422


@pytest.mark.parametrize("path", SUBMIT_PATHS)
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_bodies_are_a_4xx(api: Api, path: str, depth: int) -> None:
    check(post_json_text(api, nested(depth), path))
    check(post_json_text(api, "[" * depth + "]" * depth, path))


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_deeply_nested_metadata_is_a_4xx(api: Api, path: str) -> None:
    fields = '"agent_id":"a","contact_id":"c","audio_url":"http://127.0.0.1:9/x.wav"'
    response = post_json_text(api, "{" + fields + ',"metadata":' + nested(1000) + "}", path)
    check(response)
    assert response.status_code in (400, 422)
    multipart = api.session.post(
        api.base + path,
        headers=api.auth(),
        files={"audio_file": ("call.wav", b"RIFF")},
        data={"agent_id": "a", "contact_id": "c", "metadata": nested(1000, "1")},
        timeout=30,
    )
    check(multipart)
    assert multipart.status_code in (400, 422)


@pytest.mark.parametrize(
    "text",
    [
        '{"agent_id": 1e999}',
        '{"agent_id": "a", "contact_id": "c", "metadata": {"x": -1e999}}',
        '{"agent_id": "a", "contact_id": "c", "audio_url": "http://[::1"}',
        '{"agent_id": "a", "contact_id": "c", "audio_url": "http://127.0.0.1:99999/x.wav"}',
        '{"agent_id": "a", "contact_id": "c", "audio_url": "http://127.0.0.1:0/x.wav"}',
        '{"agent_id": "a\\u0000", "contact_id": "\\ud800", "audio_url": "ftp://x"}',
        '{"agent_id": NaN}',
        "[]",
        '"x"',
        "",
    ],
)
def test_odd_json_values_are_a_4xx(api: Api, text: str) -> None:
    for path in SUBMIT_PATHS:
        check(post_json_text(api, text, path))


@pytest.mark.parametrize(("path", "methods"), SERVED.items())
def test_405_lists_every_method_the_path_serves(api: Api, path: str, methods: set[str]) -> None:
    for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods):
        response = api.session.request(method, api.base + path, headers=api.auth(), timeout=30)
        check(response)
        assert response.status_code == 405, (method, path)
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert methods <= allowed, (method, path, allowed)
        assert allowed - methods <= {"HEAD", "OPTIONS"}, (method, path, allowed)


# -- property-based fuzzing ----------------------------------------------------------------------------

# Text that HTTP clients can send in a query or a form (no surrogates); short, to stay within URL limits.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
NUMBERS = st.one_of(st.integers(), st.integers(min_value=-(2**70), max_value=2**70), st.floats())
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
# A valid HTTP header value: visible ASCII, inner spaces. (Control characters in a header, like a request
# line over uvicorn's limit, are refused by the HTTP server itself with a plain-text 400 before any app
# runs: not the emulator's answer, so not fuzzed here.)
HEADER_VALUE = st.from_regex(r"[!-~]([ -~]{0,38}[!-~])?", fullmatch=True)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)),
    max_leaves=12,
)


@pytest.mark.parametrize("callcov_quota_mode", QUOTA_MODES, indirect=True)
@FUZZ
@given(
    params=st.dictionaries(
        st.one_of(st.sampled_from(QUERY), TEXT), st.one_of(TEXT, NUMBERS.map(str)), max_size=6
    )
)
def test_fuzz_list_queries(api: Api, callcov_quota_mode: str, params: dict[str, str]) -> None:
    # In documented mode the 100 requests/min quota runs out part-way: its 429s are checked too.
    check(api.session.get(api.base + "/analysis/", headers=api.auth(), params=params, timeout=30))


@pytest.mark.parametrize("callcov_quota_mode", QUOTA_MODES, indirect=True)
@FUZZ
@given(
    path=st.sampled_from(SUBMIT_PATHS),
    body=st.one_of(
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), JSON_VALUES, max_size=7),
        JSON_VALUES,
    ),
)
def test_fuzz_json_submissions(api: Api, callcov_quota_mode: str, path: str, body: Any) -> None:
    text = json.dumps(body, allow_nan=True)
    check(post_json_text(api, text, path))


@FUZZ
@given(
    path=st.sampled_from(SUBMIT_PATHS),
    fields=st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), TEXT, max_size=6),
    filename=TEXT,
    content=st.binary(max_size=64),
    with_file=st.booleans(),
)
def test_fuzz_multipart_submissions(
    api: Api, path: str, fields: dict[str, str], filename: str, content: bytes, with_file: bool
) -> None:
    files = {"audio_file": (filename or "x", content)} if with_file else {"other": ("x", b"")}
    response = api.session.post(api.base + path, headers=api.auth(), data=fields, files=files, timeout=30)
    check(response)


@FUZZ
@given(
    path=st.sampled_from(SUBMIT_PATHS),
    content_type=st.one_of(
        st.sampled_from(
            [
                "application/json",
                "multipart/form-data",
                "multipart/form-data; boundary=x",
                "application/json; charset=latin-1",
                "text/plain",
                "",
            ]
        ),
        HEADER_VALUE,
    ),
    body=st.binary(max_size=256),
)
def test_fuzz_raw_bodies(api: Api, path: str, content_type: str, body: bytes) -> None:
    headers = {**api.auth(), "Content-Type": content_type}
    check(api.session.post(api.base + path, headers=headers, data=body, timeout=30))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
    path=st.one_of(
        st.sampled_from(list(SERVED)),
        TEXT.map(lambda t: "/analysis/" + requests.utils.quote(t, safe="")),
        TEXT.map(lambda t: "/calls/analyze/" + requests.utils.quote(t, safe="")),
    ),
    idempotency_key=st.one_of(st.none(), HEADER_VALUE),
)
def test_fuzz_methods_paths_and_headers(
    emu: EmulatorHandle, api: Api, method: str, path: str, idempotency_key: str | None
) -> None:
    headers = api.auth()
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = api.session.request(method, api.base + path, headers=headers, json={}, timeout=30)
    if method == "HEAD":
        assert response.status_code < 500
    else:
        check(response)
