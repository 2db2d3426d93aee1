"""An endpoint's circuit: after a run of failed attempts, one probe at a time instead of a storm.

Without it, an endpoint that is down gets every due retry of every event as its own request:
1,000 events retrying cost 1,000 requests and 1,000 status writes per backoff round, and the
CPU they take delays deliveries to healthy endpoints (docs/performance.md, head-of-line).
With it, after `threshold` transient failures in a row the circuit opens: the endpoint's
deliveries wait (reason `EndpointFailing`, their attempts unspent; one fails when its remaining
attempts would have run out, see `deliveries.give_up_time`) and one of them is sent as a probe
when the circuit's own backoff has passed. A probe that succeeds closes the circuit and
the waiting deliveries go out (within `maxInFlight`); one that fails doubles the wait, up to the
subscription's `retry.maxDelaySeconds`. A permanent answer (4xx) says nothing about the
endpoint being down and does not count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from webhook_operator.domain.backoff import RetryPolicy, retry_delay
from webhook_operator.domain.outcomes import Verdict

DEFAULT_THRESHOLD = 10  # transient failures in a row that open the circuit


@dataclass(frozen=True)
class Circuit:
    failures: int = 0  # transient failures in a row
    probes_failed: int = 0  # since the circuit opened: the exponent of its backoff
    retry_at: dt.datetime | None = None  # open until then; None: closed
    generation: int = 0  # the subscription spec it was opened for: a new spec closes it

    @property
    def is_closed(self) -> bool:
        return self.retry_at is None

    def probe_due(self, now: dt.datetime) -> bool:
        """Open, and its wait is over: one delivery may be sent to find out."""
        return self.retry_at is not None and now >= self.retry_at


def after_attempt(
    circuit: Circuit,
    verdict: Verdict,
    *,
    threshold: int,
    policy: RetryPolicy,
    now: dt.datetime,
    jitter: float,
    probe: bool = False,
) -> Circuit:
    """The circuit after an attempt to its endpoint ended with `verdict`.

    `probe`: the attempt was the open circuit's probe. Other attempts that end while it is open
    were sent before it opened: their failures neither reopen it nor lengthen its wait.
    """
    if verdict is Verdict.SUCCESS:
        return Circuit(generation=circuit.generation)
    if verdict is not Verdict.RETRY:
        return circuit
    failures = circuit.failures + 1
    if threshold <= 0 or failures < threshold or (circuit.retry_at is not None and not probe):
        return replace(circuit, failures=failures)
    probes_failed = circuit.probes_failed + 1 if circuit.retry_at is not None else 1
    # The circuit waits as a delivery would after that many failures, so it never out-waits the
    # subscription's own retry policy (maxDelaySeconds caps both).
    wait = retry_delay(policy, probes_failed, jitter)
    return replace(
        circuit,
        failures=failures,
        probes_failed=probes_failed,
        retry_at=now + dt.timedelta(seconds=wait),
    )


def failing_message(circuit: Circuit) -> str:
    when = circuit.retry_at.strftime("%H:%M:%SZ") if circuit.retry_at is not None else "now"
    return (
        f"the endpoint failed {circuit.failures} attempts in a row; deliveries wait for a probe "
        f"to succeed (next probe at {when})"
    )
