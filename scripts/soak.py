#!/usr/bin/env python3
"""Soak: the fault scenarios of tests/faults at larger counts, for manual runs.

The very same scenario code and checks as the pytest tier (tests/faults/scenarios.py), with
500 events where the tier uses 100-200, more kills, and the issue's 1,000 retries waiting
for a broken endpoint. Prints one line per scenario (events sent, delivered, duplicated,
lost, recovery time) and exits non-zero if any scenario failed.

    .venv/bin/python scripts/soak.py                    # everything, about 4 minutes
    .venv/bin/python scripts/soak.py --only crash api   # scenarios whose name starts so
    .venv/bin/python scripts/soak.py --scale 2          # twice the counts
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import pathlib
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults import scenarios  # noqa: E402
from tests.faults.conftest import CrashableOperator, operator_config  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    Cluster,
    FaultyReceiver,
    FaultyStandin,
    Report,
    serve_receiver,
    serve_standin,
)
from tests.faults.runner import OperatorProcess  # noqa: E402

from webhook_operator.domain.health import DisableRules  # noqa: E402


@dataclass
class Parts:
    standin: FaultyStandin
    cluster: Cluster
    receiver: FaultyReceiver
    second: FaultyReceiver
    process: OperatorProcess
    threaded: Callable[..., Awaitable[CrashableOperator]]


@contextlib.asynccontextmanager
async def parts(workdir: pathlib.Path) -> AsyncIterator[Parts]:
    async with (
        serve_standin() as standin,
        Cluster(standin) as cluster,
        serve_receiver() as receiver,
        serve_receiver() as second,
    ):
        started: list[CrashableOperator] = []

        async def threaded(**overrides: Any) -> CrashableOperator:
            running = CrashableOperator(operator_config(standin, **overrides))
            await running.start()
            started.append(running)
            return running

        process = OperatorProcess(str(standin.url), pathlib.Path(tempfile.mkdtemp(dir=workdir)))
        try:
            yield Parts(standin, cluster, receiver, second, process, threaded)
        finally:
            await process.close()
            for running in started:
                await running.stop()


class ThreadedCrash:
    def __init__(self, start: Callable[[], Awaitable[CrashableOperator]]) -> None:
        self._start = start
        self.running: CrashableOperator | None = None

    async def start(self) -> None:
        if self.running is None:
            self.running = await self._start()
        else:
            await self.running.start()

    async def kill(self) -> float:
        assert self.running is not None
        return await self.running.crash()


async def started(process: OperatorProcess, *args: str) -> OperatorProcess:
    process.args = (*process.args, *args)
    await process.start()
    return process


def n(count: int, scale: float) -> int:
    return max(1, round(count * scale))


SCENARIOS: dict[str, Callable[[Parts, float], Awaitable[Report]]] = {
    "crash-process": lambda p, s: scenarios.crash_scenario(
        f"crash: SIGKILL process x6, {n(500, s)} events",
        cluster=p.cluster,
        standin=p.standin,
        receivers=(p.receiver, p.second),
        operator=p.process,
        events=n(500, s),
        modes=("mid-delivery", "before", "after") * 2,
        rate=30,
        finish_timeout=180,
    ),
    "crash-thread": lambda p, s: scenarios.crash_scenario(
        f"crash: freeze in-thread x6, {n(500, s)} events",
        cluster=p.cluster,
        standin=p.standin,
        receivers=(p.receiver, p.second),
        operator=ThreadedCrash(p.threaded),
        events=n(500, s),
        modes=("mid-delivery", "before", "after") * 2,
        rate=60,
        finish_timeout=180,
    ),
    "api": lambda p, s: scenarios.api_faults_scenario(
        f"api: errors + lost answers + cuts, {n(500, s)} events",
        cluster=p.cluster,
        standin=p.standin,
        receiver=p.receiver,
        operator=ThreadedCrash(p.threaded),
        events=n(500, s),
        rate=60,
        finish_timeout=180,
    ),
    # The latency, against the operator as its own process: in a thread it shares one interpreter
    # with the stand-in and the receivers, and measures their CPU contention more than its queue.
    "receivers-hol": lambda p, s: scenarios.head_of_line_scenario(
        f"receivers: head-of-line (process, no circuit), {n(1000, s)} + {n(100, s)}",
        cluster=p.cluster,
        standin=p.standin,
        receiver=p.receiver,
        start_operator=lambda: started(
            p.process, "--disable-after-failures", "1000000", "--circuit-after-failures", "0"
        ),
        retrying=n(1000, s),
        hanging=n(100, s),
        fresh=30,
        fresh_rate=10,
        latency_bound=1.0,
    ),
    # The engine's memory, in a thread (where the engine can be looked at): same storm, with the
    # default circuit (the broken endpoints' deliveries wait for probes).
    "receivers-memory": lambda p, s: scenarios.head_of_line_scenario(
        f"receivers: storm in-thread, memory, {n(1000, s)} + {n(100, s)}",
        cluster=p.cluster,
        standin=p.standin,
        receiver=p.receiver,
        start_operator=lambda: p.threaded(disable_rules=DisableRules(1_000_000, 86400.0)),
        retrying=n(1000, s),
        hanging=n(100, s),
        fresh=30,
        fresh_rate=10,
        latency_bound=10.0,
    ),
    "receivers-bad": lambda p, s: scenarios.bad_receivers_scenario(
        f"receivers: slow/hang/reset/5xx/429/away/gone, {n(50, s)} events",
        cluster=p.cluster,
        receiver=p.receiver,
        away=p.second,
        start_operator=p.threaded,
        events=n(50, s),
    ),
    "subscription-deleted": lambda p, s: scenarios.deleted_mid_way_scenario(
        f"subscription deleted mid-way, {n(300, s)} events",
        cluster=p.cluster,
        receiver=p.receiver,
        start_operator=p.threaded,
        events=n(300, s),
        delete_after=n(60, s),
    ),
    "subscription-paused": lambda p, s: scenarios.paused_mid_way_scenario(
        f"subscription paused mid-way, {n(300, s)} events",
        cluster=p.cluster,
        receiver=p.receiver,
        start_operator=p.threaded,
        events=n(300, s),
        pause_after=n(60, s),
    ),
    "shutdown-sigterm": lambda p, s: scenarios.sigterm_scenario(
        f"shutdown: SIGTERM process x5, {5 * n(10, s)} events",
        cluster=p.cluster,
        receiver=p.receiver,
        operator=p.process,
        events=n(10, s),
        cycles=5,
    ),
    "shutdown-grace": lambda p, s: scenarios.grace_exceeded_scenario(
        "shutdown: request hung past the grace",
        cluster=p.cluster,
        receiver=p.receiver,
        start_operator=p.threaded,
    ),
}


async def run(selected: list[str], scale: float, workdir: pathlib.Path) -> int:
    results: list[tuple[str, Report | None, float, str]] = []
    for name in selected:
        started = time.monotonic()
        print(f"--- {name} ...", flush=True)
        try:
            async with parts(workdir) as p:
                report = await SCENARIOS[name](p, scale)
            results.append((name, report, time.monotonic() - started, ""))
            print(f"    {report.line()}", flush=True)
        except Exception as error:
            trace = traceback.format_exc(limit=3)
            results.append((name, None, time.monotonic() - started, f"{type(error).__name__}: {error}"))
            print(f"    FAILED after {time.monotonic() - started:.0f}s: {error}\n{trace}", flush=True)
    print("\n=== soak summary ===")
    for name, report, took, error in results:
        line = report.line() if report is not None else f"{name:<44} FAILED: {error[:300]}"
        print(f"{line}  [{took:.0f}s]")
    failed = [name for name, report, _, _ in results if report is None or report.lost]
    print(
        f"\n{len(results) - len(failed)} of {len(results)} scenarios passed"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", nargs="*", default=[], metavar="PREFIX", help="scenarios whose name starts so"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the counts (default 1)")
    parser.add_argument("--verbose", action="store_true", help="show the operator's warnings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    selected = [name for name in SCENARIOS if not args.only or any(name.startswith(o) for o in args.only)]
    if not selected:
        parser.error(f"no scenario matches {args.only}; there are {list(SCENARIOS)}")
    with tempfile.TemporaryDirectory(prefix="webhook-soak-") as workdir:
        return asyncio.run(run(selected, args.scale, pathlib.Path(workdir)))


if __name__ == "__main__":
    sys.exit(main())
