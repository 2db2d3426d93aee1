"""A real HTTP receiver on 127.0.0.1 that records every request and answers from a script.

receiver.script("/hooks/a", [503, (429, {"Retry-After": "1"}), 200])   # then the default, 200
receiver.hang("/hooks/slow")                                         # never answers
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp.web
from multidict import CIMultiDict

Answer = int | tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    body: bytes
    at: float  # time.monotonic()


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    _scripts: dict[str, deque[Answer]] = field(default_factory=lambda: defaultdict(deque))
    _hanging: set[str] = field(default_factory=set)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def endpoint(self, path: str) -> str:
        return self.url + path

    def script(self, path: str, answers: Iterable[Answer]) -> None:
        self._scripts[path].extend(answers)

    def unscript(self, path: str) -> None:
        """Forget the answers still scripted for `path`: from now on it answers 200."""
        self._scripts.pop(path, None)

    def hang(self, path: str) -> None:
        self._hanging.add(path)

    def at(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, CIMultiDict(request.headers), body, time.monotonic()))
        self._arrived.set()
        if request.path in self._hanging:
            await asyncio.sleep(3600)
        script = self._scripts.get(request.path)
        answer: Answer = script.popleft() if script else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return aiohttp.web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    app = aiohttp.web.Application()
    runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    receiver = Receiver(url="")
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
