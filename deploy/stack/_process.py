"""Plain subprocesses with log files, readiness polling and teardown by process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ReadyCheck = Callable[[], object]
"""Raises, or returns something falsy, while the process is not ready (the :func:`poll_until` contract)."""


class StackError(RuntimeError):
    """A process of the stack failed to start or become ready; the message ends with its log tail."""


def progress(message: str) -> None:
    """One visible line per step, so a slow start never looks like a hang (stderr: pytest shows it on -s)."""
    print(f"[stack {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def http_ready(url: str, expect_status: int = 200) -> ReadyCheck:
    """A ready check that GETs ``url`` and wants ``expect_status``."""

    def check() -> bool:
        response = httpx.get(url, timeout=2.0)
        if response.status_code != expect_status:
            raise StackError(f"GET {url}: HTTP {response.status_code} {response.text[:200]!r}")
        return True

    return check


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack: a backend, or later a service under test.

    ``env`` is added to the parent's environment; ``ready_check`` follows the :func:`poll_until`
    contract and is polled until ``ready_timeout``.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_check: ReadyCheck | None = None
    ready_timeout: float = 60.0
    cwd: Path | None = None
    stop_timeout: float = 10.0


class ManagedProcess:
    """A started :class:`ProcessSpec`: its PID, process group and log file."""

    def __init__(self, spec: ProcessSpec, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.spec = spec
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self) -> float:
        """Poll the ready check; fail at once if the process exits. Returns the seconds it took."""
        start = time.monotonic()
        check = self.spec.ready_check
        if check is None:
            return 0.0
        deadline = start + self.spec.ready_timeout
        last = "never checked"
        while True:
            code = self.popen.poll()
            if code is not None:
                raise StackError(self._failure(f"exited with code {code} before it was ready"))
            try:
                if check():
                    return time.monotonic() - start
                last = "check returned a falsy value"
            except Exception as exc:  # a refused connection or a 503 just means "not yet"
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise StackError(
                    self._failure(f"not ready after {self.spec.ready_timeout:g} s; last: {last}")
                )
            time.sleep(0.1)

    def _failure(self, reason: str) -> str:
        return (
            f"{self.spec.name} (pid {self.pid}) failed: {reason}\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL it after ``stop_timeout``: no orphans left behind."""
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=self.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                progress(f"{self.spec.name} ignored SIGTERM for {self.spec.stop_timeout:g} s: SIGKILL")
                _signal_group(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that outlived their parent still sit in the group.
        _signal_group(self.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """Prefix ``setpriv --pdeathsig``: the kernel sends SIGTERM when the process that started it dies.

    Teardown by PID covers every orderly exit; this covers the rest (a test runner killed by a timeout
    or SIGKILL), which would otherwise leave backends holding ports and disk. setpriv (util-linux) execs
    the command, so the PID is the backend's own. Without setpriv, only the orderly paths apply.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def start_process(spec: ProcessSpec, log_dir: Path) -> ManagedProcess:
    """Start ``spec`` in its own session (so its group can be signalled as one) with output to a log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    env = {**os.environ, **spec.env}
    with log_path.open("ab") as log:
        try:
            popen = subprocess.Popen(
                _with_parent_death_signal(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"{spec.name}: cannot start {spec.argv[0]}: {exc}") from exc
    return ManagedProcess(spec, popen, log_path)
