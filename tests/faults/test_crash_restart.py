"""Scenario 1: the operator killed hard, mid-delivery and mid-status-write, and restarted while
events flow. Every event ends Delivered; duplicates only where a kill caught a delivery whose
outcome was not yet recorded."""

from __future__ import annotations

import pytest

from tests.faults.harness import publish
from tests.faults.scenarios import crash_scenario

pytestmark = pytest.mark.faults


async def test_sigkilled_process_restarted_three_times_loses_nothing(
    standin, cluster, receiver, second_receiver, operator_process
):
    report = await crash_scenario(
        "crash: SIGKILL process x3, 200 events",
        cluster=cluster,
        standin=standin,
        receivers=(receiver, second_receiver),
        operator=operator_process,
        events=200,
        modes=("mid-delivery", "before", "after"),
        rate=25,
    )
    publish(report)


class ThreadedCrash:
    """The in-thread operator as a Killable: `kill()` is `CrashableOperator.crash()`."""

    def __init__(self, start):
        self._start = start
        self.running = None

    async def start(self):
        if self.running is None:
            self.running = await self._start()
        else:
            await self.running.start()

    async def kill(self):
        return await self.running.crash()


async def test_in_thread_operator_killed_three_times_loses_nothing(
    standin, cluster, receiver, second_receiver, threaded_operator
):
    report = await crash_scenario(
        "crash: freeze in-thread x3, 100 events",
        cluster=cluster,
        standin=standin,
        receivers=(receiver, second_receiver),
        operator=ThreadedCrash(threaded_operator),
        events=100,
        modes=("mid-delivery", "before", "after"),
        rate=40,
        settle=0.4,
    )
    publish(report)
