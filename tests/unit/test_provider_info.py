"""Provider metadata, as Airflow's own ProvidersManager loads it."""

from __future__ import annotations

import warnings

import pytest

from callcov_provider.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR, ConnectionExtras, schema_type
from callcov_provider.get_provider_info import get_provider_info
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.hooks.retry import RetryPolicy
from callcov_provider.version import __version__
from callcov_provider.version_compat import AIRFLOW_V_3_2_PLUS

HOOK_CLASS = "callcov_provider.hooks.callcov.CallCovHook"


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
    assert auth.package_name == "airflow-provider-callcov"
    assert not any(w.is_sensitive for k, w in widgets.items() if k.startswith("extra__callcov__"))
    retry_posts = widgets["extra__callcov__retry_ambiguous_posts"]
    if AIRFLOW_V_3_2_PLUS:
        # Declarative: read from the provider info's conn-fields, without importing the hook.
        assert auth.hook_class_name == HOOK_CLASS
        assert auth.field["schema"]["enum"] == ["api_key", "bearer"]
        # No pre-filled value: it would be saved into every connection. The default is a placeholder.
        assert auth.field["value"] is None
        # A choice that can stay unset, not a switch that looks "off" while the default is on.
        assert retry_posts.field["schema"]["type"] == ["string", "null"]
        assert retry_posts.field["schema"]["enum"] == ["true", "false"]
        assert retry_posts.field["description"].endswith("Default: true.")
    else:
        # Airflow 2.11, 3.0 and 3.1 call the hook's get_connection_form_widgets(): wtforms fields, filed
        # under the hook's bare class name.
        assert auth.hook_class_name == "CallCovHook"
        assert auth.field.field_class.__name__ == "StringField"
        assert "default" not in auth.field.kwargs
        # Text, not a checkbox: an unticked checkbox would save "false" into every connection.
        assert retry_posts.field.field_class.__name__ == "StringField"


def test_field_behaviours(manager) -> None:  # type: ignore[no-untyped-def]
    # From ui-field-behaviour on Airflow 3.2+, from the hook's get_ui_field_behaviour() before: the same.
    behaviour = manager.field_behaviours["callcov"]
    assert behaviour["hidden_fields"] == ["schema", "login"]
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert behaviour["relabeling"]["password"] == "API key or token"
    assert behaviour["placeholders"]["host"] == "https://api.callcov.com/api/v1"
    # Every extra's default, from the one model, shown as a placeholder.
    defaults = ConnectionExtras()
    for name in CONN_FIELDS:
        shown = behaviour["placeholders"][f"extra__callcov__{name}"]
        assert shown == str(getattr(defaults, name)).lower() or shown == str(getattr(defaults, name)), name
    assert behaviour["placeholders"]["extra__callcov__auth_type"] == "api_key"
    assert behaviour["placeholders"]["extra__callcov__submit_path"] == "/analysis/"
    assert behaviour["placeholders"]["extra__callcov__max_retries"] == str(RetryPolicy().max_retries)


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


class FormData(dict[str, str]):
    """Posted form data, as wtforms reads it."""

    def getlist(self, key: str) -> list[str]:
        return [self[key]]


def test_hook_form_widgets_and_declarative_conn_fields_agree() -> None:
    """
    ``get_connection_form_widgets()`` (the form on Airflow 2.11, 3.0 and 3.1) and ``conn-fields`` (3.2+)
    describe the same form: names and order, labels, wtforms types, descriptions, defaults and choices.
    """
    from wtforms import Form, IntegerField, StringField
    from wtforms.validators import AnyOf, Optional

    widgets = CallCovHook.get_connection_form_widgets()
    assert list(widgets) == list(CONN_FIELDS)
    classes = {"string": StringField, "number": StringField, "integer": IntegerField, "boolean": StringField}
    for name, spec in CONN_FIELDS.items():
        field, schema = widgets[name], spec["schema"]
        assert field.field_class is classes[schema_type(spec)], name
        assert str(field.args[0]) == spec["label"], name
        assert field.kwargs["description"] == spec.get("description", ""), name
        # Defaults are placeholders in both forms, never values saved into the connection.
        assert "default" not in field.kwargs, name
        assert "default" not in schema, name
        validators = field.kwargs["validators"]
        assert isinstance(validators[0], Optional), name
        choices = [list(v.values) for v in validators if isinstance(v, AnyOf)]
        assert choices == ([schema["enum"]] if "enum" in schema else []), name

    form_class = type("CallCovExtras", (Form,), dict(widgets))
    refused = form_class(FormData(auth_type="digest", submit_path="/v2/"))
    assert not refused.validate()
    assert set(refused.errors) == {"auth_type", "submit_path"}
    accepted = form_class(FormData(auth_type="bearer", max_retries="3", read_timeout="", retry_deadline="90"))
    assert accepted.validate(), accepted.errors
    assert accepted.data["max_retries"] == 3


def test_no_deprecation_warning_for_our_hook(manager) -> None:  # type: ignore[no-untyped-def]
    """
    Airflow 3.2+ deprecates a hook's ``get_connection_form_widgets()`` and ``get_ui_field_behaviour()``
    and warns when it imports a hook defining them, unless the provider info carries ``conn-fields`` or
    ``ui-field-behaviour``: then it reads those and never calls the methods. Ours carries both, so
    importing our hook warns on no version (Airflow 2.11 to 3.1 call the methods and never warn).
    """
    from airflow.exceptions import AirflowProviderDeprecationWarning

    assert "get_connection_form_widgets" in CallCovHook.__dict__  # what 3.2+ would warn about
    provider = manager.providers["airflow-provider-callcov"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = manager._import_hook(connection_type="callcov", provider_info=provider)
    assert info is not None
    assert info.hook_class_name == HOOK_CLASS
    ours = [
        w
        for w in caught
        if issubclass(w.category, AirflowProviderDeprecationWarning) and "CallCovHook" in str(w.message)
    ]
    assert ours == [], [str(w.message) for w in ours]
