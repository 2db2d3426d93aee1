"""`python -m benchmarks`: the operator against the ceilings of the machine and API server it runs on.

One run, one machine, one API server (the embedded stand-in by default, or a real cluster with
`--kubeconfig`), in this order:

1. ceilings, before the operator starts, in a namespace it does not watch: `L_create` (custom
   resource creates, 32 concurrent), `L_status` (status merge-patches, 32 concurrent),
   `L_api = 1/(1/L_create + 1/L_status)`; `L_http`, POSTs per second from this process to the
   receiver process (64 concurrent), with the operator's own `Sender` and with plain aiohttp;
2. sustained: N events to one subscription, created as fast as the API takes them;
3. latency at half of the sustained rate (paced creation);
4. head-of-line: a paced healthy stream alone, then again while 1,000 deliveries retry
   against an endpoint that answers 503;
5. fan-out: one event to 200 subscriptions, time to the last receipt and to Delivered=True;
6. memory: RSS with 10,000 subscriptions and 10,000 finished events known to the operator;
7. start-up: a new operator started into 10,000 finished events and 1,000 subscriptions.

With `--kubeconfig`, the sustained phase then runs once more against the stand-in, so the
operator's CPU per event on the real server is compared with its stand-in figure in one run.

Progress goes to stderr; stdout gets a table and one JSON line (only the JSON line with
`--json-only`). docs/performance.md explains the method and the numbers.

Here: the run and its command line. The phases are in `phases_throughput` (1-3) and
`phases_load` (4-6, and the start-up phase of `startup`), on the `harness` they share;
`report` judges and prints the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from benchmarks import procs
from benchmarks.cluster import Cluster, connection_from_kubeconfig
from benchmarks.common import (
    QUICK,
    Settings,
    log,
)
from benchmarks.phases_load import LoadPhases
from benchmarks.phases_throughput import ThroughputPhases
from benchmarks.report import judge, table
from webhook_operator import __version__


class Benchmark(ThroughputPhases, LoadPhases):
    """Every phase; `run` calls them by name (`Settings.phases`)."""


async def run(settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(settings.keep_logs or tempfile.mkdtemp(prefix="webhook-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    helpers: dict[str, procs.Helper] = {}
    with contextlib.ExitStack() as stack:
        logs = {
            name: stack.enter_context((workdir / f"{name}.log").open("wb"))
            for name in ("standin", "receiver", "operator")
        }
        if settings.kubeconfig:
            connection = connection_from_kubeconfig(settings.kubeconfig)
        else:
            helpers["standin"] = stack.enter_context(
                procs.running("standin", "benchmarks.standin_proc", log=logs["standin"])
            )
            connection = kopf.ConnectionInfo(server=helpers["standin"].info["url"], insecure=True)
        helpers["receiver"] = stack.enter_context(
            procs.running("receiver", "benchmarks.receiver_proc", log=logs["receiver"])
        )
        async with (
            Cluster(connection, standin=not settings.kubeconfig) as cluster,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http,
        ):
            bench = Benchmark(settings, cluster, helpers["receiver"].info["url"], http, workdir, helpers)
            if settings.kubeconfig:
                await cluster.check_crds()
            bench.ns = await cluster.create_namespace("webhook-bench-")
            bench.ns_memory, bench.ns_ceiling = f"{bench.ns}-mem", f"{bench.ns}-ceil"
            bench.ns_start = f"{bench.ns}-start"
            for namespace in (bench.ns_memory, bench.ns_ceiling, bench.ns_start):
                await cluster.ensure_namespace(namespace)
            log(f"namespaces {bench.ns}, {bench.ns_memory}, {bench.ns_ceiling}; logs in {workdir}")
            try:
                await bench.ceilings()
                await bench.http_ceiling()
                await bench.start_operator(logs["operator"])
                for phase in settings.phases:
                    await getattr(bench, phase)()
                final = await bench.op_stats()
                bench.results.setdefault("peak_rss_mb", round(final["vmhwm"] / 1024, 1))
                bench.results["operator_cpu_s_total"] = round(final["cpu_seconds"], 2)
            finally:
                if bench.operator is not None:
                    code = procs.stop(bench.operator, timeout=30)
                    bench.results["operator_exit_code"] = code
                if settings.kubeconfig:
                    for namespace in (bench.ns, bench.ns_memory, bench.ns_ceiling, bench.ns_start):
                        with contextlib.suppress(Exception):
                            await cluster.delete_namespace(namespace)
                    log("namespaces deleted")
    results = bench.results
    results["lost"] = (
        results.get("sustained_lost", 0)
        + (results.get("half_rate") or {}).get("lost", 0)
        + (results.get("hol") or {}).get("lost", 0)
        + results.get("fanout_lost", 0)
    )
    results["targets"] = judge(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["setup"] = {
        "api": "kubeconfig" if settings.kubeconfig else "stand-in",
        "version": __version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "loadavg_at_start": load_at_start,
        "settings": dataclasses.asdict(settings) | {"kubeconfig": bool(settings.kubeconfig)},
        "logs": str(workdir),
    }
    return results


def parse(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events in the sustained phase (default 2000; quick 200)")
    parser.add_argument(
        "--fanout", type=int, help="subscriptions one event fans out to (default 200; quick 20)"
    )
    parser.add_argument(
        "--storm", type=int, help="deliveries retrying in the head-of-line phase (default 1000)"
    )
    parser.add_argument(
        "--storm-max-delay",
        type=int,
        default=Settings.storm_max_delay,
        help="the broken endpoint's retry.maxDelaySeconds (Exponential from 1 s; default 10)",
    )
    parser.add_argument(
        "--memory", type=int, help="subscriptions and finished events for the memory reading (default 10000)"
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="run against this cluster (CRDs installed) in fresh namespaces, deleted afterwards",
    )
    parser.add_argument("--quick", action="store_true", help="a small run for the smoke test (~20 s)")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line on stdout")
    parser.add_argument("--workers", type=int, default=64, help="the operator's event workers (default 64)")
    parser.add_argument(
        "--circuit-after-failures",
        type=int,
        metavar="N",
        help="the operator's --circuit-after-failures (0: no circuit, every retry is sent)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="pyinstrument profile of the operator during the sustained phase (text; FILE.html)",
    )
    parser.add_argument("--logs", metavar="DIR", help="keep the helper processes' logs in DIR")
    parser.add_argument(
        "--phases",
        default=",".join(Settings.phases),
        help="run only these phases, in this order (default: all; the ceilings always run)",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        quick=args.quick,
        json_only=args.json_only,
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        circuit_after_failures=args.circuit_after_failures,
        profile=args.profile,
        keep_logs=args.logs,
        phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()),
        storm_max_delay=args.storm_max_delay,
    )
    unknown = set(settings.phases) - set(Settings.phases)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; known: {', '.join(Settings.phases)}")
    if "half_rate" in settings.phases and "sustained" not in settings.phases:
        parser.error("half_rate runs at half of the sustained rate: it needs the sustained phase")
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK)
    for name in ("events", "fanout", "storm", "memory"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if settings.profile:
        settings.profile = str(Path(settings.profile).resolve())
    return settings


def compare_with_standin(settings: Settings, results: dict[str, Any]) -> None:
    """The sustained phase again, against the stand-in: the operator's CPU per event over TLS to a
    real API server (managedFields in every object) against its cost with the stand-in."""
    log("the sustained phase again against the stand-in, for the CPU per event")
    standin = asyncio.run(
        run(dataclasses.replace(settings, kubeconfig=None, phases=("sustained",), profile=None))
    )
    results["standin"] = {
        key: standin.get(key)
        for key in ("throughput", "throughput_over_L_api", "operator_cpu_s_per_1000", "latency_full")
    }
    real, base = results.get("operator_cpu_s_per_1000"), standin.get("operator_cpu_s_per_1000")
    if real and base:
        results["cpu_real_over_standin"] = round(real / base, 3)
    results["targets"] = judge(results)


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    results = asyncio.run(run(settings))
    if settings.kubeconfig and "sustained" in settings.phases:
        compare_with_standin(settings, results)
    if not settings.json_only:
        print(table(results))
    print(json.dumps(results, separators=(",", ":")))
    return 0
