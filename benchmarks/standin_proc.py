"""The Kubernetes API stand-in in a process of its own, for the benchmark.

    python -m benchmarks.standin_proc      # prints {"url": ..., "pid": ...} once serving

Besides the API it answers `GET /_bench/counts` with every request it served so far, by
verb/resource/subresource, so the benchmark can count API writes the way an API server's audit
log would. Keep-alive is on (a real API server keeps connections; the `Connection: close` trap
only matters when kopf shares the stand-in's event loop) and the request history is off (it
only serves assertions in tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp.web

from webhook_operator.testing.api_standin import ApiStandin

COUNTS_PATH = "/_bench/counts"


async def serve(host: str = "127.0.0.1") -> None:
    standin = ApiStandin(keep_alive=True, request_history=1, watch_log_size=50_000)
    # Discovery goes through kmock's own handler, which needs the request it is serving in the
    # history (a ring of 1 is enough); resource requests skip building kmock's costly request
    # objects when `request_history` reads 0.
    standin.request_history = 0

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
