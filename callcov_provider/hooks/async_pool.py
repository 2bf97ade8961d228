"""
One httpx client and one in-flight limit per event loop, shared by every hook on that loop.

A triggerer runs hundreds of CallCov triggers in one event loop. A client per trigger would mean a
connection (and TLS handshake) per trigger, and hundreds of answers arriving in the same instant would
be handled in one burst that stalls every other trigger of the deployment. Sharing one connection pool
and letting at most :data:`MAX_IN_FLIGHT` requests run at once keeps the loop responsive (measured in
``benchmarks/``, row 2). Authentication is added per request, so hooks of different connections can
share the client safely.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

#: Requests one event loop lets run at once; the others wait their turn without touching the loop.
MAX_IN_FLIGHT = 32


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One SSL context per process: building one costs ~20 ms of blocking I/O, too much per client."""
    return ssl.create_default_context()


@dataclass
class _LoopPool:
    clients: dict[tuple[float, float, str], httpx.AsyncClient] = field(default_factory=dict)
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()


def _pool() -> _LoopPool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _LoopPool()
    return pool


async def shared_client(*, connect_timeout: float, read_timeout: float, user_agent: str) -> httpx.AsyncClient:
    """
    The running loop's client for these timeouts, created on first use.

    The client lives as long as its loop (a triggerer's loop lives as long as the triggerer); it is never
    closed by a hook.
    """
    pool = _pool()
    key = (connect_timeout, read_timeout, user_agent)
    client = pool.clients.get(key)
    if client is None:
        context = await asyncio.to_thread(shared_ssl_context)
        client = build_client(
            connect_timeout=connect_timeout, read_timeout=read_timeout, user_agent=user_agent, verify=context
        )
        # Another coroutine may have built one while this one waited for the SSL context.
        winner = pool.clients.setdefault(key, client)
        if winner is not client:
            await client.aclose()
        client = winner
    return client


def build_client(
    *,
    connect_timeout: float,
    read_timeout: float,
    user_agent: str,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with the provider's timeouts and headers."""
    import httpx

    return httpx.AsyncClient(
        verify=verify,
        transport=transport,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        headers={"User-Agent": user_agent, "Accept": "application/json"},
        follow_redirects=False,
    )


def in_flight_limit() -> asyncio.Semaphore:
    """The running loop's limit on requests in flight."""
    return _pool().in_flight
