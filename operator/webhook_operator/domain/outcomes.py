"""What an attempt's result means for the delivery: success, retry, fail, or gone."""

from __future__ import annotations

import enum
from dataclasses import dataclass

RETRYABLE_STATUS_CODES = frozenset({408, 425, 429})


class Verdict(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"  # transient: try again after a backoff
    FAIL = "fail"  # permanent: the delivery fails at once
    GONE = "gone"  # permanent, and the endpoint asks never to be called again (410)


@dataclass(frozen=True)
class AttemptResult:
    verdict: Verdict
    status_code: int | None = None
    error: str | None = None  # short, human, never a secret
    retry_after: float | None = None  # seconds, from the receiver's Retry-After
    duration: float = 0.0
    egress_refused: bool = False
    tls_problem: bool = False


def classify_status(code: int) -> Verdict:
    """Per the contract: 2xx success; 408/425/429/5xx retry; 410 gone; every other code fails."""
    if 200 <= code < 300:
        return Verdict.SUCCESS
    if code in RETRYABLE_STATUS_CODES or 500 <= code < 600:
        return Verdict.RETRY
    if code == 410:
        return Verdict.GONE
    return Verdict.FAIL


def describe_status(code: int, reason_phrase: str = "") -> str:
    text = f"HTTP {code}"
    if reason_phrase:
        text += " " + reason_phrase[:64]
    if 300 <= code < 400:
        text += " (redirects are not followed)"
    return text
