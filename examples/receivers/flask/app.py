"""A Standard Webhooks receiver for webhook-operator, in Flask.

For every POST /webhooks:

1. Verify webhook-id / webhook-timestamp / webhook-signature over the raw body bytes with the
   official `standardwebhooks` library (v1, HMAC) or `cryptography` (v1a, ed25519). A bad
   signature, a missing header or a timestamp more than 5 minutes from now answers 401, and the
   request is never processed.
2. Drop duplicates: the operator sends the same webhook-id on every retry of one event, so an
   id seen before answers 200 without processing the event again.
3. Acknowledge fast: the event goes into a bounded in-process queue, the request answers 202
   at once, and a worker thread processes the event after the response.
4. When the queue is full, answer 503 with Retry-After and do NOT remember the id, so that the
   operator's retry (same webhook-id) is processed normally.

Environment: WEBHOOK_SECRET (the Secret's signingKey "whsec_...") and/or WEBHOOK_PUBLIC_KEYS
(the subscription's status.signing.publicKeys "whpk_...", for whsk_ keys), HOST (default
127.0.0.1), PORT (default 8000), QUEUE_SIZE (1000), RETRY_AFTER_SECONDS (5),
DEDUP_TTL_SECONDS (86400), DEDUP_MAX_ENTRIES (100000), MAX_BODY_BYTES (2 MiB),
PROCESS_DELAY_MS (0), PROCESSED_LOG (unset). Run it with `python app.py`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, jsonify
from webhook_kit import (
    SeenIds,
    WorkQueue,
    accept,
    env_int,
    error,
    load_webhook,
    record_processed,
    serve,
    simulate_work,
    verify_request,
)

log = logging.getLogger("webhook-receiver")


def process_event(webhook_id: str, event: dict[str, Any]) -> None:
    """Your business logic. Runs on the worker thread, after the 202 was sent.

    `event` is the body the operator sent: {"type": ..., "timestamp": ..., "data": {...}}.
    """
    simulate_work()
    log.info("processed %s %s", webhook_id, event.get("type"))
    record_processed(
        {
            "receiver": "flask",
            "id": webhook_id,
            "type": event.get("type"),
            "timestamp": event.get("timestamp"),
            "data": event.get("data"),
        }
    )


webhook = load_webhook()
seen = SeenIds(env_int("DEDUP_MAX_ENTRIES", 100_000), env_int("DEDUP_TTL_SECONDS", 86_400))
work = WorkQueue(env_int("QUEUE_SIZE", 1000), process_event)

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = env_int("MAX_BODY_BYTES", 2 * 1024 * 1024)


@app.post("/webhooks")
def receive() -> Response:
    verified = verify_request(webhook)
    if isinstance(verified, Response):
        return verified  # 401: never processed
    webhook_id, body = verified
    try:
        event = json.loads(body)
    except ValueError:
        return error(400, "body is not JSON")  # authentic but unusable: a retry won't help
    if not isinstance(event, dict):
        return error(400, "body is not a JSON object")
    return accept(seen, work, webhook_id, event)


@app.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok", receiver="flask", queued=work.qsize(), seen=len(seen))


if __name__ == "__main__":
    serve(app, work)
