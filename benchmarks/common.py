"""What the benchmark's parts share: its settings and targets, progress lines, percentiles."""

from __future__ import annotations

import dataclasses
import math
import resource
import statistics
import sys
import time
from typing import Any

EVENTS, SUBS = "webhookevents", "webhooksubscriptions"
CONCURRENT_CREATORS = 32
HTTP_CONCURRENCY = 64


@dataclasses.dataclass
class Settings:
    events: int = 2000
    fanout: int = 200
    storm: int = 1000
    storm_max_delay: int = 10  # the broken subscription's retry: Exponential from 1 s, capped here
    memory: int = 10_000
    startup_events: int = 10_000
    startup_subs: int = 1_000
    ceiling_ops: int = 2000
    http_requests: int = 5000
    paced_seconds: float = 8.0
    hol_rate: float = 25.0
    hol_seconds: float = 10.0
    fanout_reps: int = 3
    workers: int = 64
    circuit_after_failures: int | None = None  # None: the operator's default
    kubeconfig: str | None = None
    quick: bool = False
    json_only: bool = False
    profile: str | None = None
    keep_logs: str | None = None
    phases: tuple[str, ...] = ("sustained", "half_rate", "head_of_line", "fanout", "memory", "startup")


QUICK: dict[str, Any] = {
    "events": 200,
    "fanout": 20,
    "storm": 100,
    "memory": 500,
    "startup_events": 300,
    "startup_subs": 30,
    "ceiling_ops": 300,
    "http_requests": 600,
    "paced_seconds": 1.5,
    "hol_rate": 20.0,
    "hol_seconds": 2.0,
    "fanout_reps": 1,
}

TARGETS = {
    # metric: (comparison, bound, what it is)
    "throughput_over_L_api": (">=", 0.7, "sustained throughput / L_api"),
    "half_rate_p50_ms": ("<=", 50.0, "latency p50 at half rate"),
    "half_rate_p99_ms": ("<=", 500.0, "latency p99 at half rate"),
    "fanout_last_receipt_s": ("<=", 0.25, "fan-out: the last receipt (s)"),
    "fanout_delivered_s": ("<=", 1.0, "fan-out to Delivered (s)"),
    "hol_p99_ratio": ("<=", 1.5, "healthy p99 in storm / unloaded"),
    "api_writes_per_event": ("<=", 2.0, "API writes per event (with its create)"),
    "rss_mb_at_memory": ("<=", 200.0, "RSS with the memory set known"),
    "startup_writes_to_finished": ("<=", 0, "writes to finished events after a restart"),
    "startup_new_event_s": ("<=", 10.0, "a new event's receipt after a restart (s)"),
    # Only with --kubeconfig: the sustained phase again against the stand-in, in the same run.
    "cpu_real_over_standin": ("<=", 1.5, "operator CPU per event, real server / stand-in"),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) of latencies in seconds, as milliseconds."""
    if not values:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return round(ordered[index] * 1000, 2)

    return {"p50_ms": rank(50), "p95_ms": rank(95), "p99_ms": rank(99)}


def event_data(i: int) -> dict[str, Any]:
    """A typical small order event (about 300 bytes of JSON)."""
    return {
        "orderId": 100_000 + i,
        "customer": {"id": f"cus_{i % 977:05d}", "country": "DE"},
        "amount": {"value": f"{(i % 500) + 9.99:.2f}", "currency": "EUR"},
        "items": [{"sku": f"SKU-{(i * 7) % 1000:04d}", "quantity": 1 + i % 3} for _ in range(3)],
        "channel": "web",
    }


@dataclasses.dataclass
class Created:
    uid: str
    returned: float  # time.monotonic() when the create call returned


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None
