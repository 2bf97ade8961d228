"""The dataset names of callcov_provider.lineage (needs the openlineage provider)."""

from __future__ import annotations

import pytest

from callcov_provider.lineage import (
    callcov_namespace,
    listing_lineage,
    recording_dataset_name,
    submission_lineage,
    uri_dataset_name,
)

pytest.importorskip("airflow.providers.openlineage")


def test_audio_url_loses_query_string_and_credentials() -> None:
    url = "https://user:pw@media.example.com:8443/calls/42.wav?X-Amz-Signature=SECRET&token=abc#frag"
    assert recording_dataset_name(None, url) == ("https://media.example.com:8443", "/calls/42.wav")


def test_local_recording_is_an_absolute_file_path() -> None:
    namespace, name = recording_dataset_name("rel/call.wav", None)  # type: ignore[misc]
    assert namespace == "file"
    assert name.startswith("/")
    assert name.endswith("/rel/call.wav")
    assert recording_dataset_name(None, None) is None


def test_namespace_is_the_api_host_only() -> None:
    assert callcov_namespace("https://api.callcov.com/api/v1") == "callcov://api.callcov.com"
    assert callcov_namespace("http://127.0.0.1:8123/api/v1") == "callcov://127.0.0.1:8123"


def test_output_uri_names() -> None:
    assert uri_dataset_name("file:///tmp/x/a.jsonl") == ("file", "/tmp/x/a.jsonl")
    assert uri_dataset_name("s3://bucket/reports/a.jsonl") == ("s3://bucket", "reports/a.jsonl")


def test_batch_helper_dedupes_recordings_and_names_each_analysis() -> None:
    lineage = submission_lineage(
        "https://api.callcov.com/api/v1",
        [("/data/a.wav", None), ("/data/a.wav", None), (None, "https://cdn.example.com/b.mp3?sig=1")],
        ["an_1", "an_2", "an_1"],
    )
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("file", "/data/a.wav"),
        ("https://cdn.example.com", "/b.mp3"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("callcov://api.callcov.com", "analyses/an_1"),
        ("callcov://api.callcov.com", "analyses/an_2"),
    ]


def test_listing_without_output_uri_has_no_output() -> None:
    lineage = listing_lineage("https://api.callcov.com/api/v1", None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("callcov://api.callcov.com", "analyses")]
    assert lineage.outputs == []
