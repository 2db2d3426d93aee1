#!/usr/bin/env python3
"""The capacity envelope on a real API server: what one event costs the API server and etcd.

Runs the real operator (one process, no leader election) against the cluster of KUBECONFIG,
creates N events for one subscription as fast as the API server takes them (16 threads, the
official client), waits until every one is Delivered, and reports:

- creates/s and delivered events/s (end to end: create, operator's status write);
- CPU seconds of kube-apiserver and etcd per 1,000 events, when they are local processes of the
  kube-apiserver kit (state dir = the kubeconfig's directory): events/s per API-server core;
- etcd's database growth per event (`etcd_mvcc_db_total_size_in_use_in_bytes` from etcd's
  /metrics, before compaction: every revision of the event is still there) and the stored
  size of one delivered event (its JSON as the API server returns it: what stays after
  compaction, until the TTL deletes it).

    KUBECONFIG=... .venv/bin/python scripts/capacity.py --events 2000 --etcd-metrics http://127.0.0.1:2379/metrics

The namespace `capacity-<random>` is left behind with its events (namespaces never finish
deleting on a bare API server); delete it when done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.receiver import LocalReceiver  # noqa: E402
from tests.faults.real_api import Api, Operator, delivered, eventually  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def kit_pids() -> dict[str, int]:
    state = Path(os.environ.get("KUBECONFIG", "")).resolve().parent / "run"
    found = {}
    for name in ("kube-apiserver", "etcd"):
        with contextlib.suppress(OSError, ValueError):
            found[name] = int((state / f"{name}.pid").read_text().strip())
    return found


def etcd_in_use(url: str | None) -> float | None:
    if not url:
        return None
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (a URL the user gave)
        text = answer.read().decode()
    match = re.search(r"^etcd_mvcc_db_total_size_in_use_in_bytes (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--payload-bytes", type=int, default=200, help="size of each event's data (default 200)"
    )
    parser.add_argument("--etcd-metrics", help="etcd's /metrics URL, for the database size")
    args = parser.parse_args()

    api = Api()
    namespace = f"capacity-{secrets.token_hex(3)}"
    api.create_namespace(namespace)
    receiver = LocalReceiver().start()
    api.subscribe(namespace, "orders", f"{receiver.base_url}/{namespace}/orders")
    workdir = Path(tempfile.mkdtemp(prefix="capacity-"))
    operator = Operator("operator", workdir, "--namespace", namespace, "--workers", "64")
    try:
        eventually(lambda: api.ready(namespace, "orders"), timeout=60, what="the subscription Ready")
        pids = kit_pids()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        etcd_before = etcd_in_use(args.etcd_metrics)
        payload = {"note": "x" * args.payload_bytes}
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(lambda n: api.publish(namespace, f"e-{n}", {**payload, "n": n}), range(args.events))
            )
        created = time.monotonic() - started

        def done() -> bool:
            events = api.events(namespace)
            return len(events) == args.events and all(delivered(e) for e in events)

        eventually(done, timeout=600, what="every event Delivered", interval=1.0)
        finished = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        etcd_after = etcd_in_use(args.etcd_metrics)
        events = api.events(namespace)
        stored = sum(len(json.dumps(e, separators=(",", ":"))) for e in events) / len(events)
    finally:
        operator.stop()
        receiver.stop()

    result = {
        "events": args.events,
        "creates_per_s": round(args.events / created),
        "delivered_per_s": round(args.events / finished),
        "cpu_s_per_1000_events": {name: round(1000 * s / args.events, 2) for name, s in cpu.items()},
        "events_per_s_per_api_server_core": (
            round(args.events / cpu["kube-apiserver"]) if cpu.get("kube-apiserver") else None
        ),
        "stored_bytes_per_delivered_event": round(stored),
        "etcd_growth_bytes_per_event_before_compaction": (
            round((etcd_after - etcd_before) / args.events) if etcd_before and etcd_after else None
        ),
        "namespace": namespace,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
