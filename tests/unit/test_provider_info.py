"""Provider metadata, as Airflow's own ProvidersManager loads it."""

from __future__ import annotations

import warnings

import pytest

from callcov_provider.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from callcov_provider.get_provider_info import get_provider_info
from callcov_provider.version import __version__


@pytest.fixture(scope="module")
def manager():  # type: ignore[no-untyped-def]
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_provider_is_discovered_through_its_entry_point(manager) -> None:  # type: ignore[no-untyped-def]
    provider = manager.providers["airflow-provider-callcov"]
    assert provider.version == __version__
    assert provider.data["package-name"] == "airflow-provider-callcov"
    assert provider.data["connection-types"][0]["connection-type"] == "callcov"
    assert provider.data["hooks"] == [
        {"integration-name": "CallCov", "python-modules": ["callcov_provider.hooks.callcov"]}
    ]


def test_hook_is_registered_for_the_callcov_connection_type(manager) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ProvidersManager.hooks is deprecated in favour of the task SDK's
        info = manager.hooks["callcov"]
    assert info is not None
    assert info.hook_class_name == "callcov_provider.hooks.callcov.CallCovHook"
    assert info.connection_id_attribute_name == "callcov_conn_id"
    assert info.hook_name == "CallCov"
    assert info.package_name == "airflow-provider-callcov"
    assert info.connection_testable is True


def test_connection_form_widgets_carry_every_callcov_field(manager) -> None:  # type: ignore[no-untyped-def]
    widgets = manager.connection_form_widgets
    names = {key.removeprefix("extra__callcov__") for key in widgets if key.startswith("extra__callcov__")}
    assert names == set(CONN_FIELDS) >= {"auth_type", "connect_timeout", "read_timeout", "submit_path"}
    auth = widgets["extra__callcov__auth_type"]
    assert auth.hook_class_name == "callcov_provider.hooks.callcov.CallCovHook"
    assert auth.package_name == "airflow-provider-callcov"
    assert auth.field["schema"]["enum"] == ["api_key", "bearer"]
    assert auth.field["value"] == "api_key"
    assert widgets["extra__callcov__retry_ambiguous_posts"].field["schema"]["type"] == ["boolean", "null"]
    assert not any(w.is_sensitive for k, w in widgets.items() if k.startswith("extra__callcov__"))


def test_field_behaviours(manager) -> None:  # type: ignore[no-untyped-def]
    behaviour = manager.field_behaviours["callcov"]
    assert behaviour["hidden_fields"] == ["schema", "port", "login"]
    assert behaviour["relabeling"] == {"host": "API base URL", "password": "API key or token"}
    assert behaviour["placeholders"]["host"] == "https://api.callcov.com/api/v1"
    assert behaviour["placeholders"]["extra__callcov__auth_type"] == "api_key"
    assert behaviour["placeholders"]["extra__callcov__submit_path"] == "/analysis/"


def test_provider_info_is_plain_data() -> None:
    info = get_provider_info()
    connection = info["connection-types"][0]
    assert connection["hook-class-name"] == "callcov_provider.hooks.callcov.CallCovHook"
    assert connection["conn-fields"]["auth_type"]["schema"]["enum"] == ["api_key", "bearer"]
    assert connection["conn-fields"]["submit_path"]["schema"]["enum"] == ["/analysis/", "/calls/analyze"]
    assert connection["ui-field-behaviour"] == {
        "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }
    assert info["versions"] == [__version__]
