"""
Which Airflow this provider runs on, for the few places that differ between 2.11 and 3.x.

The pattern Airflow's own providers use (each keeps a copy of ``version_compat.py`` rather than importing
another provider's): everything else is imported through ``airflow.providers.common.compat``.
"""

from __future__ import annotations


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The running Airflow's ``(major, minor, micro)``, pre-release and local parts dropped."""
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


#: Airflow 3: the task SDK, assets (not datasets), the React UI.
AIRFLOW_V_3_0_PLUS: bool = get_base_airflow_version_tuple() >= (3, 0, 0)
#: Airflow 3.1: ``BaseHook.aget_connection``.
AIRFLOW_V_3_1_PLUS: bool = get_base_airflow_version_tuple() >= (3, 1, 0)
#: Airflow 3.2: the connection form is read from provider info (``conn-fields``), not from the hook.
AIRFLOW_V_3_2_PLUS: bool = get_base_airflow_version_tuple() >= (3, 2, 0)
#: Airflow 3.3: ``ResumableJobMixin`` and its task state store (the durable worker wait).
AIRFLOW_V_3_3_PLUS: bool = get_base_airflow_version_tuple() >= (3, 3, 0)

__all__ = ["AIRFLOW_V_3_0_PLUS", "AIRFLOW_V_3_1_PLUS", "AIRFLOW_V_3_2_PLUS", "AIRFLOW_V_3_3_PLUS"]
