"""
The documentation pages' own code samples (see ``docs/api-contract.md``), the baselines of the benchmarks.

They are copied as written, with three changes only: the API URL and key are parameters (the samples
hard-code ``https://api.callcov.com``), the poll interval of ``wait_for_analysis`` is a parameter (the pages
use 5 and 10 seconds), and ``print`` calls are dropped. Nothing else is improved: they are the code a user
would otherwise write.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


# The older generation, "Basic File Upload".
def upload_file(api_url: str, api_key: str, path: str) -> dict[str, Any]:
    files = {"audio_file": open(path, "rb")}  # noqa: SIM115 - as on the page
    data = {
        "agent_id": "AGENT_001",
        "contact_id": "CONTACT_12345",
        "call_direction": "inbound",
        "call_timestamp": "2024-01-15T10:30:00Z",
    }
    headers = {"X-API-Key": api_key}
    response = requests.post(f"{api_url}/calls/analyze", headers=headers, files=files, data=data)
    result: dict[str, Any] = response.json()
    return result


# The current generation, "Polling for Results" (GET /analysis/{id}, one request per poll).
def wait_for_analysis(
    analysis_id: str, api_key: str, api_url: str, max_wait: float = 300, poll: float = 10
) -> dict[str, Any] | None:
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{api_url}/analysis/{analysis_id}"
    start_time = time.time()
    while time.time() - start_time < max_wait:
        response = requests.get(url, headers=headers)
        analysis: dict[str, Any] = response.json()
        if analysis["status"] == "completed":
            return analysis
        if analysis["status"] == "failed":
            return None
        time.sleep(poll)
    return None


async def wait_for_analysis_async(
    client: Any, analysis_id: str, api_key: str, api_url: str, max_wait: float = 300, poll: float = 10
) -> int:
    """
    ``wait_for_analysis`` above, the same requests at the same interval, on one shared httpx client so that
    thousands of them can wait at once (N threads of ``requests`` would measure the threads, not the API
    cost). Returns the number of requests it made.
    """
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{api_url}/analysis/{analysis_id}"
    start_time = time.time()
    made = 0
    while time.time() - start_time < max_wait:
        response = await client.get(url, headers=headers)
        made += 1
        analysis = response.json()
        if analysis["status"] in ("completed", "failed"):
            return made
        await asyncio.sleep(poll)
    return made


# The older generation, "Error Handling".
def create_retry_session(retries: int = 3, backoff_factor: float = 0.3) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=retries,
        read=retries,
        connect=retries,
        backoff_factor=backoff_factor,
        status_forcelist=(500, 502, 503, 504),
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# The older generation, "Batch Submissions", with the page's retry session as "Error Handling" tells.
def batch_submit(
    api_url: str, api_key: str, calls_to_submit: list[tuple[str, str, str]], max_workers: int = 5
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return (results, errors) where the page prints them."""

    def submit_call(file_path: str, agent_id: str, contact_id: str) -> dict[str, Any]:
        session = create_retry_session()
        files = {"audio_file": open(file_path, "rb")}  # noqa: SIM115 - as on the page
        data = {"agent_id": agent_id, "contact_id": contact_id}
        headers = {"X-API-Key": api_key}
        response = session.post(f"{api_url}/calls/analyze", headers=headers, files=files, data=data)
        result: dict[str, Any] = response.json()
        return result

    results: list[dict[str, Any]] = []
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max_workers) as executor:
        futures = [
            executor.submit(submit_call, file_path, agent_id, contact_id)
            for file_path, agent_id, contact_id in calls_to_submit
        ]
        for future in as_completed(futures):
            try:
                result = future.result()
                # The page prints result['analysis_id']: an error body raises KeyError here.
                _ = result["analysis_id"]
                results.append(result)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
    return results, errors


# The listing reference, "Iterate Through All Pages".
def get_all_analyses(api_key: str, api_url: str, status_filter: str | None = None) -> list[dict[str, Any]]:
    url = f"{api_url}/analysis/"
    headers = {"X-API-Key": api_key}
    all_analyses: list[dict[str, Any]] = []
    offset = 0
    limit = 100
    while True:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status_filter:
            params["status_filter"] = status_filter
        response = requests.get(url, headers=headers, params=params)
        data = response.json()
        all_analyses.extend(data["data"])
        if not data["has_more"]:
            break
        offset += limit
    return all_analyses
