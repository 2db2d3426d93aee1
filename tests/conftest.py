"""Fixtures shared by every tier: signing keys, and a way to wait for a condition to hold."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def make_signing_key(seed: bytes | None = None) -> str:
    """A `whsec_` key as a user would put in a Secret."""
    return "whsec_" + base64.b64encode(seed or os.urandom(24)).decode()


@pytest.fixture
def signing_key() -> str:
    return make_signing_key()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last: {last!r}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (whoever needs it binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
