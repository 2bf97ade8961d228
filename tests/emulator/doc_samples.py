# ruff: noqa
# mypy: ignore-errors
"""
The Python samples of the three CallCov documentation pages (see ``docs/api-contract.md``), copied as written.

The only changes: the base URL and the key are this module's globals ``API_URL`` / ``BASE_URL`` /
``API_KEY`` (set by :func:`configure`) instead of ``https://api.callcov.com/api/v1`` and the sample keys;
the sample audio URLs point at the emulator's synthetic audio (the pages' example hosts do not exist);
and each sample's top-level statements are wrapped in a function so that a test can run it. Every line
of sample code is otherwise the page's own, including its ``print`` calls and its ``time.sleep``.
"""

import os
import time

import requests
from requests.adapters import HTTPAdapter
from requests.packages.urllib3.util.retry import Retry
from concurrent.futures import ThreadPoolExecutor, as_completed

API_KEY = "your_api_key_here"
API_URL = "https://api.callcov.com/api/v1"
BASE_URL = API_URL
AUDIO_URL = "https://your-storage.com/recordings/call_12345.wav"
AUDIO_URL_001 = "https://example.com/recordings/call-001.wav"


def configure(base_url, api_key, audio_url, audio_url_001):
    """Point the samples at the emulator."""
    global API_KEY, API_URL, BASE_URL, AUDIO_URL, AUDIO_URL_001, url, headers
    API_KEY = api_key
    API_URL = BASE_URL = base_url
    AUDIO_URL = audio_url
    AUDIO_URL_001 = audio_url_001
    url = f"{API_URL}/analysis/"
    headers = {"X-API-Key": API_KEY}


# --- the older generation: Basic File Upload ------------------------------------------------------------------------


def page_000_basic_file_upload():
    # Prepare the file and metadata
    files = {"audio_file": open("call_recording.wav", "rb")}

    data = {
        "agent_id": "AGENT_001",
        "contact_id": "CONTACT_12345",
        "call_direction": "inbound",
        "call_timestamp": "2024-01-15T10:30:00Z",
    }

    headers = {"X-API-Key": API_KEY}

    # Submit for analysis
    response = requests.post(f"{API_URL}/calls/analyze", headers=headers, files=files, data=data)

    result = response.json()
    print(f"Analysis ID: {result['analysis_id']}")
    print(f"Status: {result['status']}")
    return result


# --- the older generation: Method 2: URL Submission -----------------------------------------------------------------


def page_000_url_submission():
    # Submit audio URL
    payload = {
        "audio_url": AUDIO_URL,
        "agent_id": "AGENT_001",
        "contact_id": "CONTACT_12345",
        "call_direction": "outbound",
        "call_timestamp": "2024-01-15T14:20:00Z",
    }

    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    response = requests.post(f"{API_URL}/calls/analyze", headers=headers, json=payload)

    result = response.json()
    print(f"Analysis ID: {result['analysis_id']}")
    return result


# --- the older generation: Checking Analysis Status -----------------------------------------------------------------


def wait_for_analysis_000(analysis_id, api_key, max_wait=300):
    """Poll until analysis completes or timeout"""
    api_url = API_URL
    headers = {"X-API-Key": api_key}

    start_time = time.time()
    while time.time() - start_time < max_wait:
        response = requests.get(f"{api_url}/calls/analyze/{analysis_id}", headers=headers)

        result = response.json()
        status = result["status"]

        if status == "completed":
            print("Analysis completed!")
            return result
        elif status == "failed":
            print(f"Analysis failed: {result.get('error')}")
            return None

        print(f"Status: {status} - waiting...")
        time.sleep(5)  # Poll every 5 seconds

    print("Timeout waiting for analysis")
    return None


def page_000_wait_usage(analysis_id):
    # Usage
    result = wait_for_analysis_000(analysis_id, API_KEY)
    if result:
        print(f"Sentiment: {result['analysis']['sentiment']}")
        print(f"Summary: {result['analysis']['summary']}")
    return result


# --- the older generation: Batch Submissions ------------------------------------------------------------------------


