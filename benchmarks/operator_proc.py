"""The real operator in a process of its own, for the benchmark.

    python -m benchmarks.operator_proc --server URL -n NS [-n NS ...]
    python -m benchmarks.operator_proc --kubeconfig PATH -n NS [-n NS ...]

It runs `webhook_operator.main.run_operator` in its main thread exactly as `webhook-operator
run` does (SIGTERM/SIGINT stop it gracefully), with loopback allowed for the local receiver and
production logging (JSON, INFO) to stderr. Once serving it prints `{"control": URL, "pid": N}`.

The control server (a thread, so it never adds tasks to kopf's loop) answers:
- `GET /stats?ns=NS` the engine's counters, its API writes, this process's CPU and memory;
- `GET /added?prefix=P` when the ADDED watch event of each event named P... reached the
  engine (time.monotonic()), to split latency into watch lag and delivery;
- `POST /profile/start`, `POST /profile/stop?path=FILE` a pyinstrument profile of the loop.
Both run their work on the operator's loop thread through `call_soon_threadsafe`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http.server
import json
import logging
import os
import resource
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf

from benchmarks.cluster import connection_from_kubeconfig
from benchmarks.procs import memory_kib
from webhook_operator import logs
from webhook_operator.config import OperatorConfig
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.domain.health import DisableRules
from webhook_operator.domain.scope import NamespaceScope
from webhook_operator.main import run_operator
from webhook_operator.runtime import Engine


class Control:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.profiler: Any = None
        self.added: dict[str, float] = {}  # event name -> when its ADDED watch event reached us

    def adopt(self, engine: Engine) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        self.observed = 0
        self.last_observed = time.monotonic()
        observe = engine.event_observed

        def observed(event_type: str, body: Any) -> None:  # watch lag: is kopf still catching up?
            self.observed += 1
            self.last_observed = time.monotonic()
            if event_type == "ADDED" and len(self.added) < 50_000:
                self.added.setdefault(str(body.get("metadata", {}).get("name")), self.last_observed)
            observe(event_type, body)

        engine.event_observed = observed  # type: ignore[method-assign]

    def on_loop(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the operator's loop thread and wait for its result (no task is created)."""
        if self.loop is None:
            raise RuntimeError("the operator has not started yet")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(work())
            except BaseException as error:
                future.set_exception(error)

        self.loop.call_soon_threadsafe(call)
        return future.result(timeout=30)

    def stats(self, namespaces: list[str]) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        answer: dict[str, Any] = {
            "ready": self.ready.is_set(),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            **memory_kib(os.getpid()),
        }
        if self.engine is None or self.loop is None:
            return answer
        engine = self.engine

        def collect() -> dict[str, Any]:
            writes = {
                sample.labels["kind"]: sample.value
                for metric in engine.metrics.api_writes.collect()
                for sample in metric.samples
                if sample.name.endswith("_total")
            }
            return {
                **engine.stats(),
                "subscription_queue": len(engine.subscription_queue),
                "kube_writes": engine.kube.writes,
                "api_writes": writes,
                "watch_events": self.observed,
                "watch_idle_s": time.monotonic() - self.last_observed,
                "subscriptions": {ns: len(engine.subscriptions.in_namespace(ns)) for ns in namespaces},
            }

        answer.update(self.on_loop(collect))
        return answer

    def profile_start(self) -> None:
        from pyinstrument import Profiler

        def start() -> None:
            self.profiler = Profiler(interval=0.002, async_mode="disabled")
            self.profiler.start()

        self.on_loop(start)

    def profile_stop(self, path: str) -> None:
        def stop() -> None:
            if self.profiler is None:
                return
            self.profiler.stop()
            text = self.profiler.output_text(unicode=False, color=False, show_all=False)
            Path(path).write_text(text, encoding="utf-8")
            Path(path + ".html").write_text(self.profiler.output_html(), encoding="utf-8")
            self.profiler.last_session.save(path + ".pyisession")  # re-render: pyinstrument --load
            self.profiler = None

        self.on_loop(stop)


def serve_control(control: Control) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: object, code: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/stats":
                self._answer(control.stats(query.get("ns", [])))
            elif url.path == "/added":  # and forget them: the memory phase must not count these
                prefix = query.get("prefix", [""])[0]
                found = {name: t for name, t in list(control.added.items()) if name.startswith(prefix)}
                for name in found:
                    control.added.pop(name, None)
                self._answer(found)
            else:
                self._answer({"error": "not found"}, 404)

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path == "/profile/start":
                control.profile_start()
                self._answer({"ok": True})
            elif url.path == "/profile/stop":
                control.profile_stop(query["path"][0])
                self._answer({"ok": True})
            else:
                self._answer({"error": "not found"}, 404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="bench-control", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator_proc")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="API server URL (the stand-in: plain HTTP, no credentials)")
    where.add_argument("--kubeconfig", help="log in with this kubeconfig")
    parser.add_argument("-n", "--namespace", action="append", default=[], required=True)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--workers", type=int, default=OperatorConfig.event_workers)
    parser.add_argument("--disable-after-failures", type=int, default=1_000_000)
    parser.add_argument("--circuit-after-failures", type=int, default=OperatorConfig.circuit_threshold)
    args = parser.parse_args(argv)

    logs.configure("json", getattr(logging, args.log_level.upper()))
    if args.server:
        connection = kopf.ConnectionInfo(server=args.server, insecure=True)
    else:
        connection = connection_from_kubeconfig(args.kubeconfig)
    config = OperatorConfig(
        scope=NamespaceScope.parse(args.namespace),
        egress=EgressPolicy.from_cidrs(["127.0.0.0/8"]),
        event_workers=args.workers,
        # The head-of-line phase needs its broken endpoint to keep failing: with the default
        # (1,000 failures in a row) the operator disables it within the first second of the storm.
        disable_rules=DisableRules(max_consecutive_failures=args.disable_after_failures),
        circuit_threshold=args.circuit_after_failures,
        connection=connection,
    )
    control = Control()
    server = serve_control(control)
    print(
        json.dumps({"control": f"http://127.0.0.1:{server.server_address[1]}", "pid": os.getpid()}),
        flush=True,
    )
    asyncio.run(run_operator(config, ready_flag=control.ready, on_engine=control.adopt))
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
