"""Publish a WebhookEvent idempotently from a Python application, with webhook_operator.client.

    python publish_order.py ORDER_ID [--namespace shop] [--amount 42.5] [--wait]

The idempotency key "order-<id>-created" names the event, so running this twice (a retried job,
a redelivered queue message, a timeout whose create did go through) publishes one event, and
receivers see one webhook-id. Credentials: $KUBECONFIG / ~/.kube/config, or the pod's service
account in a cluster; the identity needs the ClusterRole webhook-operator-publisher there.
"""

from __future__ import annotations

import argparse
import json
import sys

from webhook_operator.client import ClientError, Publisher, WaitTimeoutError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("order_id", type=int)
    parser.add_argument("--namespace", "-n", help="default: the kubeconfig context's namespace")
    parser.add_argument("--amount", type=float, default=0.0)
    parser.add_argument("--wait", action="store_true", help="wait until it is Delivered or Failed")
    args = parser.parse_args()

    try:
        with Publisher(namespace=args.namespace) as publisher:
            event = publisher.publish(
                "order.created",
                {"orderId": args.order_id, "amount": args.amount},
                key=f"order-{args.order_id}-created",
                source="/shop/orders",
                ttl_seconds=7 * 86400,  # keep it a week after it finished, then let it go
            )
            result = {"name": event.name, "uid": event.uid, "created": event.created}
            if args.wait:
                result["outcome"] = publisher.wait(event.name, timeout=60).outcome
    except WaitTimeoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClientError as error:  # bad input, a key reused for other data, API refused/unreachable
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
