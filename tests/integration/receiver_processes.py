"""Run the example webhook receivers (examples/receivers/) as real subprocesses, for tests.

    with running_receiver("express", secret=key, workdir=tmp_path) as receiver:
        ...point a WebhookSubscription at receiver.url (spec.url), sign with `key`...
        entries = receiver.wait_processed(lambda e: e["id"] == event_uid)

    # In an async test, where the operator runs in the same event loop:
    async with running_receiver_async("flask", secret=key, workdir=tmp_path) as receiver:
        entries = await receiver.wait_processed_async(lambda e: e["id"] == event_uid)

Each receiver listens on a free 127.0.0.1 port, is ready once GET /healthz answers with its own
name, and appends one JSON line per processed event to `receiver.processed_log`. Kinds:
"flask" (examples/receivers/flask/app.py, run with this interpreter), "flask-cloudevents"
(cloudevents_app.py) and "express" (node server.js; needs node and `npm ci` in its folder;
`unavailable_reason("express")` says why it can't run, for pytest.skip).

For deliveries through the operator: its egress policy refuses loopback addresses unless it
runs with `--allow-cidr 127.0.0.0/8` (or WEBHOOK_OPERATOR_ALLOW_CIDRS=127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RECEIVERS_DIR = REPO_ROOT / "examples" / "receivers"
FLASK_DIR = RECEIVERS_DIR / "flask"
EXPRESS_DIR = RECEIVERS_DIR / "express"

KINDS = ("flask", "flask-cloudevents", "express")
WEBHOOK_PATH = "/webhooks"


def _command(kind: str) -> tuple[list[str], Path]:
    if kind == "flask":
        return [sys.executable, "app.py"], FLASK_DIR
    if kind == "flask-cloudevents":
        return [sys.executable, "cloudevents_app.py"], FLASK_DIR
    if kind == "express":
        return [shutil.which("node") or "node", "server.js"], EXPRESS_DIR
    raise ValueError(f"unknown receiver kind {kind!r}; known: {', '.join(KINDS)}")


def unavailable_reason(kind: str) -> str | None:
    """Why this receiver can't run here (for pytest.skip), or None if it can."""
    if kind == "express":
        if shutil.which("node") is None:
            return "node is not installed: the Express receiver can't run"
        missing = [
            p for p in ("express", "standardwebhooks") if not (EXPRESS_DIR / "node_modules" / p).is_dir()
        ]
        if missing:
            return (
                f"{', '.join(missing)} not installed for the Express receiver: "
                f"run `npm ci` in {EXPRESS_DIR.relative_to(REPO_ROOT)}"
            )
        return None
    _command(kind)  # raises on an unknown kind
    for module in ("flask", "standardwebhooks") + (("cloudevents",) if kind == "flask-cloudevents" else ()):
        try:
            __import__(module)
        except ImportError:
            return f"Python package {module!r} is not installed: the {kind} receiver can't run"
    return None


