"""
One httpx client and one in-flight limit per event loop, shared by every hook on that loop.

A triggerer runs hundreds of CallCov triggers in one event loop. A client per trigger would mean a
connection (and TLS handshake) per trigger, and hundreds of answers arriving in the same instant would
be handled in one burst that stalls every other trigger of the deployment. Sharing one connection pool
and letting at most :data:`MAX_IN_FLIGHT` requests run at once keeps the loop responsive (measured in
``benchmarks/``, row 2). Authentication is added per request, so hooks of different connections can
share the client safely; it keeps no cookies for the same reason. Each loop's clients are closed
when the loop shuts down, so short-lived loops (``asyncio.run`` in a task) leave no sockets behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import ssl
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

#: Requests one event loop lets run at once; the others wait their turn without touching the loop.
MAX_IN_FLIGHT = 32


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One SSL context per process: building one costs ~20 ms of blocking I/O, too much per client."""
    return ssl.create_default_context()


class _RefuseCookies(http.cookiejar.DefaultCookiePolicy):
    """Accept no cookie and send none: the API authenticates by key, and a client serves many keys."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def cookieless_jar() -> http.cookiejar.CookieJar:
    """A cookie jar that stays empty, so no cookie one connection's answer set reaches another's request."""
    return http.cookiejar.CookieJar(policy=_RefuseCookies())


def refuse_cookies(jar: http.cookiejar.CookieJar) -> None:
    """Make an existing jar (a ``requests.Session``'s) keep no cookie."""
    jar.set_policy(_RefuseCookies())
    jar.clear()


@dataclass
class _LoopPool:
    clients: dict[tuple[float, float, str], httpx.AsyncClient] = field(default_factory=dict)
    in_flight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_IN_FLIGHT))
    closer: asyncio.Task[None] | None = None


# A pool's open connections refer to their loop, so entries are removed explicitly: when the loop shuts
# down (see ``_close_at_shutdown``), or, for a loop closed without shutting its tasks down, on the next use
# of any loop. Weak keys only spare a loop that never opened a connection.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, pool: _LoopPool) -> None:
    """
    Wait for the loop's shutdown, then close its clients.

    ``asyncio.run`` (and so the triggerer, and ``dag.test``'s inline triggers) cancels every task left
    when its main coroutine returns, before closing the loop: that cancellation is this task's signal.
    """
    try:
        await loop.create_future()  # never resolved: only cancellation ends the wait
    finally:
        if _POOLS.get(loop) is pool:
            del _POOLS[loop]
        clients = list(pool.clients.values())
        pool.clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()


def _forget_closed_loops() -> None:
    # A loop closed without cancelling its tasks never ran its closer: release it to the garbage collector.
    for loop in [loop for loop in list(_POOLS.keys()) if loop.is_closed()]:
        pool = _POOLS.pop(loop, None)
        if pool is not None and pool.closer is not None:
            # Its closer can never run now; asyncio need not warn that the task died waiting.
            pool.closer._log_destroy_pending = False  # type: ignore[attr-defined]


def _pool() -> _LoopPool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        _forget_closed_loops()
        pool = _POOLS[loop] = _LoopPool()
        pool.closer = loop.create_task(_close_at_shutdown(loop, pool), name="callcov-close-shared-clients")
    return pool


def open_pools() -> int:
    """How many event loops hold shared clients (for tests and diagnostics)."""
    return len(_POOLS)


async def shared_client(*, connect_timeout: float, read_timeout: float, user_agent: str) -> httpx.AsyncClient:
    """
    The running loop's client for these timeouts, created on first use.

    The client lives as long as its loop (a triggerer's loop lives as long as the triggerer) and is closed
    when the loop shuts down; it is never closed by a hook. It keeps no cookies: it serves every connection
    and key on the loop.
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
    """An ``httpx.AsyncClient`` with the provider's timeouts and headers, and no cookie jar to share."""
    import httpx

    return httpx.AsyncClient(
        verify=verify,
        transport=transport,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        headers={"User-Agent": user_agent, "Accept": "application/json"},
        cookies=cookieless_jar(),
        follow_redirects=False,
    )


def in_flight_limit() -> asyncio.Semaphore:
    """The running loop's limit on requests in flight."""
    return _pool().in_flight
