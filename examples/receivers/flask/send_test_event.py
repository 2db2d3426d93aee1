"""Send one signed test event to a receiver, the way webhook-operator does, then send it again.

    WEBHOOK_SECRET=whsec_... python send_test_event.py [URL] [--cloudevents]

Expect 202 (accepted) and then 200 (duplicate: same webhook-id, not processed again). With
--cloudevents it sends a binary-mode CloudEvent (for cloudevents_app.py, default port 8001).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook


def build(webhook_id: str, cloudevents: bool) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC)
    data = {"orderId": 1001, "total": "12.50"}
    if cloudevents:
        body = json.dumps(data).encode()
        headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": webhook_id,
            "ce-type": "order.created",
            "ce-source": "/shop/orders",
            "ce-time": now.isoformat().replace("+00:00", "Z"),
        }
    else:
        event = {"type": "order.created", "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
        body = json.dumps(event).encode()
        headers = {"content-type": "application/json"}
    return body, headers


def send(url: str, webhook: Webhook, webhook_id: str, body: bytes, headers: dict[str, str]) -> None:
    now = datetime.now(UTC)
    signed = {
        **headers,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": webhook.sign(webhook_id, now, body.decode()),
    }
    request = urllib.request.Request(url, data=body, headers=signed, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.status, response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After")
        print(exc.code, exc.read().decode().strip(), f"(Retry-After: {retry_after})" if retry_after else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "url", nargs="?", help="default: http://127.0.0.1:8000/webhooks (port 8001 with --cloudevents)"
    )
    parser.add_argument("--cloudevents", action="store_true", help="send a binary-mode CloudEvent")
    args = parser.parse_args()
    url = args.url or f"http://127.0.0.1:{8001 if args.cloudevents else 8000}/webhooks"
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET to the receiver's key (whsec_...)")
    webhook = Webhook(secret)
    webhook_id = str(uuid.uuid4())  # the operator uses the WebhookEvent's metadata.uid
    body, headers = build(webhook_id, args.cloudevents)
    print(f"POST {url} webhook-id={webhook_id}")
    send(url, webhook, webhook_id, body, headers)
    send(url, webhook, webhook_id, body, headers)  # a redelivery: same webhook-id


if __name__ == "__main__":
    main()
