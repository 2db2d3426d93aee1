"""Misbehaving receivers: each ends in a clear delivery state, and other deliveries carry on.

Every test runs two subscriptions: `bad` (event types `bad.*`) points at a hostile server,
`good` (`good.*`) at an ordinary receiver. While the bad one hangs, trickles, floods or breaks
the protocol, an event for the good one must still be delivered promptly.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from tests.conftest import eventually
from tests.integration.conftest import (
    create_event,
    create_secret,
    create_subscription,
    read,
    wait_condition,
)
from tests.integration.receiver import Receiver
from webhook_operator.testing.api_standin import ApiStandin

SUBS, EVENTS = "webhooksubscriptions", "webhookevents"
GIGABYTE = 1 << 30
PROMPT = 2.0  # seconds within which the good subscription's event must be delivered


# --- hostile servers -------------------------------------------------------------------------------


@dataclass
class RawServer:
    """A TCP server whose every byte the test decides; records when connections open and close."""

    port: int = 0
    opened: list[float] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)
    bytes_sent: int = 0

    def url(self, path: str = "/hook", scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def wait_connected(self, timeout: float = 5.0) -> None:
        await eventually(self._has_connection, timeout=timeout, what="a connection to the hostile server")

    async def _has_connection(self) -> bool:
        return bool(self.opened)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RawServer], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    state = RawServer()
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.opened.append(time.monotonic())
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError, asyncio.CancelledError):
            pass  # cancelled at the end of the test: end quietly, asyncio logs a cancelled handler
        finally:
            state.closed.append(time.monotonic())
            tasks.discard(task)
            writer.transport.abort()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer) -> None:
    await read_request(reader)
    await asyncio.sleep(3600)


async def answers_a_gigabyte(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
) -> None:
    """200 with a 1 GiB body, generated as it is sent: the test never holds it in memory."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % GIGABYTE)
    chunk = b"x" * 65536
    while state.bytes_sent < GIGABYTE:
        writer.write(chunk)
        await writer.drain()
        state.bytes_sent += len(chunk)


async def closes_without_answering(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
) -> None:
    await read_request(reader)
    writer.close()


async def resets_the_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
) -> None:
    """Reads the request, then closes with SO_LINGER 0: the kernel sends RST, not FIN."""
    await read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def answers_garbage(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
) -> None:
    """Whatever the client says (a TLS ClientHello, here), answer plain-text noise."""
    await reader.read(4096)
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n\x00\xff not TLS at all \x16\x03\x01\x00\x05hello")
    await writer.drain()
    await asyncio.sleep(3600)


async def trickles_headers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
) -> None:
    """Slow loris in reverse: a status line, then one header byte every 0.1 s, forever."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        for byte in b"X-Slow: a\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            state.bytes_sent += 1
            await asyncio.sleep(0.1)


async def trickles_the_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
) -> None:
    """Prompt headers, then a body of one byte every 0.1 s that would take a day to finish."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while True:
        writer.write(b".")
        await writer.drain()
        state.bytes_sent += 1
        await asyncio.sleep(0.1)


# --- the pattern each test follows -------------------------------------------------------------------


async def subscribe_both(standin: ApiStandin, receiver: Receiver, bad_url: str, **bad_spec: Any) -> None:
    bad = {"url": bad_url, "eventTypes": ["bad.*"], "timeoutSeconds": 1, **bad_spec}
    bad.setdefault("retry", {"initialDelaySeconds": 60, "maxAttempts": 5})
    await create_subscription(standin, "bad", bad)
    await create_subscription(standin, "good", {"url": receiver.endpoint("/good"), "eventTypes": ["good.*"]})
    await wait_condition(standin, SUBS, "good", "Ready")


async def good_event_is_delivered_promptly(
    standin: ApiStandin, receiver: Receiver, name: str = "good-1"
) -> float:
    """Send an event to the healthy subscription; returns when its request arrived (monotonic)."""
    started = time.monotonic()
    await create_event(standin, name, {"type": "good.news", "data": {}})
    await wait_condition(standin, EVENTS, name, "Delivered", timeout=PROMPT + 3)
    arrived = receiver.at("/good")[-1].at
    assert arrived - started < PROMPT, f"the healthy endpoint waited {arrived - started:.2f}s"
    return arrived


async def bad_delivery(standin: ApiStandin, state: str, event: str = "bad-1") -> dict[str, Any]:
    """The bad event's delivery once it has reached `state`."""

    async def probe() -> dict[str, Any] | None:
        obj = await read(standin, EVENTS, event)
        entries = ((obj or {}).get("status") or {}).get("deliveries") or []
        found = [e for e in entries if e["subscription"] == "bad" and e["state"] == state]
        return found[0] if found else None

    return await eventually(probe, timeout=10, what=f"the bad delivery to become {state}")


async def send_bad_event(standin: ApiStandin, name: str = "bad-1") -> None:
    await create_event(standin, name, {"type": "bad.news", "data": {"n": 1}})


# --- the tests ------------------------------------------------------------------------------------------


async def test_a_receiver_that_never_answers_times_out_and_retries_while_others_are_delivered(
    standin, receiver, operator
):
    async with raw_server(never_answers) as bad:
        await subscribe_both(standin, receiver, bad.url())
        await send_bad_event(standin)
        await bad.wait_connected()
        arrived = await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
        assert not bad.closed or arrived < bad.closed[0]  # delivered while the bad attempt hung
    assert entry["attempts"] == 1
    assert entry["lastError"] == "timed out after 1s"
    assert "lastStatusCode" not in entry and "nextAttemptTime" in entry


