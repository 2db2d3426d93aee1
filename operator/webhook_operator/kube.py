"""The Kubernetes edge: the few reads and writes the engine makes, on one aiohttp session.

kopf watches subscriptions and Secrets; this client does the rest: the WebhookEvent watch stream
(`watch`, see engine/event_watch.py for why), status writes guarded by a resourceVersion test,
Secret reads, deletions for retention, and Kubernetes Events. Transient
API errors (429 with Retry-After, 5xx, connection errors) are retried here with a short backoff,
so the engine sees either a result or a real error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from webhook_operator.domain.api import GROUP_VERSION

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 4.0)
MAX_WATCH_LINE_BYTES = 16 * 1024 * 1024  # one watch event; etcd's own limit is 1.5 MiB per object


class KubeError(Exception):
    """An API answer that is not success; `status` is the HTTP code (0 for no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason


class ConflictError(KubeError):
    """409, or 422 from a failed JSON-patch `test`: the object changed under us; re-read and retry."""


class NotFoundError(KubeError):
    """404: the object (or its namespace) is gone."""


def resource_path(
    plural: str, namespace: str, name: str | None = None, subresource: str | None = None
) -> str:
    base = "/api/v1" if plural in ("secrets", "events") else f"/apis/{GROUP_VERSION}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


class KubeClient:
    def __init__(self, relogin: Callable[[], Awaitable[kopf.ConnectionInfo]] | None = None) -> None:
        self._connection: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None  # long streams: a pool of their own
        self._relogin = relogin
        self._ready = asyncio.Event()

    async def use(self, connection: kopf.ConnectionInfo) -> None:
        """Adopt credentials (from kopf's login); replaces the session when they change."""
        if connection == self._connection and self._session is not None:
            return
        old = (self._session, self._watch_session)
        self._connection = connection
        context = await asyncio.to_thread(_ssl_context, connection)  # reads files: off the loop
        self._session = _make_session(connection, context, limit=64)
        self._watch_session = _make_session(connection, context, limit=0)  # one per watched namespace
        self._ready.set()
        for session in old:
            if session is not None:
                await session.close()

    async def aclose(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", path)
        except NotFoundError:
            return None

    async def json_patch(self, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._request("PATCH", path, body=operations, content_type=JSON_PATCH)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, body=body)

    async def delete(self, path: str, *, uid: str | None = None) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}} if uid else None
        with contextlib.suppress(NotFoundError):  # already gone is what we wanted
            await self._request("DELETE", path, body=body)

    async def watch(self, path: str, *, read_timeout: float) -> AsyncGenerator[dict[str, Any], None]:
        """Stream a watch (`path` carries `watch=true` and its query): one decoded event per line.

        Not retried here: the caller resumes from the last resourceVersion it saw. Ends when the
        server ends the stream; raises KubeError for an error answer, a connection error or a
        stream silent for `read_timeout` seconds.
        """
        await self._ready.wait()
        assert self._watch_session is not None
        assert self._connection is not None
        url = self._connection.server.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
        try:
            request = self._watch_session.get(url, timeout=timeout, headers={"Accept": "application/json"})
            async with request as response:
                if response.status == 401 and self._relogin is not None:
                    await self.use(await self._relogin())  # the caller reconnects with them
                if response.status >= 300:
                    raise _error(response.status, await response.read())
                # Lines are split here, not with readline(): aiohttp limits a line to 128 KiB, and
                # an event's data may be larger. Only the new chunk is searched for line ends.
                pending: list[bytes] = []
                pending_size = 0
                async for chunk in response.content.iter_any():
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        line = b"".join((*pending, chunk[start:end])) if pending else chunk[start:end]
                        pending, pending_size, start = [], 0, end + 1
                        if line.strip():
                            yield json.loads(line)
                    if start < len(chunk):
                        pending.append(chunk[start:])
                        pending_size += len(chunk) - start
                        if pending_size > MAX_WATCH_LINE_BYTES:
                            raise KubeError(0, "WatchEventTooLarge", f"over {MAX_WATCH_LINE_BYTES} bytes")
                if pending and (rest := b"".join(pending)).strip():
                    yield json.loads(rest)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)[:200]) from exc

    async def _request(
        self, method: str, path: str, *, body: object = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        await self._ready.wait()
        data = json.dumps(body).encode() if body is not None else None
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            assert self._session is not None
            assert self._connection is not None
            try:
                async with self._session.request(
                    method,
                    self._connection.server.rstrip("/") + path,
                    data=data,
                    headers={"Content-Type": content_type, "Accept": "application/json"},
                ) as response:
                    payload = await response.read()
                    if response.status < 300:
                        return json.loads(payload) if payload else {}
                    error = _error(response.status, payload)
                    retry_after = response.headers.get("Retry-After", "")
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = KubeError(0, type(exc).__name__, str(exc)[:200])
                retry_after = ""
            if error.status == 401 and self._relogin is not None and attempt == 0:
                await self.use(await self._relogin())
                continue
            if delay is None or not (error.status in (0, 429) or error.status >= 500):
                raise error
            wait = float(retry_after) if retry_after.isdigit() else delay
            await asyncio.sleep(min(wait, 10.0))
        raise AssertionError("unreachable")


def _error(status: int, payload: bytes) -> KubeError:
    try:
        parsed = json.loads(payload)
        reason, message = str(parsed.get("reason", "")), str(parsed.get("message", ""))[:300]
    except (ValueError, AttributeError):
        reason, message = "", payload[:200].decode(errors="replace")
    if status == 404:
        return NotFoundError(status, reason or "NotFound", message)
    if status == 409 or (status == 422 and "test" in message.lower()):
        return ConflictError(status, reason or "Conflict", message)
    return KubeError(status, reason, message)


def _make_session(
    info: kopf.ConnectionInfo, context: ssl.SSLContext | bool, *, limit: int
) -> aiohttp.ClientSession:
    headers: dict[str, str] = {}
    if info.token:
        headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
    auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
    connector = aiohttp.TCPConnector(ssl=context, limit=limit)
    return aiohttp.ClientSession(
        connector=connector, headers=headers, auth=auth, timeout=aiohttp.ClientTimeout(total=60)
    )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    context: ssl.SSLContext | bool = True
    if info.insecure:
        context = False
    elif info.server.startswith("https"):
        context = ssl.create_default_context()
        if info.ca_path:
            context.load_verify_locations(cafile=str(info.ca_path))
        elif info.ca_data:
            context.load_verify_locations(cadata=_pem(info.ca_data))
        cert, key = info.certificate_path, info.private_key_path
        with tempfile.TemporaryDirectory(prefix="webhook-kube-") as directory:
            if info.certificate_data and info.private_key_data:
                cert, key = Path(directory, "c.pem"), Path(directory, "k.pem")
                cert.write_text(_pem(info.certificate_data))
                key.write_text(_pem(info.private_key_data))
            if cert and key:
                context.load_cert_chain(str(cert), str(key))
    return context


def _pem(data: str | bytes) -> str:
    """kubeconfig data fields are base64 of PEM; ConnectionInfo may carry either form."""
    text = data.decode() if isinstance(data, bytes) else data
    if "-----BEGIN" in text:
        return text
    return base64.b64decode(text).decode()
