"""Scenario 2: the API server answers 429 (Retry-After), 500, 503, 409 and 422 to a share of
requests, loses the answer of applied status writes, and cuts watch streams mid-way. The operator
recovers, and no status update is lost or applied twice."""

from __future__ import annotations

import pytest

from tests.faults.harness import deliveries, publish
from tests.faults.scenarios import api_faults_scenario, until

pytestmark = pytest.mark.faults


class Threaded:
    def __init__(self, start):
        self._start = start

    async def start(self):
        await self._start()

    async def kill(self):
        raise NotImplementedError


async def test_api_errors_and_cut_watches_lose_no_status_update(
    standin, cluster, receiver, threaded_operator
):
    report = await api_faults_scenario(
        "api: 429/500/503/409/422 + lost answers + cuts",
        cluster=cluster,
        standin=standin,
        receiver=receiver,
        operator=Threaded(threaded_operator),
        events=120,
        rate=60,
    )
    publish(report)


@pytest.mark.parametrize(
    ("status", "gives_up_after"),
    [(503, 6), (409, 5)],  # the API client's retries spent; the reconciler's conflict retries spent
)
async def test_an_attempt_made_while_status_writes_fail_is_recorded_not_sent_again(
    standin, cluster, receiver, threaded_operator, status, gives_up_after
):
    """Regression: when the status write failed for good (the API client's retries spent, or
    conflicts exhausted), the outcome of the attempt already made was dropped, and the next
    reconcile sent the webhook again: a duplicate with no crash, and `attempts` under-counted."""
    await cluster.subscribe(
        "orders", receiver.endpoint("/orders"), retry={"initialDelaySeconds": 0, "maxDelaySeconds": 1}
    )
    await threaded_operator()
    standin.faults.inject(
        1.0, statuses=(status,), retry_after=0, methods=("PATCH",), resources={"webhookevents"}
    )
    await cluster.produce(1, prefix="outage")
    await receiver.wait_arrival_after(0, 10)
    await until(
        lambda: standin.faults.injected[status] >= gives_up_after, 10, "the operator to give up the write"
    )
    standin.faults.clear()

    [event] = await cluster.wait_finished(["outage-0000"], 20)
    assert receiver.requests() == {("/orders", event["metadata"]["uid"]): 1}
    assert deliveries(event)["orders"]["attempts"] == 1
    assert deliveries(event)["orders"]["state"] == "Succeeded"
