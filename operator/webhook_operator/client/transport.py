"""Requests to the API server over httpx, sync and async, retried on transient errors.

Retried: connection errors and timeouts, 429 and 5xx (but 501), with exponential backoff and
jitter (honouring `Retry-After`) for up to `retry_seconds`. Safe for creates too: publishers
choose the object name before the first request, so a create that did happen answers the retry
with 409 AlreadyExists instead of making a second object.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from webhook_operator.client.connection import Connection
from webhook_operator.client.errors import AlreadyExistsError, ApiError, NotFoundError

MERGE_PATCH = "application/merge-patch+json"
DEFAULT_RETRY_SECONDS = 30.0
_FIRST_DELAY = 0.2
_MAX_DELAY = 5.0


def retryable(status: int) -> bool:
    return status == 0 or status == 429 or (status >= 500 and status != 501)


def retry_delay(attempt: int, retry_after: str | None, remaining: float) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None when the budget is spent."""
    delay = min(_MAX_DELAY, _FIRST_DELAY * 2**attempt) * random.uniform(0.5, 1.0)
    if retry_after and retry_after.isdigit():
        delay = max(delay, float(retry_after))
    return delay if delay < remaining else None


def api_error(status: int, payload: bytes) -> ApiError:
    try:
        parsed = json.loads(payload)
        reason, message = str(parsed.get("reason", "")), str(parsed.get("message", ""))[:500]
    except (ValueError, AttributeError):
        reason, message = "", payload[:300].decode(errors="replace")
    if status == 404:
        return NotFoundError(status, reason or "NotFound", message or "not found")
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExistsError(status, reason, message)
    return ApiError(status, reason, message or f"HTTP {status}")


def _unreachable(error: httpx.HTTPError) -> ApiError:
    return ApiError(0, type(error).__name__, f"the API server could not be reached: {error or type(error)}")


def _client_options(connection: Connection, timeout: float) -> dict[str, Any]:
    return {
        "base_url": connection.server,
        "verify": connection.ssl_context,
        "proxy": connection.proxy,
        "timeout": httpx.Timeout(timeout, connect=10.0),
        "headers": {"Accept": "application/json", "User-Agent": "webhook-operator-client"},
        "follow_redirects": False,
    }


def _build(
    client: httpx.Client | httpx.AsyncClient,
    connection: Connection,
    auth: str | None,
    method: str,
    path: str,
    *,
    body: object = None,
    content_type: str = "application/json",
    params: Mapping[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
) -> httpx.Request:
    headers = {"Authorization": auth} if auth else {}
    content = json.dumps(body).encode() if body is not None else None
    if content is not None:
        headers["Content-Type"] = content_type
    extensions = {"sni_hostname": connection.sni_hostname} if connection.sni_hostname else {}
    options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    return client.build_request(
        method, path, content=content, params=params, headers=headers, extensions=extensions, **options
    )


def _watch_query(params: Mapping[str, str], seconds: float) -> tuple[dict[str, str], httpx.Timeout]:
    """The server ends the stream after `seconds`; the read timeout leaves it room to."""
    query = {**params, "watch": "true", "timeoutSeconds": str(max(1, int(seconds)))}
    return query, httpx.Timeout(seconds + 10, connect=10.0)


def _result(response: httpx.Response) -> dict[str, Any] | ApiError:
    if response.status_code < 300:
        return dict(response.json()) if response.content else {}
    return api_error(response.status_code, response.content)


def _watch_event(line: str) -> dict[str, Any] | None:
    return json.loads(line) if line.strip() else None


class _Retries:
    """The backoff of one request: how long to wait before the next try, or the error to raise."""

    def __init__(self, budget: float) -> None:
        self._deadline = time.monotonic() + budget
        self._attempt = 0

    def delay(self, error: ApiError, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        delay = retry_delay(self._attempt, retry_after, self._deadline - time.monotonic())
        self._attempt += 1
        if not retryable(error.status) or delay is None:
            raise error
        return delay


class SyncApi:
    def __init__(
        self, connection: Connection, *, retry_seconds: float = DEFAULT_RETRY_SECONDS, timeout: float = 30.0
    ) -> None:
        self.connection = connection
        self._retry_seconds = retry_seconds
        self._client = httpx.Client(**_client_options(connection, timeout))

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        """Send (`body`, `content_type`, `params` as keywords) and return the decoded answer."""
        retries = _Retries(self._retry_seconds)
        while True:
            response = None
            request = _build(
                self._client, self.connection, self.connection.auth_header(), method, path, **options
            )
            try:
                response = self._client.send(request)
                result = _result(response)
            except httpx.TransportError as exc:
                result = _unreachable(exc)
            if not isinstance(result, ApiError):
                return result
            time.sleep(retries.delay(result, response))

    def watch(self, path: str, params: Mapping[str, str], *, seconds: float) -> Iterator[dict[str, Any]]:
        """Watch events from `path` until the server ends the stream (after `seconds`); not retried."""
        query, timeout = _watch_query(params, seconds)
        auth = self.connection.auth_header()
        request = _build(self._client, self.connection, auth, "GET", path, params=query, timeout=timeout)
        try:
            response = self._client.send(request, stream=True)
            try:
                if response.status_code >= 300:
                    raise api_error(response.status_code, response.read())
                for line in response.iter_lines():
                    if (event := _watch_event(line)) is not None:
                        yield event
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc


class AsyncApi:
    """SyncApi's twin for asyncio."""

    def __init__(
        self, connection: Connection, *, retry_seconds: float = DEFAULT_RETRY_SECONDS, timeout: float = 30.0
    ) -> None:
        self.connection = connection
        self._retry_seconds = retry_seconds
        self._client = httpx.AsyncClient(**_client_options(connection, timeout))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _auth(self) -> str | None:
        # May re-read a token file or run a kubeconfig exec plugin: off the event loop.
        return await asyncio.to_thread(self.connection.auth_header)

    async def request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        retries = _Retries(self._retry_seconds)
        while True:
            response = None
            request = _build(self._client, self.connection, await self._auth(), method, path, **options)
            try:
                response = await self._client.send(request)
                result = _result(response)
            except httpx.TransportError as exc:
                result = _unreachable(exc)
            if not isinstance(result, ApiError):
                return result
            await asyncio.sleep(retries.delay(result, response))

    async def watch(
        self, path: str, params: Mapping[str, str], *, seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        query, timeout = _watch_query(params, seconds)
        request = _build(
            self._client, self.connection, await self._auth(), "GET", path, params=query, timeout=timeout
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code >= 300:
                    raise api_error(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if (event := _watch_event(line)) is not None:
                        yield event
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise _unreachable(exc) from exc
