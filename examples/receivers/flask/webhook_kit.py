"""The parts every webhook receiver needs, shared by app.py and cloudevents_app.py.

- `load_webhook()`: the verifier: v1 (HMAC) with the official Standard Webhooks library, keyed
  from WEBHOOK_SECRET, and/or v1a (ed25519) with `cryptography`, from WEBHOOK_PUBLIC_KEYS.
- `verify_request()`: verifies the signature headers over the raw request body (401 otherwise).
- `SeenIds`: a bounded (LRU), expiring (TTL) set of webhook-ids, to drop duplicates.
- `WorkQueue`: a bounded queue and a worker thread, to acknowledge first and process after.
- `accept()`: deduplicate + queue + answer 202, or 200 for a duplicate, or 503 + Retry-After.
- `record_processed()`: appends one JSON line per processed event to PROCESSED_LOG (tests).
- `serve()`: runs the app until SIGTERM or Ctrl-C, then finishes the queued work.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, Response, jsonify, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = logging.getLogger("webhook-receiver")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


# --------------------------------------------------------------------------------------------
# Signature verification.
# --------------------------------------------------------------------------------------------
class Verifier:
    """Checks webhook-signature with what the receiver trusts: a whsec_ secret (v1, HMAC, through
    the official `standardwebhooks` library) and/or whpk_ public keys (v1a, ed25519, through
    `cryptography`). One verifying signature is enough: during a rotation the operator sends two."""

    TOLERANCE_SECONDS = 5 * 60  # as the standardwebhooks library: older requests are replays

    def __init__(self, secret: str, public_keys: list[str]) -> None:
        self.webhook = Webhook(secret) if secret else None
        self.public_keys = [
            Ed25519PublicKey.from_public_bytes(base64.b64decode(key.removeprefix("whpk_"), validate=True))
            for key in public_keys
        ]
        for key in public_keys:
            if not key.startswith("whpk_"):
                raise ValueError("a public key starts with whpk_")

    def verify(self, body: bytes, headers: dict[str, str]) -> None:
        """Raise WebhookVerificationError unless a trusted signature verifies."""
        if self.webhook is not None:
            try:
                self.webhook.verify(body, headers, json_parse=False)
                return
            except WebhookVerificationError:
                if not self.public_keys:
                    raise
        self._verify_v1a(body, {name.lower(): value for name, value in headers.items()})

    def _verify_v1a(self, body: bytes, headers: dict[str, str]) -> None:
        msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
        if not msg_id or not timestamp.isdigit():
            raise WebhookVerificationError("missing required headers")
        if abs(time.time() - int(timestamp)) > self.TOLERANCE_SECONDS:
            raise WebhookVerificationError("message timestamp too old or too new")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        for entry in headers.get("webhook-signature", "").split(" "):
            version, _, encoded = entry.partition(",")
            if version != "v1a":
                continue
            try:
                signature = base64.b64decode(encoded, validate=True)
            except ValueError:
                continue
            for key in self.public_keys:
                try:
                    key.verify(signature, signed)
                    return
                except InvalidSignature:
                    continue
        raise WebhookVerificationError("no matching signature found")


def load_webhook() -> Verifier:
    """WEBHOOK_SECRET (whsec_..., HMAC) and/or WEBHOOK_PUBLIC_KEYS (whpk_..., space- or
    comma-separated, ed25519: the subscription's status.signing.publicKeys)."""
    secret = os.environ.get("WEBHOOK_SECRET", "").strip()
    public_keys = os.environ.get("WEBHOOK_PUBLIC_KEYS", "").replace(",", " ").split()
    if not secret and not public_keys:
        sys.exit(
            "set WEBHOOK_SECRET (the signingKey of the subscription's Secret, whsec_...) or "
            "WEBHOOK_PUBLIC_KEYS (its status.signing.publicKeys, whpk_...)"
        )
    try:
        return Verifier(secret, public_keys)
    except Exception as exc:
        sys.exit(f"WEBHOOK_SECRET (whsec_<base64>) or WEBHOOK_PUBLIC_KEYS (whpk_<base64>) is invalid: {exc}")


def verify_request(webhook: Verifier) -> tuple[str, bytes] | Response:
    """Verify the signature headers over the raw body: (webhook-id, body), or a 401 response.

    Checked: webhook-id, webhook-timestamp and webhook-signature are present, the timestamp is
    within 5 minutes of now (replays of old requests fail), and one of the space-separated
    signatures verifies (during a key rotation the operator sends two).
    """
    body = request.get_data()  # the raw bytes, exactly as signed: never re-serialize the JSON
    try:
        webhook.verify(body, dict(request.headers))
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: malformed header or body
        log.warning("rejected webhook %r: %s", request.headers.get("webhook-id"), exc)
        return error(401, "invalid signature")
    return request.headers["webhook-id"], body


# --------------------------------------------------------------------------------------------
# Deduplication: a bounded (LRU) and expiring (TTL) set of webhook-ids, in memory.
#
# In production, with more than one process or replica, use a shared store instead, with the
# same two operations:
#   - Redis:    reserve = SET dedup:<webhook-id> 1 NX EX <ttl>  (OK only for the first caller)
#               release = DEL dedup:<webhook-id>
#   - Database: reserve = INSERT INTO processed_webhooks (webhook_id) ... with a UNIQUE
#               constraint on webhook_id, in the same transaction that stores the work;
#               a unique violation means "duplicate".
# The TTL should outlive the operator's whole retry window for one event (the sum of its
# backoff delays over retry.maxAttempts, each at most retry.maxDelaySeconds).
# --------------------------------------------------------------------------------------------
class SeenIds:
    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self._max_entries = max(1, max_entries)
        self._ttl = ttl_seconds
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, webhook_id: str) -> bool:
        """Remember the id; False if it is already remembered (a duplicate). Atomic."""
        now = time.monotonic()
        with self._lock:
            expires = self._expiry.get(webhook_id)
            if expires is not None and expires > now:
                self._expiry.move_to_end(webhook_id)
                return False
            self._expiry[webhook_id] = now + self._ttl
            self._expiry.move_to_end(webhook_id)
            while len(self._expiry) > self._max_entries:
                self._expiry.popitem(last=False)  # least recently seen
            return True

    def release(self, webhook_id: str) -> None:
        """Forget the id, so that the next delivery of it is processed (used with 503)."""
        with self._lock:
            self._expiry.pop(webhook_id, None)

    def __len__(self) -> int:
        return len(self._expiry)


