"""`webhook-operator replay`: put failed deliveries back to Pending, through the annotations.

`--event NAME` writes a new value of `webhooks.openplatform.dev/redeliver` on that event;
`--subscription NAME [--since DURATION]` writes `webhooks.openplatform.dev/recover-since` on the
subscription: every failed delivery to it of an event created since then starts over. Both are
plain annotations, so the request shows in `kubectl get -o yaml` and in the audit log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re

from webhook_operator.client import ClientError, NotFoundError
from webhook_operator.client.checks import GROUP
from webhook_operator.client.connection import connect
from webhook_operator.client.transport import MERGE_PATCH, SyncApi
from webhook_operator.commands.common import BAD_INPUT, CLUSTER_ERROR, OK, add_connection_flags, fail, note

REDELIVER_ANNOTATION = f"{GROUP}/redeliver"
RECOVER_SINCE_ANNOTATION = f"{GROUP}/recover-since"
DEFAULT_SINCE = "7d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay",
        help="put failed deliveries back to Pending (one event, or a subscription's since a time)",
        description="Put failed deliveries back to Pending: those of one event (--event), or every "
        "failed delivery to a subscription of events created within --since (--subscription).",
    )
    add_connection_flags(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--event", metavar="NAME", help="the WebhookEvent whose failed deliveries to redo")
    target.add_argument("--subscription", metavar="NAME", help="the WebhookSubscription to recover")
    parser.add_argument(
        "--since",
        metavar="DURATION",
        help=f"with --subscription: events created this long ago or later, e.g. 90m, 12h, 1d12h "
        f"(default {DEFAULT_SINCE})",
    )
    parser.set_defaults(handler=run)


def parse_duration(text: str) -> dt.timedelta:
    """`1d12h`, `90m`, `30s`: whole numbers with units s, m, h, d, largest first or not."""
    if not text or _DURATION.sub("", text) != "":
        raise ValueError(f"--since {text!r} is not a duration such as 30m, 12h or 1d12h (units s, m, h, d)")
    return dt.timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(text)))


def run(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    if args.since is not None and args.subscription is None:
        fail(BAD_INPUT, "--since applies to --subscription only")
    try:
        since = now - parse_duration(args.since or DEFAULT_SINCE)
    except ValueError as error:
        fail(BAD_INPUT, str(error))
    try:
        connection = connect(args.kubeconfig, args.context)
        namespace = args.namespace or connection.default_namespace
        api = SyncApi(connection)
        try:
            if args.event:
                return _replay_event(api, namespace, args.event, now)
            return _recover_subscription(api, namespace, args.subscription, since)
        finally:
            api.close()
    except NotFoundError as error:
        fail(CLUSTER_ERROR, f"{error.message} in namespace {namespace}")
    except ClientError as error:
        fail(CLUSTER_ERROR, str(error))


def _annotate(api: SyncApi, path: str, annotation: str, value: str) -> None:
    api.request(
        "PATCH", path, body={"metadata": {"annotations": {annotation: value}}}, content_type=MERGE_PATCH
    )


def _replay_event(api: SyncApi, namespace: str, name: str, now: dt.datetime) -> int:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/webhookevents/{name}"
    event = api.request("GET", path)
    failed = [d for d in (event.get("status") or {}).get("deliveries") or [] if d.get("state") == "Failed"]
    value = now.isoformat(timespec="microseconds").replace("+00:00", "Z")  # new on every call
    _annotate(api, path, REDELIVER_ANNOTATION, value)
    print(f"webhookevent/{name} redelivery requested")
    if failed:
        names = ", ".join(d["subscription"] for d in failed)
        note(f"{len(failed)} failed deliveries go back to Pending: {names}")
    else:
        note("no delivery of it is Failed now: there is nothing to redeliver")
    return OK


def _recover_subscription(api: SyncApi, namespace: str, name: str, since: dt.datetime) -> int:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{namespace}/webhooksubscriptions/{name}"
    api.request("GET", path)  # a clear "not found" before writing anything
    value = since.isoformat(timespec="seconds").replace("+00:00", "Z")
    _annotate(api, path, RECOVER_SINCE_ANNOTATION, value)
    print(f"webhooksubscription/{name} recovery requested")
    note(
        f"failed deliveries to it of events created since {value} go back to Pending "
        f"(status.recovery records how many)"
    )
    return OK