def submit_call(file_path, agent_id, contact_id):
    """Submit a single call for analysis"""
    files = {"audio_file": open(file_path, "rb")}
    data = {"agent_id": agent_id, "contact_id": contact_id}
    headers = {"X-API-Key": API_KEY}

    response = requests.post(f"{API_URL}/calls/analyze", headers=headers, files=files, data=data)

    return response.json()


def page_000_batch_submission():
    # Batch submit with threading
    calls_to_submit = [
        ("recording1.wav", "AGENT_001", "CONTACT_001"),
        ("recording2.wav", "AGENT_001", "CONTACT_002"),
        ("recording3.wav", "AGENT_002", "CONTACT_003"),
    ]

    results = []
    with ThreadPoolExecutor(max_workers=5) as executor:
        futures = [
            executor.submit(submit_call, file_path, agent_id, contact_id)
            for file_path, agent_id, contact_id in calls_to_submit
        ]

        for future in as_completed(futures):
            try:
                result = future.result()
                results.append(result)
                print(f"Submitted: {result['analysis_id']}")
            except Exception as e:
                print(f"Error: {e}")

    print(f"\nSubmitted {len(results)} calls for analysis")
    return results


# --- the older generation: Error Handling ---------------------------------------------------------------------------


def create_retry_session(retries=3, backoff_factor=0.3):
    """Create session with automatic retry"""
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


def page_000_retry_session_usage(files, data):
    headers = {"X-API-Key": API_KEY}
    # Usage
    session = create_retry_session()
    response = session.post(f"{API_URL}/calls/analyze", headers=headers, files=files, data=data)
    return response


# --- the current generation: Python Example ---------------------------------------------------------------------------


def page_001_python_example():
    # Prepare the request
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    payload = {
        "audio_url": AUDIO_URL_001,
        "agent_id": "agent_john_doe",
        "contact_id": "customer_12345",
        "webhook_url": "https://your-app.com/webhooks/analysis",
    }

    # Make the request
    response = requests.post(f"{BASE_URL}/analysis/", headers=headers, json=payload)

    # Handle the response
    if response.status_code == 201:
        analysis = response.json()
        print(f"✅ Analysis created: {analysis['id']}")
        print(f"Status: {analysis['status']}")
    else:
        print(f"❌ Error: {response.status_code}")
        print(response.json())
    return response


# --- the current generation: Polling for Results ----------------------------------------------------------------------


def wait_for_analysis_001(analysis_id, api_key, max_wait=300):
    """Poll for analysis completion (max 5 minutes)"""
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{BASE_URL}/analysis/{analysis_id}"

    start_time = time.time()
    while time.time() - start_time < max_wait:
        response = requests.get(url, headers=headers)
        analysis = response.json()

        if analysis["status"] == "completed":
            print("✅ Analysis complete!")
            return analysis
        elif analysis["status"] == "failed":
            print("❌ Analysis failed:", analysis.get("error_message"))
            return None

        print(f"⏳ Status: {analysis['status']}... waiting")
        time.sleep(10)  # Poll every 10 seconds

    print("⏱️ Timeout waiting for analysis")
    return None


def page_001_wait_usage(analysis_id):
    # Usage
    result = wait_for_analysis_001(analysis_id, API_KEY)
    return result


# --- the listing reference: Basic Pagination -------------------------------------------------------------------------

url = "https://api.callcov.com/api/v1/analysis/"
headers = {"X-API-Key": "sk_live_abc123..."}


def page_002_basic_pagination():
    # Get first page (analyses 0-99)
    response = requests.get(url, headers=headers, params={"limit": 100, "offset": 0})
    first = response

    # Get second page (analyses 100-199)
    response = requests.get(url, headers=headers, params={"limit": 100, "offset": 100})
    return first, response


# --- the listing reference: Iterate Through All Pages ----------------------------------------------------------------


