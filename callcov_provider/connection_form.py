"""
The CallCov connection's extras, defined once: :class:`ConnectionExtras`.

Its fields (names, types, defaults, bounds, labels and descriptions) feed everything else:

* the hook configuration (:func:`callcov_provider.hooks.config.settings_from_connection` reads the
  extras through it, so every default and check is this model's);
* the connection form. Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from
  :func:`get_provider_info` and builds the form without importing the hook; older Airflow versions
  (2.11, 3.0, 3.1) call the hook's ``get_connection_form_widgets``, which builds its wtforms fields from
  the same :data:`CONN_FIELDS` (each JSON-schema type mapped by :data:`WTFORMS_FIELD_CLASSES`), and
  ``get_ui_field_behaviour``, which returns :data:`UI_FIELD_BEHAVIOUR`.

The form shows each default as a *placeholder*, never as a pre-filled value: a pre-filled value would be
saved into every connection, and a later change of the default would never reach them. Nothing here
imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from callcov_provider.constants import (
    DEFAULT_BASE_URL,
    DEFAULT_DASHBOARD_URL,
    LEGACY_SUBMIT_PATH,
    SUBMIT_PATH,
)
from callcov_provider.exceptions import ConnectionConfigError
from callcov_provider.flags import parse_flag
from callcov_provider.hooks.retry import RetryPolicy

#: The documented authentication schemes: ``X-API-Key`` or ``Authorization: Bearer``.
AUTH_TYPES = ("api_key", "bearer")


class ConnectionExtras(BaseModel):
    """
    The extras of a CallCov connection, with their defaults and checks.

    An extra that is absent, ``null`` or empty text takes its default. Unknown extras are ignored.

    :param auth_type: ``api_key`` sends ``X-API-Key``; ``bearer`` sends ``Authorization: Bearer``.
    :param connect_timeout: Seconds to wait for a connection.
    :param read_timeout: Seconds to wait for an answer.
    :param submit_path: ``/analysis/`` or the older generation's ``/calls/analyze``.
    :param dashboard_url: Where the "CallCov Analysis" link points.
    :param max_retries: Retries after the first attempt, at most.
    :param retry_deadline: Seconds after the first attempt when no retry starts.
    :param retry_ambiguous_posts: Retry a submission whose outcome is unknown.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    auth_type: str = Field(
        default="api_key",
        title="Auth type",
        json_schema_extra={"enum": list(AUTH_TYPES)},
        description="api_key sends X-API-Key; bearer sends Authorization: Bearer.",
    )
    connect_timeout: float = Field(default=10.0, gt=0, title="Connect timeout (seconds)")
    read_timeout: float = Field(
        default=60.0,
        gt=0,
        title="Read timeout (seconds)",
        description="How long to wait for an answer; uploads allow for the time to send the file too.",
    )
    submit_path: str = Field(
        default=SUBMIT_PATH,
        title="Submit path",
        json_schema_extra={"enum": [SUBMIT_PATH, LEGACY_SUBMIT_PATH]},
        description="/analysis/ (current API) or /calls/analyze (older generation).",
    )
    dashboard_url: str = Field(
        default=DEFAULT_DASHBOARD_URL,
        title="Dashboard URL",
        description="Where the 'CallCov Analysis' link points.",
    )
    # The retry defaults are the retry policy's own.
    max_retries: int = Field(default=RetryPolicy.max_retries, ge=0, title="Max retries")
    retry_deadline: float = Field(default=RetryPolicy.deadline, ge=0, title="Retry deadline (seconds)")
    retry_ambiguous_posts: bool = Field(
        default=RetryPolicy.retry_ambiguous_posts,
        title="Retry ambiguous submissions",
        description=(
            "Retry a submission whose outcome is unknown; safe because every POST has an idempotency key."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: v for k, v in value.items() if not _blank(v)}
        return value

    @field_validator("auth_type", mode="before")
    @classmethod
    def _auth_type_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("auth_type", "submit_path")
    @classmethod
    def _one_of_the_choices(cls, value: str, info: ValidationInfo) -> str:
        choices = _choices(info.field_name or "")
        if choices and value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    @field_validator("retry_ambiguous_posts", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool:
        try:
            return parse_flag(value, "retry_ambiguous_posts")
        except ConnectionConfigError as err:
            raise ValueError(err.message) from None

    @field_validator("dashboard_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> ConnectionExtras:
        """
        Check a connection's extras (already without the form's ``extra__callcov__`` prefix).

        :raises ConnectionConfigError: naming the first extra that is wrong (never echoing its value).
        """
        try:
            return cls.model_validate(dict(extras))
        except ValidationError as err:
            first = err.errors(include_input=False, include_url=False)[0]
            name = str(first["loc"][0]) if first.get("loc") else "extra"
            raise ConnectionConfigError(
                f"connection extra {name!r} is invalid: {_describe(name, first)}", field=name
            ) from None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _describe(name: str, error: Mapping[str, Any]) -> str:
    """A short reason for a refused extra (pydantic's, without its "Value error, " prefix)."""
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def _choices(name: str) -> list[str] | None:
    """The allowed values of the extra ``name``, when it has a list of them."""
    field = ConnectionExtras.model_fields.get(name)
    extra = field.json_schema_extra if field is not None else None
    choices = extra.get("enum") if isinstance(extra, dict) else None
    return [str(choice) for choice in choices] if isinstance(choices, list) else None


def default_text(value: Any) -> str:
    """An extra's default as the form shows it: ``true``/``false`` for a flag, else its text."""
    return str(value).lower() if isinstance(value, bool) else str(value)


#: JSON-schema types of the Python types the extras use.
_JSON_TYPES: dict[Any, str] = {str: "string", float: "number", int: "integer", bool: "boolean"}


def _conn_field(name: str) -> dict[str, Any]:
    """One extra of :class:`ConnectionExtras` as a ``conn-fields`` entry (no default: see the module)."""
    field = ConnectionExtras.model_fields[name]
    choices = _choices(name)
    if field.annotation is bool:
        # A choice, not a switch: the UI draws a boolean as a switch that looks "off" while unset, and the
        # default here is on.
        choices = ["true", "false"]
    kind = "string" if choices else _JSON_TYPES[field.annotation]
    schema: dict[str, Any] = {"type": [kind, "null"]}
    if choices:
        schema["enum"] = choices
    for constraint in field.metadata:
        minimum = getattr(constraint, "ge", None)
        if minimum is not None and kind == "integer":
            schema["minimum"] = minimum
    entry: dict[str, Any] = {"label": field.title or name}
    # The UI shows no placeholder for an extra: the description names the default instead.
    default = default_text(field.default)
    entry["description"] = (
        f"{field.description} Default: {default}." if field.description else f"Default: {default}."
    )
    entry["schema"] = schema
    return entry


#: Connection extras, as JSON-schema fields (``extra__callcov__<name>`` in the form).
CONN_FIELDS: dict[str, dict[str, Any]] = {name: _conn_field(name) for name in ConnectionExtras.model_fields}

#: The defaults of :class:`ConnectionExtras`, as the form shows them (text).
EXTRA_DEFAULTS: dict[str, str] = {
    name: default_text(field.default) for name, field in ConnectionExtras.model_fields.items()
}

#: Which standard fields to hide, relabel and fill with placeholders.
#: The port stays visible: Airflow 3.3.2's Test button answers "Bad Request" for a connection without
#: one (its UI posts port 0 for an empty port); a port of 443 works around it and changes nothing else.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "login"],
    "relabeling": {
        "host": "API base URL",
        "password": "API key or token",
        "port": "Port (optional; 443 for https)",
    },
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "password": "sk_live_...",
        "port": "443",
        **EXTRA_DEFAULTS,
    },
}


#: The wtforms field class of each JSON-schema type, for ``get_connection_form_widgets`` (Airflow < 3.2).
#: Airflow accepts only ``StringField``, ``IntegerField``, ``PasswordField`` and ``BooleanField`` there (it
#: drops a hook with any other field class), so a number is entered as text; enums become a validator.
#: A flag is entered as text too: a checkbox cannot be left empty, so it would save a value.
WTFORMS_FIELD_CLASSES: dict[str, str] = {
    "string": "StringField",
    "number": "StringField",
    "integer": "IntegerField",
    "boolean": "StringField",
}


def schema_type(field: Mapping[str, Any]) -> str:
    """A field's JSON-schema type, without the ``"null"`` that makes every extra optional."""
    types = field["schema"]["type"]
    if isinstance(types, str):
        return types
    (kind,) = [t for t in types if t != "null"]
    return str(kind)


def wtforms_field_class(name: str) -> str:
    """The wtforms field class name of the extra ``name`` of :data:`CONN_FIELDS`."""
    return WTFORMS_FIELD_CLASSES[schema_type(CONN_FIELDS[name])]


def ui_field_behaviour_for_provider_info() -> dict[str, Any]:
    """:data:`UI_FIELD_BEHAVIOUR` with the kebab-case keys that ``provider.yaml`` uses."""
    return {
        "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }
