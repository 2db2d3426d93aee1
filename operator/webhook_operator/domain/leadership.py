"""Lease-based leader election, the decisions: whether this process may take or keep the Lease,
what it writes there, and when a leader that cannot renew must stop.

The protocol is client-go's (`tools/leaderelection`, used by controller-runtime), so the Lease
reads the same in `kubectl get lease` as any controller's:

- A holder renews every `retry_period`. A Lease whose record (holder, renewTime, ...) has not
  changed for `leaseDurationSeconds`, measured on the observer's own monotonic clock from when
  it first saw that record, has expired: anyone may take it. Clocks of different nodes need not
  agree; the times written to the Lease are informative only.
- A released Lease (holder cleared, as client-go's `ReleaseOnCancel`) may be taken at once.
- A leader stops delivering once `renew_deadline` has passed since the start of its last
  successful renewal: observers cannot count the Lease expired before `lease_duration` after
  they saw that renewal, which came later, so the gap (5 s by default) is the margin in which
  a leader that lost its API server finishes stopping before anyone else may start (no two
  senders).
"""

from __future__ import annotations

from dataclasses import dataclass

JITTER_FACTOR = 1.2  # client-go's: a standby retries after retry_period * (1 + up to 1.2)
STOP_MARGIN_SECONDS = 1.0  # a stopping leader's attempts end this long before its Lease can expire
RELEASED_LEASE_SECONDS = 1  # what client-go writes on release: expired almost at once, even to old clients


@dataclass(frozen=True)
class Timings:
    """controller-runtime's defaults: 15 s lease, 10 s renew deadline, 2 s retry."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go refuses the same combinations: each must leave room for the next.
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline > JITTER_FACTOR * self.retry_period > 0:
            raise ValueError(f"the renew deadline must be longer than {JITTER_FACTOR} x the retry period")

    def standby_delay(self, random_fraction: float) -> float:
        """How long a standby waits before trying again; `random_fraction` in [0, 1)."""
        return self.retry_period * (1.0 + JITTER_FACTOR * random_fraction)

    def must_stop(self, renewed_at: float, now: float) -> bool:
        """A leader whose last successful renewal started at `renewed_at` must stop delivering."""
        return now - renewed_at >= self.renew_deadline

    def stop_grace(self, renewed_at: float, now: float) -> float:
        """How long a leader that must stop may let attempts in flight run before cancelling them."""
        return max(0.0, renewed_at + self.lease_duration - STOP_MARGIN_SECONDS - now)


@dataclass(frozen=True)
class LeaseRecord:
    """The election's fields of a `coordination.k8s.io/v1` Lease spec."""

    holder: str = ""  # empty: released (or never held)
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    """A Lease record as this process saw it, and when (monotonic) it first saw it so."""

    record: LeaseRecord
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """The observation after reading `record`: its clock restarts only when the record changed."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def held_by_another(observation: Observation, identity: str, now: float) -> bool:
    """Someone else holds the Lease and it has not expired from where we stand."""
    record = observation.record
    return record.holder not in ("", identity) and now < observation.seen_at + record.lease_duration_seconds


def next_try_in(
    observation: Observation | None, timings: Timings, now: float, random_fraction: float
) -> float:
    """How long a standby waits before trying again: a jittered retry period, but no longer than
    until the holder's Lease expires from where we stand (a dead leader is replaced right after
    `lease_duration`, not up to a retry period and a half later)."""
    delay = timings.standby_delay(random_fraction)
    if observation is None or not observation.record.holder:
        return delay
    expires_in = observation.seen_at + observation.record.lease_duration_seconds - now
    return max(0.0, min(delay, expires_in))


def claim(current: LeaseRecord | None, identity: str, timings: Timings, wall_now: str) -> LeaseRecord:
    """The record that takes (or, for the holder, renews) the Lease at wall-clock time `wall_now`."""
    duration = max(1, round(timings.lease_duration))
    if current is not None and current.holder == identity:
        return LeaseRecord(
            identity, duration, current.acquire_time or wall_now, wall_now, current.transitions
        )
    transitions = 0 if current is None else current.transitions + 1
    return LeaseRecord(identity, duration, wall_now, wall_now, transitions)


def released(current: LeaseRecord, wall_now: str) -> LeaseRecord:
    """The record a leader writes when it steps down, so a standby may take over at once."""
    return LeaseRecord("", RELEASED_LEASE_SECONDS, wall_now, wall_now, current.transitions)
