"""List CallCov analyses with filters, a time window and field selection, into XCom or object storage."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from callcov_provider.exceptions import InvalidRequestError
from callcov_provider.filters import ListFilters
from callcov_provider.flags import parse_argument_flag
from callcov_provider.hooks import validation
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.models import LIST_LIMIT_MAX, LIST_LIMIT_MIN, Analysis, parse_iso8601

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Above this many bytes of JSON, the operator suggests ``fields`` or ``output_uri``.
LARGE_XCOM_BYTES = 1_000_000


def to_datetime(value: Any, field: str) -> datetime | None:
    """Read a datetime or ISO 8601 text (a rendered ``{{ data_interval_start }}``, say); naive is UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_iso8601(value)
        except ValueError:
            pass
    raise InvalidRequestError(f"{field} must be a datetime or an ISO 8601 string, got {value!r}", field=field)


def project(record: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """
    Keep only the dotted ``paths`` of ``record``, preserving its nesting.

    ``project(a, ["id", "call.agent_id"])`` gives ``{"id": ..., "call": {"agent_id": ...}}``; a path that
    runs into a missing or null section gives ``None`` at that point.
    """
    out: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        source: Any = record
        target = out
        for part in parents:
            source = source.get(part) if isinstance(source, dict) else None
            if source is None:
                # A null section (results while processing, say) stays null unless another path filled it.
                target.setdefault(part, None)
                break
            target = target.setdefault(part, {})
        else:
            target[leaf] = source.get(leaf) if isinstance(source, dict) else None
    return out


class ListAnalysesOperator(BaseOperator):
    """
    List analyses (newest first) with the API's filters, an optional creation-time window, and fields.

    All arguments are templated and checked before any request. With ``created_after`` paging stops as
    soon as the results are older than it, so a day's report does not read the account's whole history.
    The result is a list of JSON-safe dicts, or, with ``output_uri``, JSON Lines written through
    ``ObjectStoragePath`` (``file://``, ``s3://``, ...) and the URI returned instead.

    :param status_filter: ``processing``, ``completed`` or ``failed``.
    :param agent_id: Only this agent's analyses.
    :param contact_id: Only this contact's analyses.
    :param search: Case-insensitive search in agent and contact ids.
    :param limit: Page size, 1 to 1000 (one page unless ``fetch_all``).
    :param offset: Analyses to skip before the first page.
    :param fetch_all: Read every page (1000 a request).
    :param max_results: Stop after this many analyses.
    :param created_after: Only analyses created at or after this time (datetime or ISO 8601).
    :param created_before: Only analyses created before this time.
    :param fields: Dotted paths to keep, e.g. ``["id", "call.agent_id", "results.coaching"]``.
    :param output_uri: Write JSON Lines here and return the URI.
    :param callcov_conn_id: The CallCov connection id.
    """

    template_fields: Sequence[str] = (
        "status_filter",
        "agent_id",
        "contact_id",
        "search",
        "limit",
        "offset",
        "fetch_all",
        "max_results",
        "created_after",
        "created_before",
        "fields",
        "output_uri",
        "callcov_conn_id",
    )
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        status_filter: str | None = None,
        agent_id: str | None = None,
        contact_id: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        fetch_all: bool = False,
        max_results: int | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        fields: Sequence[str] | None = None,
        output_uri: str | None = None,
        callcov_conn_id: str = CallCovHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.status_filter = status_filter
        self.agent_id = agent_id
        self.contact_id = contact_id
        self.search = search
        self.limit = limit
        self.offset = offset
        self.fetch_all = fetch_all
        self.max_results = max_results
        self.created_after = created_after
        self.created_before = created_before
        self.fields = fields
        self.output_uri = output_uri
        self.callcov_conn_id = callcov_conn_id

    @cached_property
    def hook(self) -> CallCovHook:
        """The CallCov hook, built on first use (never at DAG parse time)."""
        return CallCovHook(self.callcov_conn_id)

    def _checked(self) -> dict[str, Any]:
        """Every argument, checked and normalised, before any request."""
        filters = ListFilters.checked(
            status_filter=self.status_filter,
            agent_id=self.agent_id,
            contact_id=self.contact_id,
            search=self.search,
        )
        limit = validation.check_int_range(self.limit, "limit", LIST_LIMIT_MIN, LIST_LIMIT_MAX)
        offset = validation.check_int_range(self.offset, "offset", 0)
        after = to_datetime(self.created_after, "created_after")
        before = to_datetime(self.created_before, "created_before")
        if after and before and after > before:
            raise InvalidRequestError(
                f"created_after ({after.isoformat()}) is after created_before ({before.isoformat()})",
                field="created_after",
            )
        max_results = (
            None
            if self.max_results is None or str(self.max_results) == ""
            else validation.check_int_range(self.max_results, "max_results", 0)
        )
        fields = self.fields
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        if fields is not None and (
            not isinstance(fields, (list, tuple))
            or not fields
            or not all(isinstance(f, str) and f and all(f.split(".")) for f in fields)
        ):
            raise InvalidRequestError(
                f"fields must be a non-empty list of dotted paths such as 'call.agent_id', got {fields!r}",
                field="fields",
            )
        if self.output_uri is not None and not str(self.output_uri).strip():
            raise InvalidRequestError("output_uri must not be empty", field="output_uri")
        return {
            "filters": filters,
            "limit": limit,
            "offset": offset,
            "after": after.timestamp() if after else None,
            "before": before.timestamp() if before else None,
            "max_results": max_results,
            "fields": list(fields) if fields is not None else None,
            "fetch_all": parse_argument_flag(self.fetch_all, "fetch_all", default=False),
        }

    def _pages(self, checked: dict[str, Any]) -> Iterator[Analysis]:
        f: ListFilters = checked["filters"]
        if not checked["fetch_all"]:
            page = self.hook.list_analyses(
                status_filter=f.status_filter,
                agent_id=f.agent_id,
                contact_id=f.contact_id,
                search=f.search,
                limit=checked["limit"],
                offset=checked["offset"],
            )
            yield from page.data
            return
        # Pages of the API's largest size cost the fewest requests; offset skips from the first page on.
        analyses = self.hook.iter_analyses(
            status_filter=f.status_filter,
            agent_id=f.agent_id,
            contact_id=f.contact_id,
            search=f.search,
            page_size=LIST_LIMIT_MAX,
        )
        yield from itertools.islice(analyses, checked["offset"], None)

    def _select(self, checked: dict[str, Any]) -> Iterator[dict[str, Any]]:
        after, before, cap, fields = (
            checked["after"],
            checked["before"],
            checked["max_results"],
            checked["fields"],
        )
        count = 0
        if cap == 0:
            return
        for analysis in self._pages(checked):
            created = analysis.created_timestamp
            if created is not None and after is not None and created < after:
                # Newest first: everything after this is older still, so no further page is read.
                return
            if created is not None and before is not None and created >= before:
                continue
            record = analysis.to_xcom()
            yield project(record, fields) if fields else record
            count += 1
            if cap is not None and count >= cap:
                # Stop here: asking the pages for one more analysis could read a whole further page.
                return

    def execute(self, context: Context) -> list[dict[str, Any]] | str:
        """List, filter and return (or write) the analyses."""
        checked = self._checked()
        if self.output_uri:
            return self._write(checked, str(self.output_uri))
        records = list(self._select(checked))
        size = len(json.dumps(records))
        self.log.info("Listed %d CallCov analyses (%d bytes of JSON)", len(records), size)
        if size > LARGE_XCOM_BYTES:
            self.log.warning(
                "The result is %.1f MB of XCom; pass fields=[...] to keep what you need or output_uri= to "
                "write it to object storage",
                size / 1e6,
            )
        return records

    def _write(self, checked: dict[str, Any], uri: str) -> str:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        path = ObjectStoragePath(uri)
        parent = path.parent
        if not parent.exists():
            parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with path.open("w") as handle:  # type: ignore[no-untyped-call]
            for record in self._select(checked):
                handle.write(json.dumps(record) + "\n")
                count += 1
        self.log.info("Wrote %d CallCov analyses to %s", count, uri)
        return uri

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Lineage for the ``openlineage`` provider: the analyses listed in, the ``output_uri`` file out."""
        from callcov_provider.lineage import listing_lineage

        return listing_lineage(self.hook.settings.base_url, str(self.output_uri) if self.output_uri else None)
