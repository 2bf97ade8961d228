"""
Parse untrusted JSON without letting it crash the emulator: bounded nesting, finite numbers only.

Every JSON the emulator reads from a client (a submission body, a ``metadata`` form field) goes through
:func:`loads`, so a hostile body ends in a documented 4xx, never a 5xx: Python's parser gives up with a
``RecursionError`` on deep nesting, and ``NaN``/``Infinity``/``1e999`` cannot be written back as JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting of arrays and objects accepted (a submission and its metadata need a handful).
MAX_DEPTH = 64


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


def loads(text: str | bytes) -> Any:
    """
    ``json.loads`` for client input.

    :raises ValueError: for invalid JSON, ``NaN``/``Infinity``, a number too large for a float, or
        nesting deeper than :data:`MAX_DEPTH` (``json.JSONDecodeError`` for plain syntax errors).
    """
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep") from None
    if depth(value) > MAX_DEPTH:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep")
    return value
