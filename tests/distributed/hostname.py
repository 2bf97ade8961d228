"""
``[core] hostname_callable`` of the distributed suite: every component runs on this one machine, so each
gets its own name (``worker1``, ``triggerer2``, ...) from ``CALLCOV_COMPONENT``; a task instance's
``hostname`` then says which Celery worker ran it, and a triggerer job's which triggerer it is.
"""

from __future__ import annotations

import os
import socket


def component_name() -> str:
    return os.environ.get("CALLCOV_COMPONENT") or socket.getfqdn()
