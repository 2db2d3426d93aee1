"""The fault tier: the real operator (in a thread, or as a process) against the API stand-in and
receivers that misbehave, with faults injected on purpose. Each scenario publishes a `Report`;
the table of them is printed at the end of every pytest run that ran one."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    REPORTS,
    Cluster,
    FaultyReceiver,
    FaultyStandin,
    serve_receiver,
    serve_standin,
)
from tests.faults.runner import OperatorProcess
from webhook_operator.config import OperatorConfig
from webhook_operator.testing.operator_thread import OperatorThread, standin_config


@pytest.fixture
async def standin() -> AsyncIterator[FaultyStandin]:
    async with serve_standin() as served:
        yield served


@pytest.fixture
async def cluster(standin: FaultyStandin) -> AsyncIterator[Cluster]:
    async with Cluster(standin) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[FaultyReceiver]:
    async with serve_receiver() as served:
        yield served


@pytest.fixture
async def second_receiver() -> AsyncIterator[FaultyReceiver]:
    async with serve_receiver() as served:
        yield served


def operator_config(standin: FaultyStandin, **overrides: Any) -> OperatorConfig:
    return standin_config(standin.url, **overrides)


class CrashableOperator(OperatorThread):
    """The in-thread operator, plus `crash()`: a process death without the process.

    `OperatorThread.kill()` cancels kopf's main task, and kopf then still runs the cleanup
    handlers (the engine's graceful stop): that is not a crash. `crash()` freezes the operator's
    loop between two steps, for good, and shuts down every socket it has open, as the kernel does
    for a killed process: nothing of the operator runs again, its peers see the connections close.
    The frozen thread is a daemon and is left behind.
    """

    async def crash(self) -> float:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        frozen = threading.Event()

        def freeze() -> None:
            for transport in list(getattr(loop, "_transports", {}).values()):
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            frozen.set()
            threading.Event().wait()  # forever: this loop never runs another step

        at = time.monotonic()
        loop.call_soon_threadsafe(freeze)
        assert await asyncio.to_thread(frozen.wait, 10), "the operator loop did not freeze"
        # kopf waits for its threading.Event stop flag in an executor thread, which is not a
        # daemon: set the flag, or that thread waits forever and the interpreter never exits.
        self._stop.set()
        self._thread = None  # start() may run a new one
        return at


@pytest.fixture
async def threaded_operator(
    standin: FaultyStandin,
) -> AsyncIterator[Callable[..., Awaitable[CrashableOperator]]]:
    """Start the operator in a thread (with config overrides); stopped (or crashed) at the end."""
    started: list[CrashableOperator] = []

    async def start(**overrides: Any) -> CrashableOperator:
        running = CrashableOperator(operator_config(standin, **overrides))
        await running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


@pytest.fixture
async def operator_process(standin: FaultyStandin, tmp_path: Path) -> AsyncIterator[OperatorProcess]:
    process = OperatorProcess(str(standin.url), tmp_path)
    try:
        yield process
    finally:
        await process.close()
        print(f"\n--- operator log (tail) ---\n{process.log_tail(25)}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault scenarios")
    for report in REPORTS:
        terminalreporter.write_line(report.line())
