"""The filters of the API's listing, checked once for the list operator, the hook and the local checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from callcov_provider.exceptions import InvalidRequestError
from callcov_provider.models import AnalysisStatus


class ListFilters(BaseModel):
    """
    The filters of ``GET /analysis/`` (the listing reference), checked: the one definition the list operator,
    the hook's list methods and the local checks share.

    :param status_filter: ``processing``, ``completed`` or ``failed``.
    :param agent_id: Only this agent's analyses.
    :param contact_id: Only this contact's analyses.
    :param search: Case-insensitive search in agent and contact ids.
    """

    model_config = ConfigDict(frozen=True)

    status_filter: str | None = None
    agent_id: str | None = None
    contact_id: str | None = None
    search: str | None = None

    @classmethod
    def checked(
        cls,
        *,
        status_filter: Any = None,
        agent_id: Any = None,
        contact_id: Any = None,
        search: Any = None,
    ) -> ListFilters:
        """
        Check each filter (absent, ``None`` and empty text mean "no filter").

        :raises InvalidRequestError: naming the filter, for an unknown status or a filter that is not text.
        """
        return cls(
            status_filter=cls.check_status(status_filter),
            agent_id=cls.check_text(agent_id, "agent_id"),
            contact_id=cls.check_text(contact_id, "contact_id"),
            search=cls.check_text(search, "search"),
        )

    @staticmethod
    def check_status(value: Any) -> str | None:
        """Check ``status_filter`` is one of the documented statuses (or absent)."""
        if value is None or value == "":
            return None
        allowed = [s.value for s in AnalysisStatus]
        text = value.value if isinstance(value, AnalysisStatus) else str(value)
        if text not in allowed:
            raise InvalidRequestError(
                f"status_filter must be one of {', '.join(allowed)}, got {value!r}", field="status_filter"
            )
        return text

    @staticmethod
    def check_text(value: Any, field: str) -> str | None:
        """Check an optional text filter (``agent_id``, ``contact_id``, ``search``)."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise InvalidRequestError(f"{field} must be a string", field=field)
        return value

    def params(self) -> dict[str, str]:
        """The filters that are set, as query parameters (also the hook's keyword arguments)."""
        return {name: value for name, value in self.model_dump().items() if value is not None}
