"""
Test CallCov pipelines offline: a local emulator of the CallCov API and the tools around it.

* :class:`~callcov_provider.testing.server.EmulatorLauncher` (and ``run_emulator``, the same as a
  ``with`` block): start and stop it from Python (thread or subprocess);
* ``callcov-emulator``: the console script (:mod:`callcov_provider.testing.cli`);
* :mod:`callcov_provider.testing.pytest_plugin`: the ``callcov_emulator`` / ``callcov_connection`` fixtures;
* :mod:`callcov_provider.testing.audio`: synthetic test recordings;
* :func:`callcov_provider.testing.app.create_app`: the ASGI app itself.

Importing this package is cheap; FastAPI and uvicorn load only with the modules that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callcov_provider.testing.server import EmulatorHandle, EmulatorLauncher, run_emulator

__all__ = ["EmulatorHandle", "EmulatorLauncher", "run_emulator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from callcov_provider.testing import server

        return getattr(server, name)
    raise AttributeError(name)
