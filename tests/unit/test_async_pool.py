"""The per-loop shared async clients: closed with their loop, and never carrying cookies between accounts."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil
import pytest

from callcov_provider.hooks import async_pool
from callcov_provider.hooks.callcov import CallCovHook
from tests.unit.conftest import COMPLETED_002, set_connection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client that is never closed keeps its socket open
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps(COMPLETED_002).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # A session cookie naming whose key asked, as a load balancer or gateway might set.
        self.send_header("Set-Cookie", f"session={self.headers.get('X-API-Key')}; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _client_sockets() -> int:
    """This process's TCP sockets that are connected to a peer (the server's side included)."""
    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr)


def test_shared_clients_close_with_their_loop(
    server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    set_connection(monkeypatch, host=url)

    async def poll_once() -> None:
        hook = CallCovHook()
        await hook.aget_analysis(COMPLETED_002["id"])

    asyncio.run(poll_once())  # warm up imports and the SSL context
    gc.collect()
    before = _client_sockets()
    for _ in range(20):
        asyncio.run(poll_once())
    gc.collect()
    assert len(seen) == 21
    # Every loop is gone, and so are its client and the client's connections (both ends on loopback).
    assert _client_sockets() <= before
    assert async_pool.open_pools() == 0


def test_a_cookie_set_for_one_account_is_never_sent_with_another_key(
    server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    set_connection(monkeypatch, conn_id="account_a", host=url, password="key-of-account-a")
    set_connection(monkeypatch, conn_id="account_b", host=url, password="key-of-account-b")

    async def both() -> None:
        # Both hooks on one loop: they share the loop's client.
        await CallCovHook("account_a").aget_analysis(COMPLETED_002["id"])
        await CallCovHook("account_b").aget_analysis(COMPLETED_002["id"])
        await CallCovHook("account_a").aget_analysis(COMPLETED_002["id"])

    asyncio.run(both())
    assert [h["x-api-key"] for h in seen] == ["key-of-account-a", "key-of-account-b", "key-of-account-a"]
    # No request carries a cookie: not A's with B's key, and not even A's own (nothing is kept).
    assert [h.get("cookie") for h in seen] == [None, None, None]


def test_the_sync_session_keeps_no_cookies(
    server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    set_connection(monkeypatch, host=url)
    hook = CallCovHook()
    try:
        hook.get_analysis(COMPLETED_002["id"])
        hook.get_analysis(COMPLETED_002["id"])
    finally:
        hook.close()
    assert [h.get("cookie") for h in seen] == [None, None]


def test_a_loop_closed_without_shutdown_is_released_on_next_use(
    server: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = server
    set_connection(monkeypatch, host=url)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(CallCovHook().aget_analysis(COMPLETED_002["id"]))
    loop.close()  # no asyncio.run: the closer task never ran
    assert async_pool.open_pools() == 1

    async def poll_once() -> None:
        await CallCovHook().aget_analysis(COMPLETED_002["id"])

    asyncio.run(poll_once())
    assert async_pool.open_pools() == 0
