"""Provider metadata for Airflow's ``ProvidersManager`` (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata: package, integration, modules, extra links and connection form."""
    from callcov_provider.connection_form import CONN_FIELDS, ui_field_behaviour_for_provider_info
    from callcov_provider.version import __version__

    return {
        "package-name": "airflow-provider-callcov",
        "name": "CallCov",
        "description": "Run CallCov call-recording analysis (transcripts, compliance, quality, coaching) "
        "from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "CallCov",
                "external-doc-url": "https://docs.callcov.com",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "CallCov", "python-modules": ["callcov_provider.hooks.callcov"]}],
        "operators": [
            {
                "integration-name": "CallCov",
                "python-modules": [
                    "callcov_provider.operators.submit",
                    "callcov_provider.operators.batch",
                    "callcov_provider.operators.list_analyses",
                ],
            }
        ],
        "sensors": [{"integration-name": "CallCov", "python-modules": ["callcov_provider.sensors.analysis"]}],
        "triggers": [
            {
                "integration-name": "CallCov",
                "python-modules": ["callcov_provider.triggers.analysis", "callcov_provider.triggers.events"],
            }
        ],
        "extra-links": ["callcov_provider.links.CallCovAnalysisLink"],
        "connection-types": [
            {
                "hook-class-name": "callcov_provider.hooks.callcov.CallCovHook",
                "hook-name": "CallCov",
                "connection-type": "callcov",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": ui_field_behaviour_for_provider_info(),
            }
        ],
    }
