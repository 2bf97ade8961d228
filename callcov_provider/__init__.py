"""
Apache Airflow provider for CallCov call-recording analysis.

The public classes are exported lazily, so ``import callcov_provider`` (which Airflow does while
discovering providers) stays cheap: a DAG file pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from callcov_provider.version import __version__

if TYPE_CHECKING:
    from callcov_provider.hooks.callcov import CallCovHook
    from callcov_provider.operators.batch import SubmitAnalysisBatchOperator
    from callcov_provider.operators.list_analyses import ListAnalysesOperator
    from callcov_provider.operators.submit import SubmitAnalysisOperator
    from callcov_provider.sensors.analysis import AnalysisCompletedSensor
    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
    from callcov_provider.triggers.events import AnalysisEventTrigger

_LAZY: dict[str, str] = {
    "CallCovHook": "callcov_provider.hooks.callcov",
    "SubmitAnalysisOperator": "callcov_provider.operators.submit",
    "SubmitAnalysisBatchOperator": "callcov_provider.operators.batch",
    "ListAnalysesOperator": "callcov_provider.operators.list_analyses",
    "AnalysisCompletedSensor": "callcov_provider.sensors.analysis",
    "AnalysisCompletedTrigger": "callcov_provider.triggers.analysis",
    "AnalysisEventTrigger": "callcov_provider.triggers.events",
}

__all__ = [
    "AnalysisCompletedSensor",
    "AnalysisCompletedTrigger",
    "AnalysisEventTrigger",
    "CallCovHook",
    "ListAnalysesOperator",
    "SubmitAnalysisBatchOperator",
    "SubmitAnalysisOperator",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callcov_provider' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
