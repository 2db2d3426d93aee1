"""`kubectl get` and `kubectl describe` as text, for the demo: the CRDs' printer columns, kubectl's
age format and column layout. Pure functions over plain dicts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.clock import parse_time

_STEP = re.compile(r'\.([A-Za-z0-9_-]+)|\[\?\(@\.([A-Za-z0-9_-]+)=="([^"]*)"\)\]')


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    json_path: str
    priority: int = 0


def printer_columns(
    crd: Mapping[str, Any], version: str | None = None, *, wide: bool = False
) -> list[Column]:
    """The additionalPrinterColumns of a CRD version (the storage one by default).

    Without `wide`, only priority-0 columns, as `kubectl get` shows; with it, all (`-o wide`).
    """
    versions = crd["spec"]["versions"]
    chosen = next(
        (v for v in versions if (v["name"] == version if version else v.get("storage"))), versions[0]
    )
    columns = [
        Column(c["name"], c.get("type", "string"), c["jsonPath"], int(c.get("priority", 0)))
        for c in chosen.get("additionalPrinterColumns") or []
    ]
    return [c for c in columns if wide or c.priority == 0]


def evaluate(obj: Mapping[str, Any], json_path: str) -> Any:
    """The subset of JSONPath printer columns use: `.a.b` and `[?(@.key=="value")]` filters."""
    values: list[Any] = [obj]
    position = 0
    while position < len(json_path):
        step = _STEP.match(json_path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {json_path!r} at {position}")
        position = step.end()
        field, key, wanted = step.groups()
        found: list[Any] = []
        for value in values:
            if field is not None and isinstance(value, Mapping) and field in value:
                found.append(value[field])
            elif key is not None and isinstance(value, list):
                found += [
                    item for item in value if isinstance(item, Mapping) and str(item.get(key)) == wanted
                ]
        values = found
    return values[0] if values else None


def human_age(created: dt.datetime | None, now: dt.datetime) -> str:
    """kubectl's `HumanDuration`: 45s, 3m12s, 15m, 4h5m, 3d2h, ..."""
    if created is None:
        return "<unknown>"
    seconds = int((now - created).total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours = seconds // 60, seconds // 3600
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = hours // (24 * 365), (hours // 24) % 365
    if hours < 24 * 365 * 8:
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{years}y"


def cell(value: Any, column_type: str, now: dt.datetime) -> str:
    if value is None:
        return ""
    if column_type == "date":
        return human_age(parse_time(str(value)), now)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def layout(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns three spaces apart, like kubectl's tabwriter."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "   ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(indent + line for line in lines)


def get_table(objects: Sequence[Mapping[str, Any]], columns: Sequence[Column], now: dt.datetime) -> str:
    """`kubectl get <kind>`: NAME, then the printer columns, one row per object, sorted by name."""
    header = ["NAME", *(c.name.upper() for c in columns)]
    rows = [
        [obj["metadata"]["name"], *(cell(evaluate(obj, c.json_path), c.type, now) for c in columns)]
        for obj in sorted(objects, key=lambda o: o["metadata"]["name"])
    ]
    if not rows:
        return "No resources found."
    return layout([header, *rows])


def describe_event(
    event: Mapping[str, Any], k8s_events: Sequence[Mapping[str, Any]], now: dt.datetime
) -> str:
    """The parts of `kubectl describe webhookevent` a person reads first: conditions, deliveries, Events."""
    meta, spec, status = event["metadata"], event.get("spec") or {}, event.get("status") or {}
    lines = [
        f"Name:         {meta['name']}",
        f"Namespace:    {meta.get('namespace', '')}",
        f"Kind:         {event.get('kind', 'WebhookEvent')}",
        f"Type:         {spec.get('type', '')}",
        f"UID:          {meta.get('uid', '')}",
        "Status:",
        "  Conditions:",
    ]
    conditions = [
        [c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", "")]
        for c in status.get("conditions") or []
    ]
    lines.append(layout([["Type", "Status", "Reason", "Message"], *conditions], indent="    "))
    lines.append("  Deliveries:")
    deliveries = [
        [
            d.get("subscription", ""),
            d.get("state", ""),
            str(d.get("attempts", 0)),
            str(d.get("lastStatusCode", "")),
            d.get("reason") or "",
            d.get("lastError") or "",
        ]
        for d in status.get("deliveries") or []
    ]
    header = ["Subscription", "State", "Attempts", "Last Code", "Reason", "Last Error"]
    lines.append(layout([header, *deliveries], indent="    "))
    lines.append(
        f"  Succeeded: {status.get('succeeded', 0)}  Failed: {status.get('failed', 0)}"
        f"  Pending: {status.get('pending', 0)}"
    )
    lines.append("Events:" if k8s_events else "Events:       <none>")
    if k8s_events:
        rows = [
            [
                e.get("type", ""),
                e.get("reason", ""),
                human_age(parse_time(e.get("lastTimestamp") or ""), now),
                e.get("source", {}).get("component", ""),
                e.get("message", ""),
            ]
            for e in k8s_events
        ]
        lines.append(layout([["Type", "Reason", "Age", "From", "Message"], *rows], indent="  "))
    return "\n".join(lines)
