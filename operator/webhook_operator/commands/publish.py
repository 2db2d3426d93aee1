"""`webhook-operator publish TYPE`: create a WebhookEvent, print its name, optionally wait for it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from webhook_operator.client import (
    ApiError,
    ClientError,
    ConfigError,
    EventStatus,
    InvalidEventError,
    KeyConflictError,
    Publisher,
    WaitTimeoutError,
)
from webhook_operator.client.checks import MAX_DATA_BYTES, check_event, parse_data
from webhook_operator.client.publisher import DEFAULT_WAIT_SECONDS
from webhook_operator.commands.common import (
    BAD_INPUT,
    CLUSTER_ERROR,
    CONFLICT,
    EVENT_FAILED,
    OK,
    add_connection_flags,
    fail,
    note,
)

EPILOG = """\
exit codes: 0 published (with --wait: Delivered); 1 with --wait: the event Failed; 2 bad input,
nothing created (with --wait also: timed out); 3 the key was already used for a different event;
4 the API server refused or could not be reached.

examples:
  webhook-operator publish order.created -n shop --data '{"orderId": 1001}' --key order-1001-created
  webhook-operator publish invoice.paid --data-file invoice.json --wait --timeout 30
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "publish",
        help="create a WebhookEvent (idempotent with --key) and print its name",
        description="Create a WebhookEvent and print its name. With --key, publishing the same key "
        "again finds the first event instead of creating a second one.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("type", metavar="TYPE", help="event type, e.g. order.created")
    add_connection_flags(parser)
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data", metavar="JSON", help="the event's data, a JSON object (default {})")
    data.add_argument("--data-file", metavar="FILE", help="read the data from FILE ('-': standard input)")
    parser.add_argument(
        "--key", metavar="KEY", help="idempotency key: the same key publishes one event, however often sent"
    )
    parser.add_argument("--source", metavar="SRC", help="CloudEvents source, e.g. /shop/orders")
    parser.add_argument(
        "--subscription",
        action="append",
        default=[],
        metavar="NAME",
        help="deliver only to this subscription (repeatable; still type-filtered)",
    )
    parser.add_argument(
        "--ttl", type=int, metavar="SECONDS", help="delete the event this long after it finished"
    )
    parser.add_argument("--wait", action="store_true", help="wait until the event is Delivered or Failed")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"with --wait: give up after this long (default {DEFAULT_WAIT_SECONDS:g})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        data = _read_data(args)
        options = {
            "key": args.key,
            "source": args.source,
            "subscriptions": args.subscription,
            "ttl_seconds": args.ttl,
        }
        check_event(args.type, data, **options)  # every check before the first request
        if args.wait and args.timeout <= 0:
            raise InvalidEventError("--timeout must be more than 0 seconds")
    except InvalidEventError as error:
        fail(BAD_INPUT, f"{error} (nothing was published)")
    try:
        with Publisher(args.namespace, args.kubeconfig, context=args.context) as publisher:
            event = publisher.publish(args.type, data, **options)
            print(event.name, flush=True)
            if not event.created:
                note(f"webhookevent/{event.name} already published with this key: nothing new was created")
            if not args.wait:
                return OK
            try:
                status = publisher.wait(event.name, timeout=args.timeout)
            except WaitTimeoutError as error:
                note(f"timed out: {error}")
                return BAD_INPUT
    except InvalidEventError as error:
        fail(BAD_INPUT, f"{error} (nothing was published)")
    except KeyConflictError as error:
        fail(CONFLICT, str(error))
    except (ApiError, ConfigError, ClientError) as error:
        fail(CLUSTER_ERROR, str(error))
    _report(status)
    return OK if status.outcome == "Delivered" else EVENT_FAILED


def _read_data(args: argparse.Namespace) -> dict[str, Any]:
    if args.data_file is None:
        return parse_data(args.data) if args.data is not None else {}
    limit = MAX_DATA_BYTES * 4 + 1  # room for whitespace; the serialized size is checked after parsing
    try:
        if args.data_file == "-":
            text = sys.stdin.read(limit)
        else:
            with Path(args.data_file).open(encoding="utf-8") as file:
                text = file.read(limit)
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidEventError(f"cannot read --data-file {args.data_file}: {error}") from None
    if len(text) >= limit:
        raise InvalidEventError(f"--data-file is far over the data limit of {MAX_DATA_BYTES} bytes")
    return parse_data(text)


def _report(status: EventStatus) -> None:
    note(f"{status.outcome}: {status.message or status.reason or ''}".rstrip(": "))
    for delivery in status.deliveries:
        detail = f", HTTP {delivery.last_status_code}" if delivery.last_status_code else ""
        error = f": {delivery.last_error}" if delivery.last_error and delivery.state == "Failed" else ""
        note(
            f"  {delivery.subscription}: {delivery.state} after {delivery.attempts} attempt(s){detail}{error}"
        )
