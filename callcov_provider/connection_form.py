"""
The CallCov connection form, defined once as plain data.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from :func:`get_provider_info` and builds
the form without importing the hook. Older Airflow versions (2.11, 3.0, 3.1) call the hook's
``get_connection_form_widgets``, which builds its wtforms fields from :data:`CONN_FIELDS` (each JSON-schema
type mapped by :data:`WTFORMS_FIELD_CLASSES`), and ``get_ui_field_behaviour``, which returns
:data:`UI_FIELD_BEHAVIOUR`: one definition, so the forms cannot drift. Nothing here imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callcov_provider.constants import (
    DEFAULT_BASE_URL,
    DEFAULT_DASHBOARD_URL,
    LEGACY_SUBMIT_PATH,
    SUBMIT_PATH,
)

#: Connection extras, as JSON-schema fields (``extra__callcov__<name>`` in the form).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth_type": {
        "label": "Auth type",
        "description": "api_key sends X-API-Key; bearer sends Authorization: Bearer.",
        "schema": {"type": ["string", "null"], "enum": ["api_key", "bearer"], "default": "api_key"},
    },
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 10},
    },
    "read_timeout": {
        "label": "Read timeout (seconds)",
        "description": "How long to wait for an answer; uploads allow for the time to send the file too.",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "submit_path": {
        "label": "Submit path",
        "description": "/analysis/ (current API) or /calls/analyze (older generation).",
        "schema": {
            "type": ["string", "null"],
            "enum": [SUBMIT_PATH, LEGACY_SUBMIT_PATH],
            "default": SUBMIT_PATH,
        },
    },
    "dashboard_url": {
        "label": "Dashboard URL",
        "description": "Where the 'CallCov Analysis' link points.",
        "schema": {"type": ["string", "null"], "default": DEFAULT_DASHBOARD_URL},
    },
    "max_retries": {
        "label": "Max retries",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
    },
    "retry_deadline": {
        "label": "Retry deadline (seconds)",
        "schema": {"type": ["number", "null"], "default": 300},
    },
    "retry_ambiguous_posts": {
        "label": "Retry ambiguous submissions",
        "description": (
            "Retry a submission whose outcome is unknown; safe because every POST has an idempotency key."
        ),
        "schema": {"type": ["boolean", "null"], "default": True},
    },
}

#: Which standard fields to hide, relabel and fill with placeholders.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port", "login"],
    "relabeling": {"host": "API base URL", "password": "API key or token"},
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "password": "sk_live_...",
        "auth_type": "api_key",
        "submit_path": SUBMIT_PATH,
        "dashboard_url": DEFAULT_DASHBOARD_URL,
    },
}


#: The wtforms field class of each JSON-schema type, for ``get_connection_form_widgets`` (Airflow < 3.2).
#: Airflow accepts only ``StringField``, ``IntegerField``, ``PasswordField`` and ``BooleanField`` there (it
#: drops a hook with any other field class), so a number is entered as text; enums become a validator.
WTFORMS_FIELD_CLASSES: dict[str, str] = {
    "string": "StringField",
    "number": "StringField",
    "integer": "IntegerField",
    "boolean": "BooleanField",
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
