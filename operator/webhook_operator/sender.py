"""The HTTP edge: one shared httpx client over aiohttp, with the egress policy in the resolver.

Why this shape:
- One `httpx.AsyncClient` for the process, on an aiohttp connection pool: httpcore's pool
  checks every connection per request and falls to ~200 req/s at 64 concurrent requests,
  aiohttp's holds thousands (docs/performance.md, "Measured before the design").
- The egress check sits in the connector's resolver, so it judges the address that is actually
  connected to, after DNS: a name that resolves to 10.x or changes between check and connect
  (DNS rebinding) cannot get through. aiohttp connects to the checked address and still verifies
  TLS against the host name. IP literals skip resolvers, so they are checked before sending.
- Per-subscription TLS (extra CA, client certificate) is an `ssl.SSLContext` passed per request;
  aiohttp keys pooled connections by it, so different trust settings never share a connection.
- Proxy variables are ignored (`trust_env=False`): a proxy would connect on our behalf and
  bypass the address check.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.cookiejar
import socket
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.abc
import certifi
import httpx

from webhook_operator import __version__
from webhook_operator.domain.backoff import parse_retry_after
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.egress import EgressPolicy, EgressRefusal, parse_ip_literal
from webhook_operator.domain.outcomes import AttemptResult, Verdict, classify_status, describe_status
from webhook_operator.domain.wire import OutgoingRequest

USER_AGENT = f"webhook-operator/{__version__}"
MAX_RESPONSE_BYTES = 4096
_SSL_EXTENSION = "webhook_operator.ssl"


class EgressRefusedError(OSError):
    """Raised by the resolver when every address of a host is refused by the egress policy."""

    def __init__(self, refusal: EgressRefusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class TLSMaterialError(ValueError):
    """A CA bundle or client certificate that cannot be loaded; the message holds no key material."""


@dataclass(frozen=True)
class TLSMaterial:
    ca_pem: bytes | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (self.ca_pem, self.cert_pem, self.key_pem):
            digest.update(part or b"-")
            digest.update(b"\0")
        return digest.hexdigest()


class EgressResolver(aiohttp.abc.AbstractResolver):
    """Resolves names with another resolver and keeps only the addresses the policy allows."""

    def __init__(self, policy: EgressPolicy, inner: aiohttp.abc.AbstractResolver) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results if self._policy.check(result["host"]) is None]
        if not allowed:
            refusal = self._policy.check(results[0]["host"]) if results else None
            if refusal is not None:
                raise EgressRefusedError(refusal)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _NoCookies(http.cookiejar.CookieJar):
    """Keep no cookies: one receiver's Set-Cookie must never ride along to the next request, and
    httpx's cookie bookkeeping was a twentieth of the operator's CPU per delivery."""

    def add_cookie_header(self, request: urllib.request.Request) -> None:
        return None

    def extract_cookies(self, response: Any, request: urllib.request.Request) -> None:
        return None


class _AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx on an aiohttp session: per-request SSL context, no redirects, no decompression."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        ssl_context = request.extensions.get(_SSL_EXTENSION, True)
        response = await self._session.request(
            request.method,
            str(request.url),
            headers=[(name.decode(), value.decode()) for name, value in request.headers.raw],
            data=request.content or None,
            allow_redirects=False,
            auto_decompress=False,
            ssl=ssl_context,
            timeout=aiohttp.ClientTimeout(total=timeout.get("pool"), sock_read=timeout.get("read")),
        ).__aenter__()
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response),
            extensions={"reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        await self._session.close()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_chunked(1024):
            yield chunk

    async def aclose(self) -> None:
        self._response.release()
        self._response.close()


class Sender:
    """Sends one attempt and classifies what came back. Never raises for anything a receiver does."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_tls_contexts: int = 256,
    ) -> None:
        self._policy = policy
        self._max_response_bytes = max_response_bytes
        connector = aiohttp.TCPConnector(
            resolver=EgressResolver(policy, resolver or aiohttp.DefaultResolver()),
            limit=0,  # concurrency is bounded per subscription (maxInFlight), not here
            limit_per_host=0,
            ttl_dns_cache=10,
            enable_cleanup_closed=True,
        )
        session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        self._client = httpx.AsyncClient(
            transport=_AiohttpTransport(session),
            follow_redirects=False,
            trust_env=False,
            cookies=_NoCookies(),
        )
        self._default_tls = ssl.create_default_context(cafile=certifi.where())
        self._tls_contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._max_tls_contexts = max_tls_contexts

    async def aclose(self) -> None:
        await self._client.aclose()

    async def tls_context(self, material: TLSMaterial | None) -> ssl.SSLContext:
        """The SSL context for a subscription's TLS material, built once per distinct material."""
        if material is None:
            return self._default_tls
        key = material.fingerprint
        if (context := self._tls_contexts.get(key)) is not None:
            self._tls_contexts.move_to_end(key)
            return context
        context = await asyncio.to_thread(_build_tls_context, material)
        self._tls_contexts[key] = context
        while len(self._tls_contexts) > self._max_tls_contexts:
            self._tls_contexts.popitem(last=False)
        return context

    async def send(
        self, request: OutgoingRequest, *, timeout: float, tls: ssl.SSLContext | None = None
    ) -> AttemptResult:
        started = time.monotonic()
        refusal = self._refuse_literal(request.url)
        if refusal is not None:
            return AttemptResult(Verdict.FAIL, error=refusal.message, egress_refused=True)
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(request, timeout, tls, started)
        except TimeoutError:
            return AttemptResult(Verdict.RETRY, error=f"timed out after {timeout:g}s", duration=timeout)
        except Exception as error:
            return _error_result(error, time.monotonic() - started)

    async def _exchange(
        self, request: OutgoingRequest, timeout: float, tls: ssl.SSLContext | None, started: float
    ) -> AttemptResult:
        outgoing = self._client.build_request(
            "POST",
            request.url,
            headers=list(request.headers),
            content=request.body,
            timeout=httpx.Timeout(timeout),
            extensions={_SSL_EXTENSION: tls or self._default_tls},
        )
        response = await self._client.send(outgoing, stream=True)
        try:
            await _read_capped(response, self._max_response_bytes)
        finally:
            await response.aclose()
        verdict = classify_status(response.status_code)
        retry_after = None
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=utcnow())
        error = (
            None
            if verdict is Verdict.SUCCESS
            else describe_status(response.status_code, response.reason_phrase)
        )
        return AttemptResult(
            verdict,
            status_code=response.status_code,
            error=error,
            retry_after=retry_after,
            duration=time.monotonic() - started,
        )

    def _refuse_literal(self, url: str) -> EgressRefusal | None:
        host = urllib.parse.urlsplit(url).hostname or ""
        literal = parse_ip_literal(host)
        return self._policy.check(literal) if literal is not None else None


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """Reads at most `limit` bytes: a receiver answering with a gigabyte costs us 4 KiB."""
    received = bytearray()
    async for chunk in response.aiter_raw():
        received += chunk
        if len(received) >= limit:
            break
    return bytes(received[:limit])