@dataclass
class ReceiverProcess:
    kind: str
    host: str
    port: int
    processed_log: Path
    output_log: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Where webhooks go: use it as a WebhookSubscription's spec.url."""
        return self.base_url + WEBHOOK_PATH

    @property
    def healthz_url(self) -> str:
        return self.base_url + "/healthz"

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        with urllib.request.urlopen(self.healthz_url, timeout=timeout) as response:
            return dict(json.loads(response.read()))

    def processed(self) -> list[dict[str, Any]]:
        """Every event processed so far, in order (one JSON line each)."""
        try:
            text = self.processed_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A line being appended right now may be incomplete: only whole lines count.
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def processed_ids(self) -> list[str]:
        return [entry["id"] for entry in self.processed()]

    def wait_processed(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` processed entries match; return the matching ones."""
        deadline = time.monotonic() + timeout
        while (matching := self._matching(predicate, count, deadline, timeout)) is None:
            time.sleep(0.02)
        return matching

    async def wait_processed_async(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """wait_processed() for async tests: it never blocks the event loop (and the operator
        running in it, which has to deliver what is being waited for)."""
        deadline = time.monotonic() + timeout
        while (matching := self._matching(predicate, count, deadline, timeout)) is None:
            await asyncio.sleep(0.02)
        return matching

    def _matching(
        self, predicate: Callable[[dict[str, Any]], bool], count: int, deadline: float, timeout: float
    ) -> list[dict[str, Any]] | None:
        matching = [entry for entry in self.processed() if predicate(entry)]
        if len(matching) >= count:
            return matching
        if self.process.poll() is not None:
            code = self.process.returncode
            raise RuntimeError(f"{self.kind} receiver exited ({code}):\n{self.output()}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{self.kind} receiver processed {len(matching)} of {count} expected events "
                f"within {timeout}s; it processed {self.processed_ids()}"
            )
        return None

    def output(self) -> str:
        """What the receiver printed (stdout and stderr), for failure messages."""
        try:
            return self.output_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (the receivers finish their queued work, bounded), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_receiver(
    kind: str,
    *,
    secret: str,
    workdir: Path | None = None,
    queue_size: int | None = None,
    process_delay_ms: int | None = None,
    retry_after_seconds: int | None = None,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = 15.0,
) -> ReceiverProcess:
    """Start a receiver and wait until it answers; the caller must stop() it.

    `secret` is the Standard Webhooks key ("whsec_..."), the Secret's signingKey. `workdir`
    holds the processed log and the output log (a new temporary folder if None). `env` adds
    to or overrides the receiver's environment.
    """
    reason = unavailable_reason(kind)
    if reason:
        raise RuntimeError(reason)
    argv, cwd = _command(kind)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix=f"receiver-{kind}-"))
    workdir.mkdir(parents=True, exist_ok=True)

    settings = {
        "WEBHOOK_SECRET": secret,
        "HOST": host,
        "QUEUE_SIZE": queue_size,
        "PROCESS_DELAY_MS": process_delay_ms,
        "RETRY_AFTER_SECONDS": retry_after_seconds,
    }
    last_error = ""
    for attempt in range(3):  # another process may take the free port first: try another one
        port = free_port(host)
        tag = f"{kind}-{port}-{attempt}"
        processed_log = workdir / f"processed-{tag}.jsonl"
        output_log = workdir / f"output-{tag}.log"
        child_env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PORT": str(port),
            "PROCESSED_LOG": str(processed_log),
        }
        for name, value in settings.items():  # unset ones fall back to the receiver's defaults
            if value is None:
                child_env.pop(name, None)
            else:
                child_env[name] = str(value)
        child_env.update(env or {})
        with output_log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        receiver = ReceiverProcess(kind, host, port, processed_log, output_log, process, child_env)
        try:
            _wait_ready(receiver, startup_timeout)
        except _PortTaken as exc:
            receiver.stop()
            last_error = str(exc)
            continue
        except BaseException:
            receiver.stop()
            raise
        return receiver
    raise RuntimeError(f"{kind} receiver could not get a free port: {last_error}")


@contextlib.contextmanager
def running_receiver(kind: str, **kwargs: Any) -> Iterator[ReceiverProcess]:
    """start_receiver() as a context manager that always stops the process."""
    receiver = start_receiver(kind, **kwargs)
    try:
        yield receiver
    finally:
        receiver.stop()


@contextlib.asynccontextmanager
async def running_receiver_async(kind: str, **kwargs: Any) -> AsyncIterator[ReceiverProcess]:
    """running_receiver() for async tests: starting and stopping run in a thread, so the event
    loop (and an operator running in it) goes on meanwhile."""
    receiver = await asyncio.to_thread(start_receiver, kind, **kwargs)
    try:
        yield receiver
    finally:
        await asyncio.to_thread(receiver.stop)


class _PortTaken(Exception):
    pass


def _wait_ready(receiver: ReceiverProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if receiver.process.poll() is not None:
            output = receiver.output()
            if "EADDRINUSE" in output or "Address already in use" in output:
                raise _PortTaken(output)
            code = receiver.process.returncode
            raise RuntimeError(f"{receiver.kind} receiver exited with {code} before it was ready:\n{output}")
        try:
            health = receiver.health(timeout=1.0)
        except (urllib.error.URLError, OSError, ValueError):
            health = None
        if health is not None:
            if health.get("receiver") != receiver.kind:
                raise _PortTaken(
                    f"port {receiver.port} answers as {health!r}, not the {receiver.kind} receiver"
                )
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{receiver.kind} receiver did not answer {receiver.healthz_url} within {timeout}s:\n"
                f"{receiver.output()}"
            )
        time.sleep(0.05)
