"""A real HTTPS receiver on 127.0.0.1 with certificates made by `trustme` for this test run."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp.web
import trustme

from tests.integration.receiver import Receiver


@asynccontextmanager
async def serve_tls_receiver(
    ca: trustme.CA, *, client_ca: trustme.CA | None = None
) -> AsyncIterator[Receiver]:
    """HTTPS with a server certificate for localhost/127.0.0.1; `client_ca` requires a client cert."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    app = aiohttp.web.Application()
    receiver = Receiver(url="")
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    receiver.url = f"https://localhost:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