async def test_a_receiver_answering_a_gigabyte_is_read_only_up_to_the_cap(standin, receiver, operator):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    async with raw_server(answers_a_gigabyte) as bad:
        await subscribe_both(standin, receiver, bad.url())
        started = time.monotonic()
        await send_bad_event(standin)
        await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Succeeded")  # a 2xx is a success; the rest is not read
        elapsed = time.monotonic() - started
    assert (entry["attempts"], entry["lastStatusCode"]) == (1, 200)
    assert elapsed < 3
    assert bad.bytes_sent < 64 * 1024 * 1024  # the connection was dropped, not drained
    peak_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert peak_growth_mib < 100


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_fails_the_delivery(standin, receiver, operator, code):
    receiver.script("/bad", [(code, {"Location": receiver.endpoint("/elsewhere")})])
    await subscribe_both(standin, receiver, receiver.endpoint("/bad"))
    await send_bad_event(standin)
    await good_event_is_delivered_promptly(standin, receiver)
    entry = await bad_delivery(standin, "Failed")
    assert (entry["reason"], entry["attempts"], entry["lastStatusCode"]) == ("PermanentError", 1, code)
    assert (
        entry["lastError"].startswith(f"HTTP {code}") and "redirects are not followed" in entry["lastError"]
    )
    assert receiver.at("/elsewhere") == []
    await wait_condition(standin, EVENTS, "bad-1", "Failed", "True", "PermanentError")


async def test_a_redirect_to_the_metadata_service_is_not_followed(standin, receiver, operator):
    receiver.script("/bad", [(307, {"Location": "http://169.254.169.254/latest/meta-data/"})])
    await subscribe_both(standin, receiver, receiver.endpoint("/bad"))
    await send_bad_event(standin)
    entry = await bad_delivery(standin, "Failed")
    assert entry["lastStatusCode"] == 307
    assert len(receiver.at("/bad")) == 1


async def test_a_receiver_that_closes_without_answering_is_retried(standin, receiver, operator):
    async with raw_server(closes_without_answering) as bad:
        await subscribe_both(standin, receiver, bad.url())
        await send_bad_event(standin)
        await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
    assert entry["lastError"] == "connection reset by the receiver"
    assert "lastStatusCode" not in entry


async def test_a_receiver_that_resets_the_connection_is_retried(standin, receiver, operator):
    async with raw_server(resets_the_connection) as bad:
        await subscribe_both(standin, receiver, bad.url())
        await send_bad_event(standin)
        await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
    assert entry["lastError"] == "connection reset by the receiver"


async def test_a_plain_tcp_server_behind_an_https_url_is_a_tls_failure(standin, receiver, operator):
    async with raw_server(answers_garbage) as bad:
        await subscribe_both(standin, receiver, bad.url(scheme="https"))
        await send_bad_event(standin)
        await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
    assert entry["lastError"].startswith("TLS: [SSL: ")  # the TLS library's own words
    assert "object at 0x" not in entry["lastError"]
    assert "lastStatusCode" not in entry


async def test_a_certificate_for_another_host_name_is_refused(standin, receiver, operator):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)

    async def answers_ok(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(answers_ok, tls=context) as bad:
        await create_secret(standin, "ca", {"ca.crt": ca.cert_pem.bytes().decode()})
        await subscribe_both(
            standin,
            receiver,
            bad.url(scheme="https", host="localhost"),
            tls={"caBundleSecretRef": {"name": "ca"}},
        )
        await send_bad_event(standin)
        await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
    assert entry["lastError"] == (
        "TLS: certificate verify failed: Hostname mismatch, certificate is not valid for 'localhost'."
    )


async def test_headers_trickled_past_the_timeout_end_the_attempt(standin, receiver, operator):
    async with raw_server(trickles_headers) as bad:
        await subscribe_both(standin, receiver, bad.url())
        started = time.monotonic()
        await send_bad_event(standin)
        await bad.wait_connected()
        arrived = await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
        assert not bad.closed or arrived < bad.closed[0]
        assert time.monotonic() - started < 5
    assert entry["lastError"] == "timed out after 1s"
    assert bad.bytes_sent < 20  # about ten bytes in one second: the trickle did not hold the attempt


async def test_a_body_trickled_past_the_timeout_ends_the_attempt(standin, receiver, operator):
    async with raw_server(trickles_the_body) as bad:
        await subscribe_both(standin, receiver, bad.url())
        await send_bad_event(standin)
        await good_event_is_delivered_promptly(standin, receiver)
        entry = await bad_delivery(standin, "Retrying")
    assert entry["lastError"] == "timed out after 1s"


async def test_a_bad_receiver_exhausts_its_attempts_and_ends_failed(standin, receiver, operator):
    async with raw_server(resets_the_connection) as bad:
        await subscribe_both(standin, receiver, bad.url(), retry={"initialDelaySeconds": 0, "maxAttempts": 3})
        await send_bad_event(standin)
        entry = await bad_delivery(standin, "Failed")
        await good_event_is_delivered_promptly(standin, receiver)
    assert (entry["reason"], entry["attempts"]) == ("AttemptsExhausted", 3)
    assert len(bad.opened) == 3
