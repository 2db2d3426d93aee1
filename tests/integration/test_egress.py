"""The egress policy through the real Sender and the real operator: no way into the local network.

The operator here allows nothing beyond the public internet (the shared test config allows
127.0.0.0/8, so every test overrides it). Host names are resolved by a resolver the test
controls, so a name can point at 10.0.0.5, at the cloud metadata service, or at a loopback
address where a real receiver listens and would record anything that got through.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp.abc
import aiohttp.web
import pytest

from tests.integration.conftest import (
    condition,
    create_event,
    create_subscription,
    delivery,
    test_config,
    wait_condition,
)
from tests.integration.receiver import Receiver
from webhook_operator.config import OperatorConfig
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.domain.outcomes import Verdict
from webhook_operator.domain.wire import OutgoingRequest
from webhook_operator.sender import Sender
from webhook_operator.testing.api_standin import ApiStandin
from webhook_operator.testing.operator_thread import OperatorThread

SUBS, EVENTS = "webhooksubscriptions", "webhookevents"
POLICY_HINT = "allow the range with --allow-cidr or WEBHOOK_OPERATOR_ALLOW_CIDRS"


class MapResolver(aiohttp.abc.AbstractResolver):
    """DNS as the test says: a name maps to addresses, or to a function of the lookup count."""

    def __init__(
        self, answers: dict[str, Sequence[str] | Callable[[int], Sequence[str]]] | None = None
    ) -> None:
        self.answers = dict(answers or {})
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        self.lookups.append(host)
        answer = self.answers.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, f"no test answer for {host}")
        addresses = answer(self.lookups.count(host)) if callable(answer) else answer
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


@asynccontextmanager
async def receiver_on(host: str, port: int = 0) -> AsyncIterator[Receiver]:
    """A recording receiver on any loopback address (127.0.0.2 too), on a chosen port."""
    app = aiohttp.web.Application()
    receiver = Receiver(url="")
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, host, port).start()
    receiver.url = f"http://{host}:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(
    config: OperatorConfig, resolver: aiohttp.abc.AbstractResolver | None = None
) -> AsyncIterator[None]:
    operator = OperatorThread(config, resolver=resolver)
    await operator.start()
    try:
        yield
    finally:
        await operator.stop()


@pytest.fixture
def resolver() -> MapResolver:
    return MapResolver()


@pytest.fixture
def operator_config(standin: ApiStandin) -> OperatorConfig:
    return test_config(standin, egress=EgressPolicy())  # nothing allowed beyond public addresses


@pytest.fixture
async def operator(operator_config: OperatorConfig, resolver: MapResolver) -> AsyncIterator[None]:
    async with running(operator_config, resolver):
        yield


async def deliver_once(standin: ApiStandin, url: str) -> dict[str, Any]:
    """Subscribe `url` (one attempt), send one event; the event once it has failed."""
    await create_subscription(standin, "s", {"url": url, "retry": {"maxAttempts": 1}})
    await create_event(standin, "e1", {"type": "order.created", "data": {"orderId": 1}})
    return await wait_condition(standin, EVENTS, "e1", "Failed", "True", "EgressDenied")


def assert_refused_by_policy(event: dict[str, Any], address: str) -> None:
    entry = delivery(event, "s")
    assert (entry["state"], entry["reason"], entry["attempts"]) == ("Failed", "EgressDenied", 1)
    assert entry["lastError"].startswith(f"egress policy refuses {address} (")
    assert POLICY_HINT in entry["lastError"]
    assert "lastStatusCode" not in entry
    assert POLICY_HINT in condition(event, "Failed")["message"]


async def assert_subscription_says_egress_denied(standin: ApiStandin, address: str) -> None:
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "EgressDenied")
    message = condition(sub, "Ready")["message"]
    assert f"egress policy refuses {address} (" in message and POLICY_HINT in message


# --- IP literals, in every spelling ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # 127.0.0.1 as one decimal number
        ("0x7f.1", "127.0.0.1"),  # hex and a short form
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),  # IPv4-mapped IPv6
        ("169.254.169.254", "169.254.169.254"),  # cloud metadata
        ("10.1.2.3", "10.1.2.3"),
        ("[::1]", "::1"),
        ("0.0.0.0", "0.0.0.0"),  # Linux connects 0.0.0.0 to the local host
    ],
)
async def test_a_refused_address_form_fails_the_delivery_as_egress_denied(
    standin, receiver, operator, host: str, refused: str
):
    port = receiver.url.rsplit(":", 1)[1]  # where a real receiver on 127.0.0.1 listens
    event = await deliver_once(standin, f"http://{host}:{port}/hook")
    assert_refused_by_policy(event, refused)
    await assert_subscription_says_egress_denied(standin, refused)
    assert receiver.requests == []


# --- host names, resolved by the test's resolver ---------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "refused", "category"),
    [
        ("10.0.0.5", "10.0.0.5", "private address"),
        ("127.0.0.1", "127.0.0.1", "loopback address"),
        ("169.254.169.254", "169.254.169.254", "cloud metadata endpoint"),
        ("::ffff:10.0.0.5", "::ffff:a00:5", "private address, IPv4-mapped 10.0.0.5"),
        ("fd00:ec2::254", "fd00:ec2::254", "cloud metadata endpoint"),
    ],
)
async def test_a_name_resolving_to_a_refused_address_is_refused(
    standin, receiver, resolver, operator, answer: str, refused: str, category: str
):
    resolver.answers["hooks.customer.example"] = [answer]
    port = receiver.url.rsplit(":", 1)[1]
    event = await deliver_once(standin, f"http://hooks.customer.example:{port}/hook")
    assert_refused_by_policy(event, refused)
    assert f"({category})" in delivery(event, "s")["lastError"]
    await assert_subscription_says_egress_denied(standin, refused)
    assert receiver.requests == []
    assert resolver.lookups == ["hooks.customer.example"]


async def test_a_name_with_public_and_private_answers_connects_only_to_the_allowed_one(standin, resolver):
    async with (
        receiver_on("127.0.0.1") as allowed,
        receiver_on("127.0.0.2", int(allowed.url.rsplit(":", 1)[1])) as refused,
    ):
        port = allowed.url.rsplit(":", 1)[1]
        resolver.answers["mixed.example"] = ["127.0.0.2", "10.0.0.5", "127.0.0.1"]
        config = test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.1/32"]))
        async with running(config, resolver):
            await create_subscription(standin, "s", {"url": f"http://mixed.example:{port}/hook"})
            await create_event(standin, "e1", {"type": "order.created", "data": {}})
            await wait_condition(standin, EVENTS, "e1", "Delivered")
        assert len(allowed.at("/hook")) == 1
        assert refused.requests == []


async def test_dns_rebinding_between_lookups_cannot_reach_the_refused_address(standin, resolver):
    """The first lookup answers an allowed address, every later one a refused address.

    An operator that checked one lookup and connected after another would reach the refused
    address; this one connects to exactly the address it checked. (127.0.0.1/32 is allowed and
    plays the public address: nothing public can listen inside a test.)
    """
    async with (
        receiver_on("127.0.0.1") as public,
        receiver_on("127.0.0.2", int(public.url.rsplit(":", 1)[1])) as private,
    ):
        port = public.url.rsplit(":", 1)[1]
        resolver.answers["rebind.example"] = lambda lookup: ["127.0.0.1"] if lookup == 1 else ["127.0.0.2"]
        config = test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.1/32"]))
        async with running(config, resolver):
            await create_subscription(standin, "s", {"url": f"http://rebind.example:{port}/hook"})
            for name in ("e1", "e2", "e3"):
                await create_event(standin, name, {"type": "order.created", "data": {}})
            for name in ("e1", "e2", "e3"):
                await wait_condition(standin, EVENTS, name, "Delivered")
        assert private.requests == []
        assert len(public.at("/hook")) == 3
        assert resolver.lookups[0] == "rebind.example"


# --- the allow-list ----------------------------------------------------------------------------------


async def test_the_allow_list_admits_a_receiver_inside_its_range(standin, receiver):
    config = test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.1/32"]))
    async with running(config):
        await create_subscription(standin, "s", {"url": receiver.endpoint("/hook")})
        await wait_condition(standin, SUBS, "s", "Ready", "True", "Active")
        await create_event(standin, "e1", {"type": "order.created", "data": {}})
        await wait_condition(standin, EVENTS, "e1", "Delivered")
    assert len(receiver.at("/hook")) == 1


async def test_the_allow_list_refuses_a_receiver_just_outside_its_range(standin, receiver):
    config = test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.2/32"]))
    async with running(config):
        event = await deliver_once(standin, receiver.endpoint("/hook"))
        assert_refused_by_policy(event, "127.0.0.1")
        await assert_subscription_says_egress_denied(standin, "127.0.0.1")
    assert receiver.requests == []


async def test_the_allow_list_admits_exactly_its_range_side_by_side(standin):
    async with (
        receiver_on("127.0.0.1") as inside,
        receiver_on("127.0.0.2", int(inside.url.rsplit(":", 1)[1])) as outside,
    ):
        config = test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.1/32"]))
        async with running(config):
            await create_subscription(standin, "in", {"url": inside.endpoint("/hook")})
            await create_subscription(standin, "out", {"url": outside.endpoint("/hook")})
            await create_event(standin, "e1", {"type": "order.created", "data": {}})
            event = await wait_condition(standin, EVENTS, "e1", "Failed", "True", "EgressDenied")
            assert delivery(event, "in")["state"] == "Succeeded"
            assert delivery(event, "out")["reason"] == "EgressDenied"
            await wait_condition(standin, SUBS, "out", "Ready", "False", "EgressDenied")
            await wait_condition(standin, SUBS, "in", "Ready", "True", "Active")
        assert len(inside.at("/hook")) == 1
        assert outside.requests == []


# --- the Sender on its own: fast checks of the same edge --------------------------------------------


async def test_the_sender_refuses_an_ip_literal_without_connecting(receiver):
    sender = Sender(EgressPolicy())
    try:
        port = receiver.url.rsplit(":", 1)[1]
        result = await sender.send(OutgoingRequest(f"http://0x7f000001:{port}/x", (), b"{}"), timeout=2)
    finally:
        await sender.aclose()
    assert (result.verdict, result.egress_refused) == (Verdict.FAIL, True)
    assert result.error is not None and result.error.startswith("egress policy refuses 127.0.0.1 (loopback")
    assert receiver.requests == []


async def test_the_sender_refuses_a_name_whose_every_answer_is_refused(receiver):
    resolver = MapResolver({"db.internal.example": ["10.0.0.5", "192.168.1.10", "127.0.0.1"]})
    sender = Sender(EgressPolicy(), resolver=resolver)
    try:
        port = receiver.url.rsplit(":", 1)[1]
        result = await sender.send(
            OutgoingRequest(f"http://db.internal.example:{port}/x", (), b"{}"), timeout=2
        )
    finally:
        await sender.aclose()
    assert (result.verdict, result.egress_refused) == (Verdict.FAIL, True)
    assert result.error is not None and "egress policy refuses 10.0.0.5 (private address)" in result.error
    assert receiver.requests == []


async def test_a_name_that_does_not_resolve_is_retried_with_a_plain_dns_error():
    sender = Sender(EgressPolicy(), resolver=MapResolver())
    try:
        result = await sender.send(OutgoingRequest("https://nowhere.example/x", (), b"{}"), timeout=2)
    finally:
        await sender.aclose()
    assert (result.verdict, result.egress_refused) == (Verdict.RETRY, False)
    assert result.error == "DNS lookup failed: [Errno -2] no test answer for nowhere.example"


async def test_proxy_variables_cannot_route_deliveries_around_the_check(receiver, monkeypatch):
    async with receiver_on("127.0.0.1") as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sender = Sender(EgressPolicy.from_cidrs(["127.0.0.1/32"]))
        try:
            result = await sender.send(OutgoingRequest(receiver.endpoint("/direct"), (), b"{}"), timeout=2)
        finally:
            await sender.aclose()
        assert result.verdict is Verdict.SUCCESS
        assert len(receiver.at("/direct")) == 1
        assert proxy.requests == []


async def test_a_cookie_set_by_one_receiver_is_never_sent_on_a_later_request(receiver):
    receiver.script("/first", [(200, {"Set-Cookie": "session=abc; Path=/"})])
    sender = Sender(EgressPolicy.from_cidrs(["127.0.0.0/8"]))
    try:
        for path in ("/first", "/second"):
            request = OutgoingRequest(receiver.endpoint(path), (("Content-Type", "application/json"),), b"{}")
            await sender.send(request, timeout=5)
    finally:
        await sender.aclose()
    [second] = receiver.at("/second")
    assert "Cookie" not in second.headers
