"""Connection parsing: base URL, extras, auth modes, and refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from callcov_provider.exceptions import ConnectionConfigError
from callcov_provider.hooks.config import (
    ClientSettings,
    normalise_base_url,
    parse_extras,
    settings_from_connection,
)
from callcov_provider.hooks.retry import RetryPolicy
from tests.unit.conftest import KEY


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://api.callcov.com/api/v1"),
        ("  ", None, "https://api.callcov.com/api/v1"),
        ("api.callcov.com", None, "https://api.callcov.com/api/v1"),
        ("http://localhost:8080", None, "http://localhost:8080/api/v1"),
        ("http://localhost:8080/", None, "http://localhost:8080/api/v1"),
        ("https://proxy.test/callcov/api/v1/", None, "https://proxy.test/callcov/api/v1"),
        ("http://localhost", 9000, "http://localhost:9000/api/v1"),
        ("http://localhost:8080", 9000, "http://localhost:8080/api/v1"),
        ("http://[::1]:8080/api/v1", None, "http://[::1]:8080/api/v1"),
    ],
)
def test_base_url_normalisation(host: str | None, port: int | None, expected: str) -> None:
    assert normalise_base_url(host, port) == expected


@pytest.mark.parametrize(
    "host",
    [
        "ftp://api.callcov.com",
        "http://",
        "http://exa mple.com/api",
        "https://api.callcov.com:99999",
        "https://api.callcov.com:port",
        "http://[::1",
        "https://api.callcov.com/api/v1?token=abc",
        "https://user:pw@api.callcov.com/api/v1",
    ],
)
def test_malformed_host_is_a_connection_error_naming_host(host: str) -> None:
    with pytest.raises(ConnectionConfigError) as info:
        normalise_base_url(host)
    assert info.value.field == "host"
    assert "pw" not in str(info.value)
    assert "token=abc" not in str(info.value)


def _settings(**extras: Any) -> ClientSettings:
    return settings_from_connection(
        conn_id="c", host="https://api.test/api/v1", port=None, password=KEY, extras=extras
    )


def test_defaults() -> None:
    settings = _settings()
    assert settings.base_url == "https://api.test/api/v1"
    assert settings.auth_type == "api_key"
    assert settings.auth_headers() == {"X-API-Key": KEY}
    assert (settings.connect_timeout, settings.read_timeout) == (10.0, 60.0)
    assert settings.submit_path == "/analysis/"
    assert settings.dashboard_url == "https://app.callcov.com"
    assert settings.retry_policy == RetryPolicy()
    assert settings.url("/analysis/x") == "https://api.test/api/v1/analysis/x"
    assert settings.secrets == (KEY,)


def test_every_extra_is_read() -> None:
    settings = _settings(
        auth_type=" Bearer ",
        connect_timeout="2.5",
        read_timeout=30,
        submit_path="/calls/analyze",
        dashboard_url="https://dash.test/",
        max_retries="2",
        retry_deadline=45,
        retry_ambiguous_posts="false",
    )
    assert settings.auth_type == "bearer"
    assert settings.auth_headers() == {"Authorization": f"Bearer {KEY}"}
    assert (settings.connect_timeout, settings.read_timeout) == (2.5, 30.0)
    assert settings.submit_path == "/calls/analyze"
    assert settings.dashboard_url == "https://dash.test"
    assert settings.retry_policy == RetryPolicy(max_retries=2, deadline=45.0, retry_ambiguous_posts=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("yes", True), ("0", False), ("OFF", False), ("", True), (None, True)],
)
def test_boolean_extra(value: Any, expected: bool) -> None:
    assert _settings(retry_ambiguous_posts=value).retry_policy.retry_ambiguous_posts is expected


def test_settings_repr_hides_the_key() -> None:
    settings = _settings(auth_type="bearer")
    assert KEY not in repr(settings)
    assert KEY not in str(settings)


@pytest.mark.parametrize(
    ("password", "extras", "field"),
    [
        (None, {}, "password"),
        ("   ", {}, "password"),
        (KEY, {"auth_type": "basic"}, "auth_type"),
        (KEY, {"submit_path": "/v2/submit"}, "submit_path"),
        (KEY, {"connect_timeout": "soon"}, "connect_timeout"),
        (KEY, {"read_timeout": 0}, "read_timeout"),
        (KEY, {"max_retries": -1}, "max_retries"),
        (KEY, {"retry_deadline": [1]}, "retry_deadline"),
        (KEY, {"retry_ambiguous_posts": "maybe"}, "retry_ambiguous_posts"),
    ],
)
def test_bad_connection_is_refused_naming_the_field(
    password: str | None, extras: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConnectionConfigError) as info:
        settings_from_connection(conn_id="c", host=None, port=None, password=password, extras=extras)
    assert info.value.field == field
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


def test_parse_extras() -> None:
    assert parse_extras(None) == {}
    assert parse_extras("") == {}
    assert parse_extras('{"extra__callcov__auth_type": "bearer", "read_timeout": 5}') == {
        "auth_type": "bearer",
        "read_timeout": 5,
    }
    assert parse_extras({"extra__callcov__submit_path": "/calls/analyze"}) == {
        "submit_path": "/calls/analyze"
    }
    with pytest.raises(ConnectionConfigError) as info:
        parse_extras("{not json")
    assert info.value.field == "extra"
    with pytest.raises(ConnectionConfigError, match="JSON object"):
        parse_extras("[1, 2]")


# -- one definition of each extra, one flag parser -----------------------------------------------------


def test_extras_defaults_come_from_one_model() -> None:
    from callcov_provider.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR, ConnectionExtras

    defaults = ConnectionExtras()
    settings = _settings()
    assert (settings.auth_type, settings.connect_timeout, settings.read_timeout) == (
        defaults.auth_type,
        defaults.connect_timeout,
        defaults.read_timeout,
    )
    assert settings.retry_policy.max_retries == defaults.max_retries == RetryPolicy().max_retries
    assert settings.retry_policy.deadline == defaults.retry_deadline == RetryPolicy().deadline
    assert set(CONN_FIELDS) == set(ConnectionExtras.model_fields)
    assert UI_FIELD_BEHAVIOUR["placeholders"]["read_timeout"] == str(defaults.read_timeout)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(word, True) for word in ("true", "TRUE", " yes ", "1", "on", "On", 1, True)],
        *[(word, False) for word in ("false", "False", "no", "0", "off", "OFF", 0, False)],
    ],
)
def test_one_flag_parser(value: Any, expected: bool) -> None:
    from callcov_provider.flags import parse_argument_flag, parse_flag

    assert parse_flag(value, "f") is expected
    assert parse_argument_flag(value, "f") is expected
    assert _settings(retry_ambiguous_posts=value).retry_policy.retry_ambiguous_posts is expected


@pytest.mark.parametrize("value", ["maybe", "None", "2", 2, 1.5, [], "enabled"])
def test_flag_parser_refuses_anything_else_naming_the_field(value: Any) -> None:
    from callcov_provider.exceptions import InvalidRequestError
    from callcov_provider.flags import parse_argument_flag, parse_flag

    with pytest.raises(ConnectionConfigError) as info:
        parse_flag(value, "retry_ambiguous_posts")
    assert info.value.field == "retry_ambiguous_posts"
    with pytest.raises(InvalidRequestError) as arg_info:
        parse_argument_flag(value, "fetch_all")
    assert arg_info.value.field == "fetch_all"
    assert "fetch_all" in arg_info.value.message


def test_flag_not_given_is_the_default_or_refused() -> None:
    from callcov_provider.flags import parse_flag

    assert parse_flag(None, "f", default=True) is True
    assert parse_flag("  ", "f", default=False) is False
    with pytest.raises(ConnectionConfigError):
        parse_flag(None, "f")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("https://api.callcov.com/api/v1", 443, "https://api.callcov.com/api/v1"),
        ("http://localhost/api/v1", 80, "http://localhost/api/v1"),
        ("https://api.callcov.com", 8443, "https://api.callcov.com:8443/api/v1"),
    ],
)
def test_the_schemes_own_port_adds_nothing(host: str, port: int, expected: str) -> None:
    # Entering 443 is the way past Airflow 3.3.2's Test button for a connection without a port.
    assert normalise_base_url(host, port) == expected


def test_docs_list_every_extra_with_the_models_default() -> None:
    from pathlib import Path

    from callcov_provider.connection_form import EXTRA_DEFAULTS

    text = (Path(__file__).parents[2] / "docs" / "connection.md").read_text()
    for name, default in EXTRA_DEFAULTS.items():
        assert f"| `{name}` | `{default}` |" in text, name
