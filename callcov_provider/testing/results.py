"""
Deterministic analysis results: the transcript and the compliance, quality and coaching results of a
call, derived from the SHA-256 of its audio bytes and its duration.

The same recording always gets the same results, different recordings get different ones, and every
field the documentation names is present with a plausible value (the current generation and the listing
reference).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

LANGUAGE = "en"

AGENT_LINES = (
    "Thank you for calling, my name is Alex. How can I help you today?",
    "Before we continue, may I verify your full name and date of birth?",
    "I'm calling about your recent order to confirm the delivery details.",
    "This call may be recorded for quality and training purposes.",
    "I completely understand how frustrating that must be.",
    "Let me check that for you, it will only take a moment.",
    "I've updated your account, and you'll receive a confirmation email shortly.",
    "I'm sorry about the inconvenience, let's get this fixed right away.",
    "Is there anything else I can help you with today?",
    "Thank you for your patience, have a great day.",
)
CUSTOMER_LINES = (
    "Hi, I have a question about my last bill.",
    "Sure, it's Jordan Smith, born March third.",
    "The package still hasn't arrived and it's been two weeks.",
    "Okay, that sounds good.",
    "I already called twice about this.",
    "Can you tell me when the refund will show up?",
    "Great, thanks for sorting that out.",
    "No, that's everything, thank you.",
)
EMPATHY_EXAMPLES = (
    "I completely understand how frustrating that must be.",
    "I'm sorry about the inconvenience, let's get this fixed right away.",
    "Thank you for your patience.",
    "I can see why that would be worrying.",
)
RECOMMENDATIONS = {
    "identity_verification": "Verify the customer's identity before discussing account details.",
    "mandatory_disclosures": "Read the mandatory recording disclosure at the start of every call.",
    "purpose_declaration": "State the purpose of the call within the first 30 seconds.",
    "greeting": "Open the call with the standard greeting and your name.",
    "negative": "Acknowledge the customer's frustration and summarise the next steps before closing.",
    "effort": "Reduce customer effort: resolve the issue in one contact instead of transferring.",
    "default": "Keep confirming the customer's understanding before closing the call.",
}
COMPLIANCE_RATES = {"identity_verification": 0.85, "mandatory_disclosures": 0.8, "purpose_declaration": 0.9}
COMPLIANCE_DETAILS = {
    "identity_verification": ("Agent verified the customer's identity.", "No identity verification found."),
    "mandatory_disclosures": ("Recording disclosure was read.", "The recording disclosure was not read."),
    "purpose_declaration": (
        "Agent stated the purpose of the call.",
        "The purpose of the call was not stated.",
    ),
}
MAX_SEGMENTS = 12


@dataclass(frozen=True)
class CallResults:
    """The sections of a completed analysis, as JSON-ready dicts (treat them as read-only)."""

    transcript: dict[str, Any]
    results: dict[str, Any]
    sentiment: str
    summary: str


def _rng(audio_sha256: str) -> random.Random:
    return random.Random(int(audio_sha256[:16], 16))


@functools.lru_cache(maxsize=4096)
def build_results(audio_sha256: str, duration_seconds: float) -> CallResults:
    """
    Build the results of a call from its audio hash and duration.

    :param audio_sha256: Hex SHA-256 of the audio bytes; seeds every choice.
    :param duration_seconds: The call's length; segments are laid out across it.
    """
    rng = _rng(audio_sha256)
    duration = max(duration_seconds, 1.0)
    transcript = _transcript(rng, duration)
    compliance = {}
    for name, rate in COMPLIANCE_RATES.items():
        passed = rng.random() < rate
        compliance[name] = {
            "passed": passed,
            "flagged": not passed,
            "details": COMPLIANCE_DETAILS[name][0 if passed else 1],
        }
    label = rng.choices(("positive", "neutral", "negative"), weights=(5, 3, 2))[0]
    ranges = {"positive": (0.3, 0.95), "neutral": (-0.2, 0.25), "negative": (-0.9, -0.3)}
    score = round(rng.uniform(*ranges[label]), 2)
    greeting = rng.random() < 0.9
    empathy_score = round(rng.uniform(0.2, 0.98), 2)
    examples = rng.sample(EMPATHY_EXAMPLES, k=rng.randint(0 if empathy_score < 0.4 else 1, 3))
    effort = {"positive": (1, 3), "neutral": (2, 4), "negative": (3, 5)}[label]
    customer_effort_score = rng.randint(*effort)
    recommendations = [RECOMMENDATIONS[name] for name, check in compliance.items() if check["flagged"]]
    if not greeting:
        recommendations.append(RECOMMENDATIONS["greeting"])
    if label == "negative":
        recommendations.append(RECOMMENDATIONS["negative"])
    if customer_effort_score >= 4:
        recommendations.append(RECOMMENDATIONS["effort"])
    if not recommendations:
        recommendations.append(RECOMMENDATIONS["default"])
    results = {
        "compliance": compliance,
        "quality": {
            "sentiment_analysis": {"overall": label, "score": score},
            "greeting": {"present": greeting},
            "empathetic_language": {"score": empathy_score, "examples": examples},
        },
        "coaching": {"recommendations": recommendations, "customer_effort_score": customer_effort_score},
    }
    flagged = [name.replace("_", " ") for name, check in compliance.items() if check["flagged"]]
    summary = (
        f"A {duration:.0f}-second call with {label} overall sentiment; "
        f"customer effort {customer_effort_score}/5; "
        + (f"compliance issues: {', '.join(flagged)}." if flagged else "all compliance checks passed.")
    )
    return CallResults(transcript=transcript, results=results, sentiment=label, summary=summary)


def _transcript(rng: random.Random, duration: float) -> dict[str, Any]:
    count = max(2, min(MAX_SEGMENTS, int(duration // 20) + 2))
    cuts = sorted(rng.uniform(0.0, duration) for _ in range(count - 1))
    bounds = [0.0, *cuts, duration]
    segments = []
    for index in range(count):
        speaker = "agent" if index % 2 == 0 else "customer"
        if index == 0:
            text = AGENT_LINES[0]
        elif index == count - 1 and speaker == "agent":
            text = AGENT_LINES[-1]
        else:
            text = rng.choice(AGENT_LINES[1:-1] if speaker == "agent" else CUSTOMER_LINES)
        segments.append(
            {
                "speaker": speaker,
                "start": round(bounds[index], 2),
                "end": round(bounds[index + 1], 2),
                "text": text,
            }
        )
    text = " ".join(f"{str(seg['speaker']).capitalize()}: {seg['text']}" for seg in segments)
    return {"text": text, "segments": segments, "language": LANGUAGE}
