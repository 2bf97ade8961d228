"""Regression tests, one per provider bug the reliability tests found (see CHANGELOG "Fixed")."""

from __future__ import annotations

import time

from callcov_provider.exceptions import redact, url_secrets
from callcov_provider.hooks.retry import Outcome, RetryPolicy, server_requested_wait
from callcov_provider.operators.submit import SubmitAnalysisOperator


def test_server_error_with_quota_left_does_not_wait_for_the_window_reset() -> None:
    now = time.time()
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "97", "X-RateLimit-Reset": str(now + 55)}
    assert server_requested_wait(headers, now=now) is None
    wait = RetryPolicy().next_wait("GET", 1, Outcome(status=503, headers=headers), 0.0, now=now)
    assert wait is not None
    assert wait <= 1.0  # the first backoff, not the 55 s to the window's end
    # A spent quota still waits for the reset.
    spent = {**headers, "X-RateLimit-Remaining": "0"}
    assert server_requested_wait(spent, now=now) == 55.0


def test_a_signature_echoed_on_its_own_is_redacted() -> None:
    url = "https://storage.test/a.wav?sig=tok_0123456789abcdef&se=3600"
    assert "tok_0123456789abcdef" in url_secrets(url)
    assert "3600" not in url_secrets(url)  # short values are not secrets on their own
    assert redact("signature tok_0123456789abcdef is invalid", url_secrets(url)) == (
        "signature <redacted> is invalid"
    )
    assert redact("fetch http://h/a.wav?<redacted> failed", ()) == "fetch http://h/a.wav?<redacted> failed"


def test_rendering_masks_a_signed_audio_url() -> None:
    import jinja2
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    token = f"tok{time.time_ns()}"
    operator = SubmitAnalysisOperator(
        task_id="submit",
        agent_id="a",
        contact_id="c",
        audio_url="https://storage.test/{{ params.name }}?sig=" + token,
        webhook_url="https://hooks.test/cb?token=whk_" + token,
    )
    operator.render_template_fields({"params": {"name": "call.wav"}}, jinja2.Environment())  # type: ignore[arg-type]
    assert operator.audio_url == f"https://storage.test/call.wav?sig={token}"
    assert token not in str(airflow_redact(operator.audio_url))
    assert token not in str(airflow_redact(operator.webhook_url))
    assert str(airflow_redact(operator.audio_url)).startswith("https://storage.test/call.wav?")
