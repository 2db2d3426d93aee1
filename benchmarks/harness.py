"""The benchmark's harness: the processes it runs, and creating, timing and reading events.

The phases (`phases_throughput`, `phases_load`) are methods of `Harness` subclasses; `run.Benchmark`
combines them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import procs
from benchmarks.cluster import Cluster, run_concurrently
from benchmarks.common import (
    CONCURRENT_CREATORS,
    EVENTS,
    SUBS,
    Created,
    Settings,
    event_data,
    log,
    percentiles,
)


class Harness:
    def __init__(
        self,
        settings: Settings,
        cluster: Cluster,
        receiver_url: str,
        http: aiohttp.ClientSession,
        workdir: Path,
        helpers: dict[str, procs.Helper],
    ) -> None:
        self.s = settings
        self._helpers = helpers
        self.cluster = cluster
        self.rx = receiver_url
        self.http = http
        self.workdir = workdir
        self.results: dict[str, Any] = {}
        self.operator: procs.Helper | None = None
        self.control = ""
        self.ns = ""
        self.ns_memory = ""
        self.ns_ceiling = ""
        self.ns_start = ""
        self._operator_log: Any = None
        self.main_events = 0  # events created in the main namespace so far

    # -- the receiver and the operator's control port ------------------------------------------

    async def rx_count(self, prefix: str) -> int:
        async with self.http.get(self.rx + "/_bench/counts") as response:
            counts = (await response.json())["counts"]
        return sum(n for path, n in counts.items() if path.startswith(prefix))

    async def rx_id_count(self, uid: str) -> int:
        async with self.http.get(self.rx + "/_bench/id", params={"id": uid}) as response:
            return int((await response.json())["count"])

    async def rx_arrivals(self, prefix: str) -> dict[str, list[float]]:
        async with self.http.get(self.rx + "/_bench/arrivals", params={"prefix": prefix}) as response:
            raw = (await response.json())["arrivals"]
        found: dict[str, list[float]] = {}
        for _path, uid, at in raw:
            found.setdefault(uid, []).append(at)
        return found

    async def op_stats(self) -> dict[str, Any]:
        params = [("ns", self.ns), ("ns", self.ns_memory)]
        async with self.http.get(self.control + "/stats", params=params) as response:
            return dict(await response.json())

    async def op_settled(self, timeout: float) -> dict[str, Any]:
        """Wait until the operator has had nothing open, queued or in flight for 0.3 s (an event
        still coming in on its watch would have been queued meanwhile)."""
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while True:
            stats = await self.op_stats()
            idle = stats["events_open"] == 0 and stats["queued"] == 0 and stats["in_flight"] == 0
            now = time.monotonic()
            idle_since = (idle_since or now) if idle else None
            if idle_since is not None and now - idle_since > 0.3:
                return stats
            if time.monotonic() > deadline:
                log(f"the operator did not settle in {timeout:.0f} s: {stats}")
                return stats
            await asyncio.sleep(0.05)

    # -- producing ---------------------------------------------------------------------------------

    async def create_event(self, name: str, type_: str, i: int, namespace: str | None = None) -> Created:
        created = await self.cluster.create(
            EVENTS, namespace or self.ns, name, {"type": type_, "data": event_data(i), "source": "/bench"}
        )
        if namespace in (None, self.ns):
            self.main_events += 1
        return Created(created["metadata"]["uid"], time.monotonic())

    async def burst(self, prefix: str, type_: str, n: int) -> tuple[float, dict[str, Created]]:
        """Create n events as fast as the API takes them; (start time, name -> Created)."""
        done: dict[str, Created] = {}

        def job(i: int) -> Callable[[], Awaitable[None]]:
            async def create() -> None:
                done[f"{prefix}-{i:06d}"] = await self.create_event(f"{prefix}-{i:06d}", type_, i)

            return create

        started = time.monotonic()
        await run_concurrently((job(i) for i in range(n)), CONCURRENT_CREATORS)
        return started, done

    async def paced(self, prefix: str, type_: str, n: int, rate: float) -> tuple[float, dict[str, Created]]:
        """Create n events at `rate` per second, each on its own schedule (a slow create delays none)."""
        done: dict[str, Created] = {}
        limit = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with limit:
                done[f"{prefix}-{i:06d}"] = await self.create_event(f"{prefix}-{i:06d}", type_, i)

        started = time.monotonic() + 0.02
        tasks = []
        for i in range(n):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        return started, done

    async def receipts(
        self, prefix: str, created: dict[str, Created], timeout: float
    ) -> dict[str, list[float]]:
        """Wait until every created event arrived under `prefix` (or the timeout); uid -> arrivals."""
        wanted = {c.uid for c in created.values()}
        deadline = time.monotonic() + timeout
        target = len(wanted)
        while True:
            if await self.rx_count(prefix) >= target or time.monotonic() > deadline:
                arrivals = {
                    uid: times for uid, times in (await self.rx_arrivals(prefix)).items() if uid in wanted
                }
                count = len(arrivals)
                if count >= target or time.monotonic() > deadline:
                    if count < target:
                        log(f"{target - count} of {target} events not received after {timeout:.0f} s")
                    return arrivals
            await asyncio.sleep(0.05)

    @staticmethod
    def latencies(created: dict[str, Created], arrivals: dict[str, list[float]]) -> list[float]:
        return [min(arrivals[c.uid]) - c.returned for c in created.values() if c.uid in arrivals]

    async def split(
        self, prefix: str, created: dict[str, Created], arrivals: dict[str, list[float]]
    ) -> dict[str, Any] | None:
        """Latency in two parts: create returned -> the API server wrote the ADDED watch event to
        the operator's watch, and that -> receipt (the operator: reading the watch, work queue,
        reconcile, HTTP). Only the stand-in says when it wrote (None against a cluster)."""
        seen = await self.cluster.added_written(prefix)
        if seen is None:
            return None
        watch = [seen[name] - c.returned for name, c in created.items() if name in seen]
        deliver = [
            min(arrivals[c.uid]) - seen[name]
            for name, c in created.items()
            if name in seen and c.uid in arrivals
        ]
        return {"watch": percentiles(watch), "deliver": percentiles(deliver)}

    async def wait_ready(self, namespace: str, names: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = {
                item["metadata"]["name"]
                for item in await self.cluster.list(SUBS, namespace)
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
            }
            if names <= ready:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"subscriptions not Ready after {timeout:.0f} s: {sorted(names - ready)[:5]}...")

    async def subscribe(
        self,
        name: str,
        path: str,
        types: list[str],
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        spec = {"url": self.rx + path, "eventTypes": types, **extra}
        await self.cluster.create(SUBS, namespace or self.ns, name, spec, labels=labels)

    # -- phases ------------------------------------------------------------------------------------

    async def start_operator(self, log_file: Any) -> None:
        self._operator_log = log_file
        await self.launch_operator()
        await self.subscribe("sink", "/sink", ["bench.load"])
        await self.wait_ready(self.ns, {"sink"}, 30)
        _, warm = await self.burst("warmup", "bench.load", 50)
        await self.receipts("/sink", warm, 30)
        await self.op_settled(30)
        rss = self.operator.memory_kib()["vmrss"] / 1024
        log(f"operator ready (pid {self.operator.pid}, RSS {rss:.0f} MB), 'sink' Ready, warmed up")

    async def launch_operator(self) -> float:
        """Start the operator process; returns the monotonic time it reported ready."""
        where = (
            ["--kubeconfig", self.s.kubeconfig]
            if self.s.kubeconfig
            else ["--server", self.cluster.connection.server]
        )
        circuit = (
            ("--circuit-after-failures", str(self.s.circuit_after_failures))
            if self.s.circuit_after_failures is not None
            else ()
        )
        namespaces = [arg for ns in (self.ns, self.ns_memory, self.ns_start) for arg in ("-n", ns)]
        self.operator = await asyncio.to_thread(
            procs.start, "operator", "benchmarks.operator_proc", *where, *namespaces,
            "--workers", str(self.s.workers), *circuit, log=self._operator_log,
        )  # fmt: skip
        self.control = self.operator.info["control"]
        deadline = time.monotonic() + 60
        while not (await self.op_stats()).get("ready"):
            if time.monotonic() > deadline or self.operator.process.poll() is not None:
                raise RuntimeError("the operator did not get ready; see its log")
            await asyncio.sleep(0.05)
        return time.monotonic()

    async def stop_operator(self) -> None:
        if self.operator is not None:
            await asyncio.to_thread(procs.stop, self.operator, 30)

    @property
    def helpers(self) -> dict[str, procs.Helper]:
        """Every process whose CPU is counted: the stand-in (if any), the receiver, the operator."""
        found = dict(self._helpers)
        if self.operator is not None:
            found["operator"] = self.operator
        return found