# --------------------------------------------------------------------------------------------
# The work queue: bounded, processed by one worker thread after the response was sent.
#
# It lives in memory, so events that were acknowledged but not yet processed are lost if the
# process dies. When that matters, put the event into a durable queue (a Redis stream, SQS,
# a database "outbox" table, ...) before answering 2xx, and process it from there.
# --------------------------------------------------------------------------------------------
_STOP = object()


class WorkQueue:
    def __init__(self, maxsize: int, handler: Callable[[str, Any], None]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self._handler = handler
        self._thread = threading.Thread(target=self._run, name="webhook-worker", daemon=True)
        self._thread.start()
        self._stopping = False
        atexit.register(self.drain, 10.0)  # also under gunicorn, which has no hook of ours

    def offer(self, webhook_id: str, event: Any) -> bool:
        """Queue the event without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait((webhook_id, event))
        except queue.Full:
            return False
        return True

    def qsize(self) -> int:
        return self._queue.qsize()

    def drain(self, timeout: float) -> None:
        """Let the worker finish what is queued, then stop it (on shutdown)."""
        if self._stopping:
            return
        self._stopping = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("shutdown: %d queued events were not processed", self._queue.qsize())
            return
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            webhook_id, event = item
            try:
                self._handler(webhook_id, event)
            except Exception:
                # The event was acknowledged already, so the operator will not send it again:
                # log it (or park it in a dead-letter store) and go on with the next one.
                log.exception("processing webhook %s failed", webhook_id)


# --------------------------------------------------------------------------------------------
# Acknowledging.
# --------------------------------------------------------------------------------------------
def accept(seen: SeenIds, work: WorkQueue, webhook_id: str, event: Any) -> Response:
    """Deduplicate, queue and acknowledge; or ask for a retry when the queue is full."""
    if not seen.reserve(webhook_id):
        return jsonify(status="duplicate", id=webhook_id)  # 200: we have it, don't process again
    if not work.offer(webhook_id, event):
        seen.release(webhook_id)  # not taken: the operator's retry must be processed, not dropped
        response = error(503, "overloaded, retry later")
        response.headers["Retry-After"] = str(env_int("RETRY_AFTER_SECONDS", 5))
        return response
    response = jsonify(status="accepted", id=webhook_id)
    response.status_code = 202
    return response


def error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


# --------------------------------------------------------------------------------------------
# Observing processing (tests, demos) and simulating slow work.
# --------------------------------------------------------------------------------------------
_log_lock = threading.Lock()


def simulate_work() -> None:
    """Sleep PROCESS_DELAY_MS (default 0): lets you see the 503 path by hand."""
    delay_ms = env_int("PROCESS_DELAY_MS", 0)
    if delay_ms > 0:
        time.sleep(delay_ms / 1000)


def record_processed(entry: dict[str, Any]) -> None:
    """Append one JSON line per processed event to the file PROCESSED_LOG names, if set."""
    path = os.environ.get("PROCESSED_LOG")
    if not path:
        return
    line = json.dumps({**entry, "processed_at": time.time()}, separators=(",", ":"), default=str)
    with _log_lock, Path(path).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


# --------------------------------------------------------------------------------------------
# Serving.
# --------------------------------------------------------------------------------------------
def serve(app: Flask, work: WorkQueue, default_port: int = 8000) -> None:
    """Serve on HOST:PORT until SIGTERM or Ctrl-C, then finish the queued work (bounded).

    Flask's built-in threaded server is fine for one process. For more throughput run one
    gunicorn worker process with threads (`gunicorn -w 1 --threads 8 app:app`): the dedup
    store and the queue are per process, so several processes need the shared store and
    durable queue described above.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # werkzeug's serve_forever returns on it

    signal.signal(signal.SIGTERM, stop)
    host = os.environ.get("HOST", "127.0.0.1")
    port = env_int("PORT", default_port)
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    finally:
        work.drain(timeout=10)
