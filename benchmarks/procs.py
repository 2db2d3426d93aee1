"""Helper processes: start them, find where they listen, read their CPU and memory, stop them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Helper:
    name: str
    process: subprocess.Popen[bytes]
    info: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak RSS) of a process, in KiB, from /proc/PID/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            found[key.lower()] = int(value.split()[0])
    return found


def start(name: str, module: str, *args: str, log: IO[bytes] | None = None, timeout: float = 60.0) -> Helper:
    """Start `python -m module args` and wait for the JSON line it prints once it is serving."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=log if log is not None else subprocess.DEVNULL,
        env=env,
        cwd=_ROOT,
        start_new_session=True,  # a Ctrl+C of the benchmark reaches the helpers only through stop()
    )
    assert process.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not line or not line[0].strip():
        process.kill()
        raise RuntimeError(f"the {name} process did not start (exit code {process.poll()}); see its log")
    return Helper(name, process, json.loads(line[0]))


def stop(helper: Helper, timeout: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if helper.process.poll() is None:
        helper.process.send_signal(signal.SIGTERM)
        try:
            helper.process.wait(timeout)
        except subprocess.TimeoutExpired:
            helper.process.kill()
            helper.process.wait()
    return helper.process.returncode


@contextlib.contextmanager
def running(name: str, module: str, *args: str, log: IO[bytes] | None = None) -> Iterator[Helper]:
    helper = start(name, module, *args, log=log)
    try:
        yield helper
    finally:
        stop(helper)
