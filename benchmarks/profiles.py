"""Profiling the operator process during the sustained phase, and summarising the result.

py-spy (preferred: it samples from outside, so the operator runs at full speed) records
collapsed stacks with `--format raw`; without py-spy, pyinstrument runs inside the operator
(through its control port) and slows it down by a factor of about two.

    python -m benchmarks.profiles FILE.raw     # the summary of a py-spy recording
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

# Where time goes, by the first matching frame from the top of each stack (the leaf is last).
BUCKETS: tuple[tuple[str, str], ...] = (
    ("logging", r"\(logging/|\(webhook_operator/logs\.py"),
    ("kopf: watch stream and JSON decoding", r"\(kopf/_cogs/clients/watching\.py"),
    ("kopf: per-event processing (causes, diffbase, handlers)", r"\(kopf/_core/reactor/processing\.py"),
    ("kopf: other", r"\(kopf/"),
    ("HTTP delivery (Sender, httpx, aiohttp client)", r"\(webhook_operator/sender\.py"),
    ("event watch (stream, JSON decoding, store)", r"\(webhook_operator/engine/event_watch\.py"),
    ("status write (KubeClient)", r"\(webhook_operator/kube\.py"),
    ("reconcile logic (plan, match, render status)", r"\(webhook_operator/engine/event_reconciler\.py"),
    ("work queue", r"\(webhook_operator/engine/workqueue\.py"),
    ("subscription reconciler", r"\(webhook_operator/engine/subscription_reconciler\.py"),
    ("asyncio loop itself (select, callbacks)", r"\(asyncio/"),
)


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recording:
    """`py-spy record` of one process until stop()."""

    def __init__(self, pid: int, output: str, rate: int = 250) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("py-spy is not installed")
        self.output = output
        self.process = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                output,
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        if not Path(self.output).exists():
            raise RuntimeError(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-500:]}")
        return self.output


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(path: str, top: int = 25) -> str:
    stacks = load(path)
    busy = [(frames, n) for frames, n in stacks if not _idle(frames)]
    total, busy_total = sum(n for _, n in stacks), sum(n for _, n in busy)
    if not busy_total:
        return "no busy samples"
    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, n in busy:
        leaves[_short(frames[-1])] += n
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += n
        for label, pattern in BUCKETS:
            if any(re.search(pattern, frame) for frame in frames):
                buckets[label] += n
                break
        else:
            buckets["other"] += n
    lines = [
        f"{busy_total} busy samples of {total} ({100 * busy_total / total:.0f}% of wall time on CPU)",
        "",
        "where the busy time goes (first matching layer, top of stack first):",
    ]
    lines += [f"  {100 * n / busy_total:5.1f}%  {label}" for label, n in buckets.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * n / busy_total:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    lines += ["", f"top {top} functions by inclusive time:"]
    lines += [f"  {100 * n / busy_total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _idle(frames: list[str]) -> bool:
    leaf = frames[-1]
    return (
        "select (selectors.py" in leaf or "poll (selectors.py" in leaf or leaf.startswith("wait (threading")
    )


def _short(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)  # aggregate by function, not by line


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
