"""The real operator in a thread of its own, for the demo and the tests.

`run_operator` runs as `webhook-operator run` runs it, on its own event loop in a thread, so the
caller's loop stays free to drive the API stand-in and the receivers over real HTTP. A thread,
not a task in the caller's loop: kopf treats every task created after it started as its own and
waits for (then cancels) them at shutdown, the caller's included.

    running = OperatorThread(standin_config(standin.url))
    await running.start()              # returns once kopf is ready; OperatorFailed otherwise
    running.engine.stats()             # the engine, for assertions on counters and metrics
    await running.restart(event_workers=4)
    await running.stop()               # graceful, as on SIGTERM; kill(): no graceful stop
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from typing import Any

import aiohttp.abc
import kopf

from webhook_operator.config import OperatorConfig
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.main import run_operator
from webhook_operator.runtime import Engine

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class OperatorFailed(Exception):
    """The operator stopped with an error, or did not start or stop in time."""


def standin_config(server: object, **overrides: Any) -> OperatorConfig:
    """Settings for an operator talking to the API stand-in at `server` (plain HTTP, no login):
    loopback allowed (the receivers live there), quick health flushes and shutdown."""
    base = OperatorConfig(
        egress=EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]),
        health_flush_seconds=0.2,
        shutdown_grace_seconds=2.0,
        connection=kopf.ConnectionInfo(server=str(server), insecure=True),
    )
    return dataclasses.replace(base, **overrides)


class OperatorThread:
    def __init__(
        self, config: OperatorConfig, *, resolver: aiohttp.abc.AbstractResolver | None = None
    ) -> None:
        self.config = config
        self.resolver = resolver
        self.engine: Engine | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop = threading.Event()

    async def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the operator; return once kopf is ready to serve."""
        self._stop, ready = threading.Event(), threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="operator", daemon=True)
        self._thread.start()
        started = await asyncio.to_thread(ready.wait, timeout)
        self.check()
        if not started:
            raise OperatorFailed(f"the operator did not get ready within {timeout:.0f} s")

    def check(self) -> None:
        """Raise OperatorFailed if the operator has stopped on its own."""
        if self.error is not None:
            raise OperatorFailed(f"the operator stopped: {type(self.error).__name__}: {self.error}") from (
                self.error
            )
        if self._thread is not None and not self._thread.is_alive():
            raise OperatorFailed("the operator stopped unexpectedly")

    def _run(self, ready: threading.Event) -> None:
        stop = self._stop  # this run's flag: a restart makes a new one
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._main = loop.create_task(
                run_operator(
                    self.config,
                    stop_flag=stop,
                    ready_flag=ready,
                    resolver=self.resolver,
                    on_engine=self._adopt,
                )
            )
            loop.run_until_complete(self._main)
        except asyncio.CancelledError:  # kill()
            pass
        except BaseException as error:  # reported by start(), check() and stop()
            self.error = error
        finally:
            ready.set()
            # kopf waits for the threading.Event stop flag in an executor thread (not a daemon):
            # release it however the loop ended, or the interpreter waits for it at exit.
            stop.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _adopt(self, engine: Engine) -> None:
        self.engine = engine

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop as on SIGTERM (kopf's cleanup, the engine's graceful stop); raise OperatorFailed
        if it does not within `timeout` (the daemon thread is left behind) or had failed."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join, timeout)
        if thread.is_alive():
            raise OperatorFailed(f"the operator did not stop within {timeout:.0f} s")
        self._thread = None
        self.check()

    async def kill(self, timeout: float = STOP_TIMEOUT) -> None:
        """Cancel kopf's main task mid-whatever: no graceful stop of kopf's own."""
        if self._thread is None or self._loop is None or self._main is None:
            return
        self._loop.call_soon_threadsafe(self._main.cancel)
        await asyncio.to_thread(self._thread.join, timeout)
        self._thread = None

    async def restart(self, **overrides: Any) -> None:
        """Stop, then start again with these settings changed."""
        await self.stop()
        self.config = dataclasses.replace(self.config, **overrides)
        await self.start()
