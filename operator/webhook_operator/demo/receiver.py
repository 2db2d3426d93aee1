"""The demo's local webhook receiver: verifies every request's signature, as a real one must.

Verification uses the official `standardwebhooks` library when it is installed (a dev
dependency); with only the runtime dependencies it falls back to the operator's own signing
code (`domain.signing`), which implements the same scheme. `Receiver.verifier` says which.

A route can be scripted to fail first (`Route.failures`), to show the operator retrying.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp.web

from webhook_operator.domain.signing import SigningKeyError, parse_signing_key, signature

TOLERANCE_SECONDS = 300  # what Standard Webhooks libraries accept as clock skew


class VerificationError(Exception):
    """The request does not carry a valid signature for the route's key."""


class Verifier(Protocol):
    name: str

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return if one signature in `webhook-signature` is valid; raise VerificationError if not."""


class OfficialVerifier:
    """The `standardwebhooks` PyPI package, as a receiver written in Python would use it."""

    name = "standardwebhooks (official library)"

    def __init__(self, signing_key: str) -> None:
        from standardwebhooks.webhooks import Webhook

        self._webhook = Webhook(signing_key)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        from standardwebhooks.webhooks import WebhookVerificationError

        try:
            self._webhook.verify(body, dict(headers), json_parse=False)
        except WebhookVerificationError as error:
            raise VerificationError(str(error)) from None
        except (ValueError, UnicodeDecodeError) as error:  # malformed signature header or body
            raise VerificationError(f"malformed request: {type(error).__name__}") from None


class BuiltinVerifier:
    """The same checks with the operator's own HMAC code, for installs without `standardwebhooks`."""

    name = "webhook_operator.domain.signing (standardwebhooks not installed)"

    def __init__(self, signing_key: str) -> None:
        try:
            self._key = parse_signing_key(signing_key, key_name="signingKey")
        except SigningKeyError as error:
            raise VerificationError(str(error)) from None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        lower = {name.lower(): value for name, value in headers.items()}
        msg_id, stamp, signatures = (
            lower.get("webhook-id"),
            lower.get("webhook-timestamp"),
            lower.get("webhook-signature"),
        )
        if not (msg_id and stamp and signatures):
            raise VerificationError("Missing required headers")
        if not stamp.isdigit():
            raise VerificationError("Invalid Signature Headers")
        if abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
            raise VerificationError("Message timestamp too old or too new")
        expected = signature(self._key, msg_id, int(stamp), body)
        if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" ")):
            raise VerificationError("No matching signature found")


def make_verifier(signing_key: str) -> Verifier:
    try:
        return OfficialVerifier(signing_key)
    except ImportError:
        return BuiltinVerifier(signing_key)


def verifier_name() -> str:
    try:
        import standardwebhooks  # noqa: F401
    except ImportError:
        return BuiltinVerifier.name
    return OfficialVerifier.name


@dataclass
class Route:
    """One endpoint path: which subscription posts to it, how to verify it, what to answer."""

    subscription: str
    verifier: Verifier | None  # None: the subscription sends unsigned requests
    failures: list[int] = field(default_factory=list)  # status codes answered first, in order


@dataclass(frozen=True)
class Arrival:
    """One request as the receiver saw it."""

    path: str
    subscription: str
    webhook_id: str
    event_type: str
    attempt: int  # 1 for the first request with this webhook-id at this path
    verified: bool | None  # None: unsigned subscription
    problem: str | None  # why verification failed
    answered: int
    at: float  # time.monotonic()


@dataclass
class Receiver:
    url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    queue: asyncio.Queue[Arrival] = field(default_factory=asyncio.Queue)

    def endpoint(self, path: str) -> str:
        return self.url + path

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.read()
        headers = request.headers
        route = self.routes.get(request.path)
        webhook_id = headers.get("webhook-id") or headers.get("ce-id") or ""
        verified: bool | None = None
        problem: str | None = None
        if route is None:
            answered, problem = 404, "no subscription posts to this path"
        else:
            if route.verifier is not None:
                try:
                    route.verifier.verify(body, headers)
                    verified = True
                except VerificationError as error:
                    verified, problem = False, str(error)
            if verified is False:
                answered = 401
            elif route.failures:
                answered = route.failures.pop(0)
            else:
                answered = 200
        attempt = 1 + sum(1 for a in self.arrivals if a.path == request.path and a.webhook_id == webhook_id)
        arrival = Arrival(
            path=request.path,
            subscription=route.subscription if route else "?",
            webhook_id=webhook_id,
            event_type=headers.get("ce-type") or _body_type(body),
            attempt=attempt,
            verified=verified,
            problem=problem,
            answered=answered,
            at=time.monotonic(),
        )
        self.arrivals.append(arrival)
        self.queue.put_nowait(arrival)
        return aiohttp.web.Response(status=answered, text="ok" if answered < 300 else "not now")


def _body_type(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return "?"
    return str(parsed.get("type", "?")) if isinstance(parsed, dict) else "?"


@asynccontextmanager
async def serve_receiver(host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    """Serve a Receiver on a free port of `host`; set `receiver.routes` once the URL is known."""
    receiver = Receiver()
    app = aiohttp.web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver.handle)
    runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await aiohttp.web.TCPSite(runner, host, 0).start()
        receiver.url = f"http://{host}:{runner.addresses[0][1]}"
        yield receiver
    finally:
        await runner.cleanup()
