"""A CloudEvents receiver for webhook-operator subscriptions with `format: CloudEvents`, in Flask.

The operator sends CloudEvents in binary content mode: the body is the event's `spec.data`,
the attributes are `ce-*` headers (ce-id is the event uid, ce-type, ce-source, ce-time), and
when `spec.signing` is set it adds the Standard Webhooks headers too, signing the raw body.

For every POST /webhooks:

1. Verify the Standard Webhooks signature over the raw body (401 otherwise, never processed).
   The signature covers webhook-id, webhook-timestamp and the body, NOT the ce-* headers; so
   ce-id must equal the signed webhook-id (401 otherwise), and ce-type / ce-source are only as
   trustworthy as the connection (use HTTPS, and check them against what the data says).
2. Parse the request with the official `cloudevents` SDK (400 if it is not a CloudEvent).
3. Drop duplicates by webhook-id (200), queue and answer 202, or 503 + Retry-After when the
   queue is full, exactly like app.py.

Same environment variables as app.py; PORT defaults to 8001. Run it with
`python cloudevents_app.py`.
"""

from __future__ import annotations

import logging
import os

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from flask import Flask, Response, jsonify, request
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


def process_event(webhook_id: str, event: BaseCloudEvent) -> None:
    """Your business logic. Runs on the worker thread, after the 202 was sent."""
    simulate_work()
    log.info("processed %s %s", webhook_id, event.get_type())
    record_processed(
        {
            "receiver": "flask-cloudevents",
            "id": webhook_id,
            "type": event.get_type(),
            "source": event.get_source(),
            "specversion": event.get_specversion(),
            "time": event.get_time(),
            "data": event.get_data(),
        }
    )


webhook = load_webhook()
seen = SeenIds(env_int("DEDUP_MAX_ENTRIES", 100_000), env_int("DEDUP_TTL_SECONDS", 86_400))
work = WorkQueue(env_int("QUEUE_SIZE", 1000), process_event)

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = env_int("MAX_BODY_BYTES", 2 * 1024 * 1024)


@app.post(os.environ.get("WEBHOOK_PATH", "/webhooks"))
def receive() -> Response:
    verified = verify_request(webhook)
    if isinstance(verified, Response):
        return verified  # 401: never processed
    webhook_id, body = verified
    try:
        # Binary content mode (ce-* headers), or structured mode (the whole event in the body).
        event = from_http_event(HTTPMessage(headers=dict(request.headers), body=body))
    except Exception as exc:
        log.warning("webhook %s is not a CloudEvent: %s", webhook_id, exc)
        return error(400, "not a valid CloudEvent")
    if event.get_id() != webhook_id:
        log.warning("webhook %s carries ce-id %r", webhook_id, event.get_id())
        return error(401, "ce-id does not match the signed webhook-id")
    return accept(seen, work, webhook_id, event)


@app.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok", receiver="flask-cloudevents", queued=work.qsize(), seen=len(seen))


if __name__ == "__main__":
    serve(app, work, default_port=8001)
