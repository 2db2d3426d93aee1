"""The benchmark runs, end to end, and reports every metric: `python -m benchmarks --quick`, smaller.

Only that it works and its numbers are sane, never how fast: the targets depend on the machine
(docs/performance.md has the numbers and how to reproduce them).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--quick", "--json-only", "--events", "100", "--fanout", "10", "--storm", "40", "--memory", "200"]


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *SMALL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"the benchmark failed:\n{done.stderr[-4000:]}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json-only prints one line, got {done.stdout[:2000]!r}"
    parsed: dict[str, Any] = json.loads(lines[0])
    parsed["_wall_s"] = time.monotonic() - started
    return parsed


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_every_ceiling_and_rate_is_a_positive_number(results: dict[str, Any]) -> None:
    for metric in (
        "L_create",
        "L_status",
        "L_api",
        "L_http_sender",
        "L_http_aiohttp",
        "throughput",
        "throughput_over_L_api",
        "operator_cpu_s_per_1000",
        "peak_rss_mb",
        "rss_mb_at_memory",
    ):
        assert positive(results[metric]), (metric, results.get(metric))
    assert results["L_api"] < min(results["L_create"], results["L_status"])
    assert results["throughput_over_L_api"] == pytest.approx(
        results["throughput"] / results["L_api"], rel=0.01
    )


@pytest.mark.slow
def test_latencies_fanout_and_head_of_line_are_measured(results: dict[str, Any]) -> None:
    for block in (
        results["latency_full"],
        results["half_rate"],
        results["hol"]["unloaded"],
        results["hol"]["storm"],
    ):
        assert positive(block["p50_ms"]) and block["p50_ms"] <= block["p95_ms"] <= block["p99_ms"], block
    assert positive(results["hol_p99_ratio"])
    # The storm was on throughout: its events still open, the broken endpoint's circuit open (by
    # default the storm is held and probed, not retried one request per delivery).
    assert results["hol"]["storm_open_events"] >= results["hol"]["storm_deliveries"]
    assert results["hol"]["circuits_open"] == 1
    assert positive(results["fanout_last_receipt_s"]) and positive(results["fanout_delivered_s"])
    assert all(rep["received"] == 10 for rep in results["fanout"]["reps"])


@pytest.mark.slow
def test_nothing_is_lost_and_the_cost_is_counted(results: dict[str, Any]) -> None:
    assert results["lost"] == 0
    assert results["sustained_received"] == results["sustained_events"] == 100
    assert results["sustained_duplicates"] == 0
    # Each event is at least its own create; the stand-in counts every write it served.
    assert 1.0 <= results["api_writes_per_event"] < 4.0
    assert results["api_writes_by_kind"]["create webhookevents"] == pytest.approx(1.0)
    assert results["memory_subscriptions"] == 200 and results["memory_settled"] is True
    assert results["memory_finished_events"] >= 200
    assert results["operator_exit_code"] == 0, "the operator stopped cleanly on SIGTERM"


@pytest.mark.slow
def test_a_restarted_operator_leaves_its_finished_history_alone(results: dict[str, Any]) -> None:
    assert results["startup_events"] == 300
    assert results["startup_writes_to_finished"] == 0
    assert results["startup_new_event_s"] is not None and results["startup_new_event_s"] < 10


@pytest.mark.slow
def test_every_target_is_judged_and_the_run_stays_quick(results: dict[str, Any]) -> None:
    assert set(results["targets"]) == {
        "throughput_over_L_api",
        "half_rate_p50_ms",
        "half_rate_p99_ms",
        "fanout_last_receipt_s",
        "fanout_delivered_s",
        "hol_p99_ratio",
        "api_writes_per_event",
        "rss_mb_at_memory",
        "startup_writes_to_finished",
        "startup_new_event_s",
    }
    assert all(verdict["value"] is not None for verdict in results["targets"].values())
    assert results["_wall_s"] < 60, "the smoke run must stay short enough for every test run"
