"""A small synchronous client of the emulator's ``/_emulator`` control and audit API."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx


class EmulatorControl:
    """
    Drive a running emulator: read its request log and analyses, set faults, rate limits and processing,
    move its clock, seed analyses and reset it.

    Every method raises :class:`httpx.HTTPStatusError` if the emulator refuses the call (a 422 names the
    invalid setting).

    :param root_url: The emulator's root URL, e.g. ``http://127.0.0.1:8089`` (no ``/api/v1``).
    :param timeout: Seconds per call.
    """

    def __init__(self, root_url: str, *, timeout: float = 30.0) -> None:
        self.root_url = root_url.rstrip("/")
        self._client = httpx.Client(base_url=f"{self.root_url}/_emulator", timeout=timeout, trust_env=False)

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmulatorControl({self.root_url!r})"

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    # -- reading -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /_emulator/health``: status, clock and counts."""
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def config(self) -> dict[str, Any]:
        """``GET /_emulator/config``: the current settings (account labels, never keys)."""
        result: dict[str, Any] = self._call("GET", "/config")
        return result

    def requests(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        account: str | None = None,
        since: int = 0,
    ) -> list[dict[str, Any]]:
        """
        ``GET /_emulator/requests``: the ``/api/v1`` request log, oldest first.

        Each entry has ``seq``, ``time``, ``method``, ``path``, ``query`` (secrets redacted), ``status``
        (``None`` for a dropped connection), ``auth_mode``, ``account``, ``idempotency_key``, ``fault``,
        ``analysis_id``, ``audio_url`` (redacted) and ``replayed``.

        :param method: Only this method.
        :param path: Only paths starting with this.
        :param account: Only this account label.
        :param since: Only entries with ``seq`` greater than this.
        """
        params = {
            k: v for k, v in {"method": method, "path": path, "account": account}.items() if v is not None
        }
        params["since"] = str(since)
        data: list[dict[str, Any]] = self._call("GET", "/requests", params=params)["data"]
        return data

    def clear_requests(self) -> None:
        """``DELETE /_emulator/requests``: empty the request log."""
        self._call("DELETE", "/requests")

    def analyses(self, *, account: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """
        ``GET /_emulator/analyses``: every analysis, newest first, as ``{"account", "id", "status", ...,
        "analysis": <AnalysisResponse>}``.
        """
        params = {k: v for k, v in {"account": account, "status": status}.items() if v is not None}
        data: list[dict[str, Any]] = self._call("GET", "/analyses", params=params)["data"]
        return data

    def analysis(self, analysis_id: str) -> dict[str, Any]:
        """``GET /_emulator/analyses/{id}``: one analysis with its account."""
        result: dict[str, Any] = self._call("GET", f"/analyses/{analysis_id}")
        return result

    def webhooks(self) -> list[dict[str, Any]]:
        """``GET /_emulator/webhooks``: every webhook delivery attempt."""
        data: list[dict[str, Any]] = self._call("GET", "/webhooks")["data"]
        return data

    def webhook_sink(self) -> list[dict[str, Any]]:
        """``GET /_emulator/webhook-sink``: the events the built-in receiver accepted."""
        data: list[dict[str, Any]] = self._call("GET", "/webhook-sink")["data"]
        return data

    # -- settings ----------------------------------------------------------------------------------

    def _settings(self, path: str, replace: bool, fields: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT" if replace else "POST", path, json=fields)
        return result

    def set_faults(self, *, replace: bool = False, **fields: Any) -> dict[str, Any]:
        """
        Change the faults (``POST``, merged) or, with ``replace=True``, set exactly these (``PUT``).

        Fields: ``error_rates={503: 0.1}``, ``burst_429``, ``retry_after``, ``latency`` (seconds or
        ``"0.01-0.2"``), ``latency_rate``, ``drop_rate``, ``lose_rate``, ``lose_mode`` (``"503"`` or
        ``"drop"``), ``next_errors=[503, 502]``, ``drop_next``, ``lose_next``.

        :return: The new settings.
        """
        if "error_rates" in fields:
            fields["error_rates"] = {str(k): v for k, v in fields["error_rates"].items()}
        return self._settings("/faults", replace, fields)

    def clear_faults(self) -> dict[str, Any]:
        """Remove every fault."""
        return self._settings("/faults", True, {})

    def set_rate_limits(
        self,
        *,
        requests_per_minute: int | None = None,
        submissions_per_minute: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """
        Set both per-account limits (``None`` turns one off, or in ``documented`` mode falls back to the
        documented default) and any other rate-limit setting given; settings not named are kept.

        Other fields: ``mode`` (``"friendly"`` or ``"documented"``), ``plan`` (``"free"``, ``"starter"``,
        ``"business"``, ``"enterprise"`` or ``None``), ``concurrent_processing``, ``reset_format``
        (``"epoch"``, ``"epoch_ms"`` or ``"delta"``).

        :return: The new settings.
        """
        return self._settings(
            "/rate-limits",
            False,
            {
                "requests_per_minute": requests_per_minute,
                "submissions_per_minute": submissions_per_minute,
                **fields,
            },
        )

    def set_quota_mode(self, mode: str, *, plan: str | None = None, **fields: Any) -> dict[str, Any]:
        """
        Switch to ``"friendly"`` or ``"documented"`` quotas, optionally with a plan preset, keeping the
        other rate-limit settings.

        :return: The new rate-limit settings.
        """
        return self._settings("/rate-limits", False, {"mode": mode, "plan": plan, **fields})

    def set_processing(
        self,
        *,
        seconds: float | str | tuple[float, float] | None = None,
        failure_rate: float | None = None,
    ) -> dict[str, Any]:
        """
        Change processing for analyses submitted from now on: ``seconds`` (``2``, ``"1-5"`` or ``(1, 5)``)
        and ``failure_rate`` (0 to 1); ``None`` keeps the current value.
        """
        fields: dict[str, Any] = {}
        if seconds is not None:
            fields["seconds"] = list(seconds) if isinstance(seconds, tuple) else seconds
        if failure_rate is not None:
            fields["failure_rate"] = failure_rate
        return self._settings("/processing", False, fields)

    # -- time and data -----------------------------------------------------------------------------

    def set_clock_offset(self, seconds: float) -> dict[str, Any]:
        """``PUT /_emulator/clock``: run the server's clock ``seconds`` ahead of (negative: behind) the
        wall clock; the ``Date`` and ``X-RateLimit-Reset`` headers follow."""
        result: dict[str, Any] = self._call("PUT", "/clock", json={"offset": seconds})
        return result

    def advance(self, seconds: float) -> float:
        """Advance the emulator's clock; return its new time (epoch seconds)."""
        now: float = self._call("POST", "/advance", json={"seconds": seconds})["now"]
        return now

    def complete_all(self) -> int:
        """End processing of every analysis now; return how many were processing."""
        count: int = self._call("POST", "/complete-all")["completed"]
        return count

    def seed(
        self,
        count: int,
        *,
        account: str = "acct_1",
        created_from: float | None = None,
        created_to: float | None = None,
        statuses: list[str] | None = None,
        agent_ids: list[str] | None = None,
        contact_ids: list[str] | None = None,
        return_ids: bool = False,
    ) -> dict[str, Any]:
        """
        Bulk-create ``count`` analyses for ``account`` (see ``POST /_emulator/seed``).

        :return: ``{"created", "first_id", "last_id"}`` and, with ``return_ids``, ``"ids"``.
        """
        body: dict[str, Any] = {"account": account, "count": count, "return_ids": return_ids}
        optional = {
            "created_from": created_from,
            "created_to": created_to,
            "statuses": statuses,
            "agent_ids": agent_ids,
            "contact_ids": contact_ids,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        result: dict[str, Any] = self._call("POST", "/seed", json=body)
        return result

    def reset(self) -> None:
        """Forget every analysis, key, log entry and count; restore the start-up settings."""
        self._call("POST", "/reset")
