"""
The API's fixed addresses, kept apart from :mod:`callcov_provider.models` so that reading them imports
nothing: Airflow loads the provider info (and the connection form built from these) in every process.
"""

DEFAULT_BASE_URL = "https://api.callcov.com/api/v1"
DEFAULT_DASHBOARD_URL = "https://app.callcov.com"

#: Submit paths of the two API generations (shared README: the provider submits to ``/analysis/``).
SUBMIT_PATH = "/analysis/"
LEGACY_SUBMIT_PATH = "/calls/analyze"

#: The connection id every CallCov hook, operator, sensor and trigger uses unless told otherwise
#: (``CallCovHook.default_conn_name``).
DEFAULT_CONN_ID = "callcov_default"
