"""
Read a day's call manifest (``calls.csv``) into submission arguments, skipping bad rows with reasons.

The manifest has one row per call with the columns ``file`` (relative to the manifest's folder),
``agent_id``, ``contact_id``, ``call_direction`` and ``call_timestamp``. Every row is checked with the
same local checks the hook makes before sending, so a row that would be refused never leaves the worker.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from callcov_provider.exceptions import InvalidRequestError
from callcov_provider.hooks import validation

MANIFEST_NAME = "calls.csv"
REQUIRED_COLUMNS = ("file", "agent_id", "contact_id")


def read_manifest(day_dir: Path | str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Read ``<day_dir>/calls.csv``.

    :param day_dir: The day's folder.
    :return: ``(calls, skipped)``: one dict of :class:`SubmitAnalysisOperator` arguments per valid row
        (``agent_id``, ``contact_id``, ``audio_file``, ``call_direction``, ``call_timestamp``,
        ``metadata``), and one ``{"row": n, "reason": ...}`` per skipped row (rows count from 2, the
        header being row 1); a reason names a file relative to the day's folder, never by its absolute
        path (the report is read by people who do not know the worker's disk). A missing folder or
        manifest gives two empty lists.
    """
    manifest = Path(day_dir) / MANIFEST_NAME
    if not manifest.is_file():
        return [], []
    calls: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            return [], [{"row": 1, "reason": f"manifest lacks column(s) {', '.join(missing)}"}]
        for row_number, row in enumerate(reader, start=2):
            try:
                calls.append(_call_from_row(manifest.parent, row, row_number))
            except InvalidRequestError as err:
                skipped.append({"row": row_number, "reason": _relative(err.message, manifest.parent)})
    return calls, skipped


def _relative(message: str, folder: Path) -> str:
    """``message`` with the day folder's path taken off the file names it quotes."""
    return message.replace(f"{folder}{os.sep}", "")


def _call_from_row(folder: Path, row: dict[str, Any], row_number: int) -> dict[str, Any]:
    if None in row:
        raise InvalidRequestError("row has more fields than the header", field="row")
    file_name = (row.get("file") or "").strip()
    if not file_name:
        raise InvalidRequestError("file is empty", field="file")
    audio = validation.check_audio_file(folder / file_name)
    return {
        "agent_id": validation.require_id(row.get("agent_id"), "agent_id"),
        "contact_id": validation.require_id(row.get("contact_id"), "contact_id"),
        "audio_file": str(audio.path),
        "call_direction": validation.check_call_direction((row.get("call_direction") or "").strip() or None),
        "call_timestamp": validation.check_call_timestamp((row.get("call_timestamp") or "").strip() or None),
        "metadata": {"source_file": file_name, "manifest_row": row_number},
    }
