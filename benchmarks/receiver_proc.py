"""The webhook receiver in a process of its own, for the benchmark.

    python -m benchmarks.receiver_proc     # prints {"url": ..., "pid": ...} once serving

Every POST is answered at once: 503 on paths under `/broken`, 200 elsewhere. Requests carrying
a `webhook-id` are recorded as (path, id, time.monotonic()) -- CLOCK_MONOTONIC, the same clock
in every process on Linux, so the benchmark can subtract its own timestamps from these.

Control (GET): `/_bench/counts` requests per path; `/_bench/arrivals?prefix=/sink` the
recorded arrivals under a path prefix, as [[path, id, t], ...]; `/_bench/id?id=ID` how many
requests carried that webhook-id.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
import time

import aiohttp.web

BROKEN_PREFIX = "/broken"


class Recorder:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.arrivals: list[tuple[str, str, float]] = []
        self.by_id: collections.Counter[str] = collections.Counter()

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        at = time.monotonic()
        path = request.path
        await request.read()
        self.counts[path] += 1
        webhook_id = request.headers.get("webhook-id")
        if webhook_id is not None:
            self.arrivals.append((path, webhook_id, at))
            self.by_id[webhook_id] += 1
        if path.startswith(BROKEN_PREFIX):
            return aiohttp.web.Response(status=503, text="broken on purpose")
        return aiohttp.web.Response(status=200, text="ok")

    async def counts_view(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"counts": dict(self.counts), "arrivals": len(self.arrivals)})

    async def id_view(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"count": self.by_id.get(request.query.get("id", ""), 0)})

    async def arrivals_view(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        prefix = request.query.get("prefix", "/")
        found = [list(item) for item in self.arrivals if item[0].startswith(prefix)]
        return aiohttp.web.json_response({"arrivals": found})


async def serve(host: str = "127.0.0.1") -> None:
    recorder = Recorder()
    app = aiohttp.web.Application(client_max_size=1024**2)
    app.router.add_get("/_bench/counts", recorder.counts_view)
    app.router.add_get("/_bench/arrivals", recorder.arrivals_view)
    app.router.add_get("/_bench/id", recorder.id_view)
    app.router.add_route("POST", "/{tail:.*}", recorder.handle)
    runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, host, 0, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = runner.addresses[0][1]
    print(json.dumps({"url": f"http://{host}:{port}", "pid": os.getpid()}), flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