def get_all_analyses(api_key, status_filter=None):
    """
    Fetch all analyses across all pages.

    Args:
        api_key: Your API key
        status_filter: Optional status filter

    Returns:
        List of all analyses
    """
    url = f"{API_URL}/analysis/"
    headers = {"X-API-Key": api_key}

    all_analyses = []
    offset = 0
    limit = 100

    while True:
        params = {"limit": limit, "offset": offset}
        if status_filter:
            params["status_filter"] = status_filter

        response = requests.get(url, headers=headers, params=params)
        data = response.json()

        all_analyses.extend(data["data"])

        if not data["has_more"]:
            break

        offset += limit

    return all_analyses


def page_002_get_all_usage():
    # Usage
    completed_analyses = get_all_analyses(api_key=API_KEY, status_filter="completed")
    print(f"Total completed analyses: {len(completed_analyses)}")
    return completed_analyses


# --- the listing reference: Get Recent Completed Analyses ------------------------------------------------------------


def page_002_recent_completed():
    response = requests.get(
        url, headers=headers, params={"status_filter": "completed", "limit": 10}
    )  # Last 10 completed

    analyses = response.json()["data"]
    for analysis in analyses:
        effort_score = analysis["results"]["coaching"]["customer_effort_score"]
        greeting_ok = analysis["results"]["quality"]["greeting"]["present"]
        print(f"{analysis['call']['contact_id']}: CES={effort_score}/5, Greeting={greeting_ok}")
    return analyses


# --- the listing reference: Get All Analyses for Agent ---------------------------------------------------------------


def get_agent_analyses(api_key, agent_id):
    """Get all analyses for a specific agent"""
    url = f"{API_URL}/analysis/"
    headers = {"X-API-Key": api_key}

    response = requests.get(
        url, headers=headers, params={"agent_id": agent_id, "limit": 1000}
    )  # Adjust as needed

    data = response.json()
    return data["data"], data["total"]


def page_002_agent_usage():
    analyses, total = get_agent_analyses(API_KEY, "agent_001")
    print(f"Agent agent_001 has {total} total analyses")
    return analyses, total


# --- the listing reference: Search, Failed Analyses ------------------------------------------------------------------


def page_002_search():
    # Search for analyses containing "customer_123"
    response = requests.get(url, headers=headers, params={"search": "customer_123"})
    # This searches in both agent_id AND contact_id fields
    return response


def page_002_failed_for_debugging():
    response = requests.get(url, headers=headers, params={"status_filter": "failed", "limit": 50})

    failed_analyses = response.json()["data"]
    for analysis in failed_analyses:
        error = analysis["metadata"]["error_message"]
        print(f"Analysis {analysis['id']} failed: {error}")
    return failed_analyses


# --- the listing reference: Common Use Cases -------------------------------------------------------------------------


def page_002_dashboard():
    # Get last 20 analyses for dashboard
    response = requests.get(url, headers=headers, params={"limit": 20})
    recent = response.json()["data"]
    return recent


def page_002_average_quality():
    # Get all completed analyses
    all_analyses = get_all_analyses(api_key=API_KEY, status_filter="completed")

    # Calculate average customer effort score
    total_effort = sum(
        a["results"]["coaching"]["customer_effort_score"] for a in all_analyses if a["results"]
    )
    avg_effort = total_effort / len(all_analyses)
    print(f"Average customer effort score: {avg_effort:.2f}/5")
    return avg_effort


def page_002_agent_performance_report():
    # Get all completed analyses for specific agent
    response = requests.get(
        url, headers=headers, params={"agent_id": "agent_001", "status_filter": "completed"}
    )

    agent_analyses = response.json()["data"]

    # Calculate metrics
    total_calls = len(agent_analyses)
    avg_effort = sum(a["results"]["coaching"]["customer_effort_score"] for a in agent_analyses) / total_calls
    compliance_rate = (
        sum(1 for a in agent_analyses if not a["results"]["compliance"]["identity_verification"]["flagged"])
        / total_calls
    )

    print(f"Agent agent_001 Report:")
    print(f"  Total calls: {total_calls}")
    print(f"  Avg customer effort: {avg_effort:.2f}/5")
    print(f"  Compliance rate: {compliance_rate:.1%}")
    return total_calls, avg_effort, compliance_rate
