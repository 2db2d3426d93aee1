"""The benchmark's report: verdicts against the targets and the table printed after a run."""

from __future__ import annotations

from typing import Any

from benchmarks.common import (
    TARGETS,
)


def judge(results: dict[str, Any]) -> dict[str, Any]:
    verdicts = {}
    for metric, (op, bound, what) in TARGETS.items():
        if metric not in results:
            continue  # its phase did not run
        value = results.get(metric)
        if metric == "api_writes_per_event" and value is not None:
            value = round(value, 2)  # the 0.001s are subscription health flushes (one per 5 s)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        verdicts[metric] = {"value": value, "target": f"{op} {bound:g}", "met": met, "what": what}
    return verdicts


def table(results: dict[str, Any]) -> str:
    rows = [
        ("L_create (creates/s, 32 concurrent)", results.get("L_create"), ""),
        ("L_status (status patches/s, 32 concurrent)", results.get("L_status"), ""),
        ("L_api = 1/(1/L_create + 1/L_status)", results.get("L_api"), ""),
        ("L_http project Sender (POST/s, 64 conc.)", results.get("L_http_sender"), ""),
        ("L_http plain aiohttp (POST/s, 64 conc.)", results.get("L_http_aiohttp"), ""),
        ("throughput (events/s, first create..last receipt)", results.get("throughput"), ""),
    ]
    for metric, verdict in results["targets"].items():
        rows.append(
            (
                f"{verdict['what']} [{metric}]",
                verdict["value"],
                f"{verdict['target']} {'met' if verdict['met'] else 'NOT MET'}",
            )
        )
    lat = results.get("latency_full") or {}
    hol = results.get("hol") or {}
    rows += [
        (
            "latency at full load p50/p95/p99 (ms)",
            f"{lat.get('p50_ms')}/{lat.get('p95_ms')}/{lat.get('p99_ms')}",
            "",
        ),
        ("half-rate p95 (ms)", (results.get("half_rate") or {}).get("p95_ms"), ""),
        (
            "healthy p99 unloaded / in storm (ms)",
            f"{results.get('hol_unloaded_p99_ms')} / {results.get('hol_storm_p99_ms')}",
            f"storm {hol.get('storm_attempts_per_s')} attempts/s",
        ),
        ("operator CPU s per 1,000 deliveries", results.get("operator_cpu_s_per_1000"), ""),
        (
            "CPU s per 1,000 events, every process",
            " ".join(f"{k} {v}" for k, v in (results.get("helper_cpu_s_per_1000") or {}).items()),
            "",
        ),
        ("L_cpu = cores / CPU s per event, all processes", results.get("L_cpu"), "the machine's ceiling"),
        ("throughput / L_cpu", results.get("throughput_over_L_cpu"), ""),
        ("operator's own API writes per event", results.get("operator_writes_per_event"), ""),
        ("peak RSS under load (MB)", results.get("peak_rss_mb"), ""),
        ("events lost (all phases)", results.get("lost"), ""),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}}  {'value':>14}  target", "-" * (width + 30)]
    lines += [f"{name:<{width}}  {value!s:>14}  {note}" for name, value, note in rows]
    return "\n".join(lines)
