"""The CallCov hook: one connection, both API generations, sync (requests) and async (httpx) paths."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from callcov_provider.constants import DEFAULT_CONN_ID
from callcov_provider.exceptions import (
    APIConnectionError,
    AuthenticationError,
    CallCovError,
    InvalidRequestError,
    url_secrets,
)
from callcov_provider.hooks import async_pool, transport, validation
from callcov_provider.hooks.config import ClientSettings, parse_extras, settings_from_connection
from callcov_provider.hooks.pacing import QuotaPacer, pacer_for
from callcov_provider.hooks.retry import RetryPolicy
from callcov_provider.hooks.transport import ModelT, RawResponse, parse_model
from callcov_provider.models import LIST_LIMIT_MAX, Analysis, AnalysisList
from callcov_provider.version import __version__

if TYPE_CHECKING:
    import httpx
    import requests

USER_AGENT = f"airflow-provider-callcov/{__version__}"



def new_idempotency_key() -> str:
    """A fresh idempotency key for a submission that has none of its own."""
    return f"callcov-{uuid.uuid4()}"


class CallCovHook(BaseHook):
    """
    Talk to the CallCov API through an Airflow connection.

    The connection's ``host`` is the API base URL (empty means ``https://api.callcov.com/api/v1``), its
    ``password`` the API key or token, and its extra ``auth_type`` picks ``X-API-Key`` (``api_key``, the
    default) or ``Authorization: Bearer`` (``bearer``). Other extras: ``connect_timeout``,
    ``read_timeout``, ``submit_path`` (``/analysis/`` or the older ``/calls/analyze``), ``dashboard_url``,
    ``max_retries``, ``retry_deadline`` and ``retry_ambiguous_posts``.

    Nothing is looked up or sent when the hook is built: the connection is read on first use.

    Retries follow :class:`~callcov_provider.hooks.retry.RetryPolicy` on both paths: GETs retry on
    connection errors, timeouts, 429 and 500/502/503/504; POSTs retry on 429 and failures before the
    request was sent, and also on the ambiguous failures (read timeout, dropped connection, 500/502/503/504)
    because every POST carries an ``Idempotency-Key``, so a replay returns the first analysis rather than
    creating a second. Set the extra ``retry_ambiguous_posts`` to ``false`` for a server that ignores the key.

    :param callcov_conn_id: The Airflow connection id.
    :param retry_policy: Overrides the policy built from the connection's extras.
    """

    conn_name_attr = "callcov_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "callcov"
    hook_name = "CallCov"

    def __init__(
        self, callcov_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.callcov_conn_id = callcov_conn_id
        self._retry_policy_override = retry_policy
        self._settings: ClientSettings | None = None
        self._session: requests.Session | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._pacer: QuotaPacer | None = None
        # Replaceable in tests, so that retry waits can be asserted without sleeping.
        self.sleep: Callable[[float], None] = time.sleep
        self.async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # The httpx transport of the async client; ``None`` is httpx's own. Tests put a MockTransport here.
        self.async_transport: httpx.AsyncBaseTransport | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(callcov_conn_id={self.callcov_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field behaviour of the connection form (Airflow < 3.2; newer versions read provider info)."""
        from callcov_provider.connection_form import UI_FIELD_BEHAVIOUR

        return dict(UI_FIELD_BEHAVIOUR)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """
        The connection form's extra fields as wtforms fields (Airflow < 3.2).

        Built from :data:`callcov_provider.connection_form.CONN_FIELDS`, the definition Airflow 3.2+ reads
        declaratively from the provider info (and then never calls this), so every version shows the same
        fields, labels, descriptions, defaults and choices. Airflow 2.11 renders them with Flask-AppBuilder;
        Airflow 3.0 and 3.1 convert them for their React UI, patching stand-ins over wtforms, flask_babel
        and Flask-AppBuilder while they call this: hence the imports here, at call time. Without
        Flask-AppBuilder or flask_babel, wtforms' own text input and the plain labels are used.
        """
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import Optional, any_of

        from callcov_provider.connection_form import CONN_FIELDS, wtforms_field_class

        try:
            from flask_babel import lazy_gettext
        except ImportError:
            lazy_gettext = str
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        except ImportError:
            text_widget = None
        else:
            text_widget = BS3TextFieldWidget()

        field_classes = {
            "StringField": StringField,
            "IntegerField": IntegerField,
            "BooleanField": BooleanField,
        }
        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            class_name = wtforms_field_class(name)
            validators = [Optional()]
            if "enum" in schema:
                validators.append(any_of(list(schema["enum"])))
            kwargs: dict[str, Any] = {"validators": validators, "description": spec.get("description", "")}
            default = schema.get("default")
            if default is not None:
                kwargs["default"] = str(default) if class_name == "StringField" else default
            if class_name != "BooleanField" and text_widget is not None:
                kwargs["widget"] = text_widget
            widgets[name] = field_classes[class_name](lazy_gettext(spec["label"]), **kwargs)
        return widgets

    # -- connection ----------------------------------------------------------------------------------------

    def _apply_override(self, settings: ClientSettings) -> ClientSettings:
        if self._retry_policy_override is None:
            return settings
        from dataclasses import replace

        return replace(settings, retry_policy=self._retry_policy_override)

    @property
    def settings(self) -> ClientSettings:
        """The checked connection settings, read from the connection on first use."""
        if self._settings is None:
            conn = self.get_connection(self.callcov_conn_id)
            settings = settings_from_connection(
                conn_id=self.callcov_conn_id,
                host=conn.host,
                port=conn.port,
                password=conn.password,
                extras=parse_extras(conn.extra),
            )
            self._settings = self._apply_override(settings)
        return self._settings

    async def aget_settings(self) -> ClientSettings:
        """The checked connection settings, fetched without blocking the event loop."""
        if self._settings is None:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            try:
                conn = await get_async_connection(self.callcov_conn_id, hook=self)
            except AirflowNotFoundException:
                # The async lookup can see fewer secrets backends than the blocking one: `airflow dags test`
                # runs a deferred trigger in-process, where it cannot reach the supervisor and so misses
                # connections stored in the database. Ask the blocking lookup, off the event loop.
                from asgiref.sync import sync_to_async

                conn = await sync_to_async(self.get_connection)(self.callcov_conn_id)
            extras = await get_async_extra_dejson(conn)
            settings = settings_from_connection(
                conn_id=self.callcov_conn_id,
                host=conn.host,
                port=conn.port,
                password=conn.password,
                extras=parse_extras(extras),
            )
            self._settings = self._apply_override(settings)
        return self._settings

    def get_conn(self) -> requests.Session:
        """The hook's one reused ``requests.Session`` (authentication is added per request)."""
        if self._session is None:
            self._session = transport.build_session(USER_AGENT)
        return self._session

    def close(self) -> None:
        """Close the sync session, if one was opened."""
        if self._session is not None:
            self._session.close()
            self._session = None

    async def aclose(self) -> None:
        """Close the hook's own async client (one built on ``async_transport``); shared clients stay open."""
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    @property
    def pacer(self) -> QuotaPacer:
        """
        The quota pacer this hook's requests take turns on: one per account (connection, API URL and key)
        and process, shared by every hook and thread that talks to it. Reads the connection on first use.
        """
        if self._pacer is None:
            settings = self.settings if self._settings is None else self._settings
            self._pacer = pacer_for(self.callcov_conn_id, settings.base_url, settings.account_fingerprint)
        return self._pacer

    # -- the sync wire -----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        body_factory: transport.BodyFactory | None = None,
        idempotency_key: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> RawResponse:
        """Send one logical request with retries; return the final response (2xx or not)."""
        settings = self.settings
        headers = settings.auth_headers()
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return transport.send(
            self.get_conn(),
            method,
            path,
            settings.url(path),
            headers=headers,
            timeout=(settings.connect_timeout, settings.read_timeout),
            policy=policy or settings.retry_policy,
            pacer=self.pacer,
            sleep=self.sleep,
            logger=self.log,
            params=params,
            json_body=json_body,
            body_factory=body_factory,
        )

    # -- the async wire ----------------------------------------------------------------------------------

    async def _get_async_client(self) -> httpx.AsyncClient:
        """The event loop's shared client, or the hook's own when ``async_transport`` is set."""
        if self._async_client is not None:
            return self._async_client
        import httpx

        settings = await self.aget_settings()
        user_agent = f"{USER_AGENT} httpx/{httpx.__version__}"
        if self.async_transport is not None:
            self._async_client = async_pool.build_client(
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                user_agent=user_agent,
                transport=self.async_transport,
            )
            return self._async_client
        return await async_pool.shared_client(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            user_agent=user_agent,
        )

    async def _asend(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None
    ) -> RawResponse:
        """Async counterpart of :meth:`_send` for the read-only calls triggers make."""
        settings = await self.aget_settings()
        return await transport.asend(
            await self._get_async_client(),
            method,
            path,
            settings.url(path),
            headers=settings.auth_headers(),
            policy=settings.retry_policy,
            pacer=self.pacer,
            sleep=self.async_sleep,
            logger=self.log,
            params=params,
        )

    def _parse(
        self, response: RawResponse, model: type[ModelT], what: str, extra_secrets: tuple[str, ...] = ()
    ) -> ModelT:
        """Parse a response, removing the key (and ``extra_secrets``) from any error the server wrote."""
        known = self._settings.secrets if self._settings is not None else ()
        return parse_model(response, model, what, secrets=known + extra_secrets)

    # -- submitting --------------------------------------------------------------------------------------

    def submit_analysis(
        self,
        *,
        agent_id: str,
        contact_id: str,
        audio_file: str | None = None,
        audio_url: str | None = None,
        call_direction: str | None = None,
        call_timestamp: str | datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Analysis:
        """
        Submit one call for analysis, by local file (streamed from disk) or by URL.

        Every argument is checked before any byte is sent. The request carries an ``Idempotency-Key``:
        ``idempotency_key`` if given, or a fresh key reused across this call's retries, so that a retry
        after a lost response returns the first analysis instead of creating a second.

        :param agent_id: The agent's id (required, non-empty).
        :param contact_id: The customer's id (required, non-empty).
        :param audio_file: Path of a local WAV, MP3, M4A, FLAC or OGG file within its size limit.
        :param audio_url: An http(s) URL the API downloads the audio from. Exactly one of the two.
        :param call_direction: ``inbound`` or ``outbound``.
        :param call_timestamp: When the call happened, ISO 8601 text or a ``datetime``.
        :param metadata: JSON-serialisable mapping stored with the analysis.
        :param webhook_url: Where the API POSTs ``analysis.completed`` / ``analysis.failed``.
        :param idempotency_key: The key for this submission; a replay with the same key returns the
            same analysis.
        :return: The new analysis, normally with status ``processing``.
        :raises InvalidRequestError: naming the field, for any argument a local check refuses.
        """
        fields: dict[str, Any] = {
            "agent_id": validation.require_id(agent_id, "agent_id"),
            "contact_id": validation.require_id(contact_id, "contact_id"),
            "call_direction": validation.check_call_direction(call_direction),
            "call_timestamp": validation.check_call_timestamp(call_timestamp),
            "metadata": validation.check_metadata(metadata),
            "webhook_url": validation.check_webhook_url(webhook_url),
        }
        key = validation.check_idempotency_key(idempotency_key) or new_idempotency_key()
        if (audio_file is None) == (audio_url is None):
            raise InvalidRequestError(
                "give exactly one of audio_file or audio_url",
                field="audio_file" if audio_file else "audio_url",
            )
        present = {name: value for name, value in fields.items() if value is not None}
        if audio_url is not None:
            payload = {"audio_url": validation.check_audio_url(audio_url), **present}
            submit = functools.partial(self._send, "POST", self.settings.submit_path, json_body=payload)
        else:
            audio = validation.check_audio_file(audio_file)  # type: ignore[arg-type]
            form = {
                name: json.dumps(value) if name == "metadata" else value for name, value in present.items()
            }
            submit = functools.partial(
                self._send,
                "POST",
                self.settings.submit_path,
                body_factory=transport.multipart_body(audio.path, audio.audio_format.content_type, form),
            )
        response = submit(idempotency_key=key)
        # The server may echo the audio URL back in an error: its query (a signed URL's token) is a secret.
        analysis = self._parse(response, Analysis, "submit", url_secrets(audio_url or ""))
        self.log.info("Submitted CallCov analysis %s (status %s)", analysis.id, analysis.status.value)
        return analysis

    # -- reading -----------------------------------------------------------------------------------------

    @staticmethod
    def _analysis_path(analysis_id: str) -> str:
        return f"/analysis/{quote(validation.require_id(analysis_id, 'analysis_id'), safe='')}"

    def get_analysis(self, analysis_id: str) -> Analysis:
        """
        Fetch one analysis by id.

        :param analysis_id: The analysis id returned by :meth:`submit_analysis`.
        :raises NotFoundError: if there is no such analysis in this account.
        """
        return self._parse(self._send("GET", self._analysis_path(analysis_id)), Analysis, "get")

    async def aget_analysis(self, analysis_id: str) -> Analysis:
        """Async :meth:`get_analysis` on httpx; never blocks the event loop."""
        return self._parse(await self._asend("GET", self._analysis_path(analysis_id)), Analysis, "get")

    def list_analyses(
        self,
        *,
        status_filter: str | None = None,
        agent_id: str | None = None,
        contact_id: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> AnalysisList:
        """
        Fetch one page of analyses, newest first.

        :param status_filter: ``processing``, ``completed`` or ``failed``.
        :param agent_id: Only this agent's analyses.
        :param contact_id: Only this contact's analyses.
        :param search: Case-insensitive search in agent and contact ids.
        :param limit: Page size, 1 to 1000.
        :param offset: Analyses to skip, 0 or more.
        """
        params = validation.list_params(
            status_filter=status_filter, agent_id=agent_id, contact_id=contact_id, search=search,
            limit=limit, offset=offset,
        )
        return self._parse(self._send("GET", "/analysis/", params=params), AnalysisList, "list")

    async def alist_analyses(
        self,
        *,
        status_filter: str | None = None,
        agent_id: str | None = None,
        contact_id: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> AnalysisList:
        """Async :meth:`list_analyses` on httpx; never blocks the event loop."""
        params = validation.list_params(
            status_filter=status_filter, agent_id=agent_id, contact_id=contact_id, search=search,
            limit=limit, offset=offset,
        )
        return self._parse(await self._asend("GET", "/analysis/", params=params), AnalysisList, "list")

    def iter_analyses(
        self,
        *,
        status_filter: str | None = None,
        agent_id: str | None = None,
        contact_id: str | None = None,
        search: str | None = None,
        page_size: int = LIST_LIMIT_MAX,
        max_results: int | None = None,
    ) -> Iterator[Analysis]:
        """
        Iterate over every matching analysis, newest first, in pages of ``page_size`` (at most 1000).

        Pages are read lazily: stop iterating and no further page is fetched. An analysis that moves to a
        later page while paging (new ones arrive at the front) is yielded once.

        :param page_size: Analyses per request, 1 to 1000; the largest page costs the fewest requests.
        :param max_results: Stop after this many analyses.
        """
        size = validation.check_int_range(page_size, "page_size", 1, LIST_LIMIT_MAX)
        cap = None if max_results is None else validation.check_int_range(max_results, "max_results", 0)
        validation.list_params(
            status_filter=status_filter, agent_id=agent_id, contact_id=contact_id, search=search
        )
        # The checks above run when this method is called; the pages are read as the caller iterates.
        filters = {
            "status_filter": status_filter, "agent_id": agent_id, "contact_id": contact_id, "search": search,
        }
        return self._iter_pages(filters, size, cap)

    def _iter_pages(self, filters: Mapping[str, Any], size: int, cap: int | None) -> Iterator[Analysis]:
        seen: set[str] = set()
        offset = 0
        while cap is None or len(seen) < cap:
            limit = size if cap is None else min(size, cap - len(seen))
            page = self.list_analyses(**filters, limit=limit, offset=offset)
            for analysis in page.data:
                if analysis.id in seen:
                    continue
                seen.add(analysis.id)
                yield analysis
                if cap is not None and len(seen) >= cap:
                    return
            if not page.has_more or not page.item_count:
                return
            offset += page.item_count

    # -- connection test ---------------------------------------------------------------------------------

    #: Seconds the connection test waits to connect, and then for an answer: the UI's Test button waits.
    test_connection_timeout: float = 4.0

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the connection with one cheap authenticated call (a one-item list, free of usage limits).

        One attempt, no retries, at most :attr:`test_connection_timeout` seconds to connect and as long
        again for the answer, whatever the connection's own timeouts. A host without a scheme is taken as
        ``https://``.

        :return: ``(True, message)`` on success; ``(False, reason)`` telling a connection that cannot be
            used as configured apart from a refused key, a base URL whose path is wrong (404), an
            unreachable host and other API errors. The key is never part of the message.
        """
        import os
        from dataclasses import replace

        from callcov_provider.exceptions import ConnectionConfigError, NotFoundError

        # Airflow's Test button tests the form under a random 8-character id it puts in the environment
        # for the test: naming that id would only confuse. ``airflow connections test`` uses the real one.
        conn_id = self.callcov_conn_id
        temporary = (
            len(conn_id) == 8 and conn_id.isalnum() and f"AIRFLOW_CONN_{conn_id.upper()}" in os.environ
        )
        name = "This connection" if temporary else f"Connection {conn_id!r}"
        which = "this connection" if temporary else f"connection {conn_id!r}"
        try:
            settings = self.settings
        except ConnectionConfigError as err:
            message = err.message.replace(f"connection {conn_id!r}", "the connection")
            return False, f"{name} cannot be used as configured: {message}"
        except CallCovError as err:
            return False, f"{name} cannot be read: {err.message}"
        except Exception as err:  # an unknown id, a secrets backend that failed: Airflow's own errors
            return False, f"{name} cannot be read: {type(err).__name__}: {err}"
        limit = self.test_connection_timeout
        probe = replace(
            settings,
            connect_timeout=min(settings.connect_timeout, limit),
            read_timeout=min(settings.read_timeout, limit),
        )
        self._settings = probe
        try:
            response = self._send("GET", "/analysis/", params={"limit": 1}, policy=RetryPolicy(max_retries=0))
            self._parse(response, AnalysisList, "list")
        except AuthenticationError as err:
            return False, (
                f"Authentication failed ({which}): the CallCov API at {settings.base_url} refused the key "
                f"({err.message})"
            )
        except NotFoundError:
            return False, (
                f"The API base URL's path looks wrong ({which}): {settings.base_url}/analysis/ answered "
                "404 Not Found; the API's path is /api/v1, as in https://api.callcov.com/api/v1"
            )
        except APIConnectionError as err:
            return False, f"Cannot reach the CallCov API at {settings.base_url} ({which}): {err.message}"
        except CallCovError as err:
            return False, f"The CallCov API at {settings.base_url} answered with an error ({which}): {err}"
        finally:
            self._settings = settings
        return True, f"Connected to the CallCov API at {settings.base_url} ({which})"

