"""The operator as a real process, `python -m webhook_operator run`, as it runs in a pod.

It logs in through a kubeconfig that points at the API stand-in's plain-http URL (no auth),
exactly the path `webhook-operator run` takes on a laptop. SIGKILL is a hard crash (no
cleanup, no final writes); SIGTERM is what a rolling update or `kubectl delete pod` sends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster:
    server: "{server}"
contexts:
- name: standin
  context: {{cluster: standin, user: anonymous, namespace: default}}
current-context: standin
users:
- name: anonymous
  user: {{}}
"""


class OperatorProcess:
    def __init__(self, server: str, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(KUBECONFIG.format(server=server))
        self.log = workdir / "operator.log"
        self.args = ("--allow-cidr", "127.0.0.0/8", *args)
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> float:
        """Start the process; returns the monotonic time it was spawned."""
        assert self.process is None or self.process.returncode is not None, "already running"
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WEBHOOK_OPERATOR_ALLOW_CIDRS")}
        env.update(KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        self.starts += 1
        with self.log.open("a") as log:
            log.write(f"\n===== start #{self.starts} =====\n")
            log.flush()
            spawned = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "webhook_operator",
                "run",
                *self.args,
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        return spawned

    async def kill(self) -> float:
        """SIGKILL: no cleanup at all. Returns the monotonic time the signal was sent."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        return sent

    async def terminate(self, timeout: float = 30.0) -> tuple[float, float, int]:
        """SIGTERM and wait for the exit: (signal sent, exited, exit code), monotonic times."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        return sent, time.monotonic(), code

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