def _error_result(error: BaseException, duration: float) -> AttemptResult:
    chain = _causes(error)
    for cause in chain:
        if isinstance(cause, EgressRefusedError):
            return AttemptResult(
                Verdict.FAIL, error=cause.refusal.message, egress_refused=True, duration=duration
            )
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            # aiohttp's wrapper is an SSLCertVerificationError too, without the detail: look past it.
            detail = next((m for c in chain if (m := getattr(c, "verify_message", None))), None)
            return AttemptResult(
                Verdict.RETRY,
                error="TLS: certificate verify failed" + (f": {detail}" if detail else ""),
                tls_problem=True,
                duration=duration,
            )
        if isinstance(cause, ssl.SSLError | aiohttp.ClientSSLError):
            return AttemptResult(
                Verdict.RETRY, error=f"TLS: {_describe(cause)}", tls_problem=True, duration=duration
            )
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return AttemptResult(Verdict.RETRY, error="connection refused", duration=duration)
        if isinstance(cause, ConnectionResetError | aiohttp.ServerDisconnectedError):
            return AttemptResult(Verdict.RETRY, error="connection reset by the receiver", duration=duration)
        if isinstance(cause, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return AttemptResult(
                Verdict.RETRY, error=f"DNS lookup failed: {_describe(cause)}", duration=duration
            )
        if isinstance(cause, TimeoutError):
            return AttemptResult(Verdict.RETRY, error="timed out", duration=duration)
    return AttemptResult(Verdict.RETRY, error=f"connection error: {_describe(error)}", duration=duration)


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, BaseException) and os_error not in chain:
            chain.append(os_error)
        current = current.__cause__ or current.__context__
    return chain


def _describe(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        # Its text repeats host and port and shows the per-request SSLContext as "<... object at
        # 0x7f...>", which differs per process; the OS or TLS error underneath is the news.
        error = error.os_error
    text = str(error) or type(error).__name__
    return text[:200]


def _build_tls_context(material: TLSMaterial) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certifi.where())
    try:
        if material.ca_pem:
            context.load_verify_locations(cadata=material.ca_pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise TLSMaterialError("the CA bundle is not valid PEM certificates") from None
    if material.cert_pem or material.key_pem:
        if not (material.cert_pem and material.key_pem):
            raise TLSMaterialError("a client certificate needs both tls.crt and tls.key")
        _load_client_cert(context, material.cert_pem, material.key_pem)
    return context


def _load_client_cert(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # The ssl module loads certificates only from files: write them to a private temporary
    # directory (the container's /tmp is an emptyDir) and remove them at once.
    with tempfile.TemporaryDirectory(prefix="webhook-tls-") as directory:
        cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        try:
            context.load_cert_chain(str(cert_path), str(key_path))
        except (ssl.SSLError, ValueError):
            raise TLSMaterialError("the client certificate and key do not load as a PEM pair") from None


def request_headers_for_log(headers: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Headers as they may appear in a log line: credentials-like values redacted."""
    sensitive = ("authorization", "cookie", "signature", "token", "secret", "key", "password", "auth")
    return {
        name: ("<redacted>" if any(word in name.lower() for word in sensitive) else value)
        for name, value in headers
    }
