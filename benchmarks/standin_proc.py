"""The Kubernetes API stand-in in a process of its own, for the benchmark.

    python -m benchmarks.standin_proc      # prints {"url": ..., "pid": ...} once serving

Besides the API it answers `GET /_bench/counts` with every request it served so far, by
verb/resource/subresource, so the benchmark can count API writes the way an API server's audit
log would, and `GET /_bench/added?prefix=P` with when (time.monotonic(), the same clock in every
process of the machine) it wrote the ADDED watch event of each WebhookEvent named P... to a
watch stream, the operator's: that splits an event's latency into the API server's part and the
operator's. It forgets what it answered (the memory phase must not count it).

Keep-alive is on (a real API server keeps connections; the `Connection: close` trap
only matters when kopf shares the stand-in's event loop) and the request history is off (it
only serves assertions in tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import aiohttp.web

from webhook_operator.domain.api import Plural
from webhook_operator.testing.api_standin import ApiStandin
from webhook_operator.testing.standin_requests import WatchEvent

COUNTS_PATH = "/_bench/counts"
ADDED_PATH = "/_bench/added"
ADDED_KEPT = 50_000


async def serve(host: str = "127.0.0.1") -> None:
    standin = ApiStandin(keep_alive=True, request_history=1, watch_log_size=50_000)
    # Discovery goes through kmock's own handler, which needs the request it is serving in the
    # history (a ring of 1 is enough); resource requests skip building kmock's costly request
    # objects when `request_history` reads 0.
    standin.request_history = 0
    added: dict[str, float] = {}  # event name -> when its ADDED went out on a watch

    def written(event: WatchEvent) -> None:
        if event.type == "ADDED" and event.resource.plural == Plural.EVENTS and len(added) < ADDED_KEPT:
            added.setdefault(str(event.obj["metadata"]["name"]), time.monotonic())

    standin.on_watch_write = written

    async def handler(request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if request.path == COUNTS_PATH:
            counts = [[verb, plural, sub, n] for (verb, plural, sub), n in standin.counts.items()]
            backlog = {
                str(resource.plural): [watch.queue.qsize() for watch in watches]
                for resource, watches in standin._watches.items()
            }
            return aiohttp.web.json_response(
                {"counts": counts, "resourceVersion": standin.resource_version, "watch_backlog": backlog}
            )
        if request.path == ADDED_PATH:
            prefix = request.query.get("prefix", "")
            found = {name: at for name, at in added.items() if name.startswith(prefix)}
            for name in found:
                del added[name]
            return aiohttp.web.json_response(found)
        return await standin(request)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with standin:
        server = aiohttp.web.Server(handler, handler_cancellation=True, access_log=None)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=0.5)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, host, 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        print(json.dumps({"url": f"http://{host}:{port}", "pid": os.getpid()}), flush=True)
        await stop.wait()
        standin.cut_watches()
        await runner.cleanup()


def main() -> int:
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
