"""The machinery of tests/e2e/test_compose_stack.py: the scripts that install and start a Docker engine and
build the stand-in images (run with their progress lines shown live), the host's networking as a snapshot
to compare, and the stack's end: ``down``, the engine stopped by PID, the host restored."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.stack._binaries import REPO_ROOT
from tests.support.compose import README_DOWN

Say = Callable[[str], None]

ENGINE = REPO_ROOT / "scripts" / "docker-engine.sh"
STAND_INS = REPO_ROOT / "scripts" / "docker-stand-ins.sh"


@dataclass(frozen=True)
class Run:
    argv: list[str]
    returncode: int
    output: str
    seconds: float

    def check(self) -> Run:
        if self.returncode != 0:
            command = " ".join(self.argv)
            raise AssertionError(
                f"`{command}` exited {self.returncode} after {self.seconds:.0f} s; its output ends:\n"
                + self.output[-6000:]
            )
        return self


def run(argv: list[str], timeout: float, say: Say | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` from the repo root, stdout and stderr together; each line goes to ``say`` as it comes
    (the scripts print a line per step and a heartbeat on long ones). Past ``timeout`` its process group,
    which it leads, is killed."""
    start = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if say is not None:
                    say(line.rstrip())

        reader = threading.Thread(target=pump, name="run-output", daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            lines.append(f"\n(killed after {timeout:g} s)\n")
            returncode = -signal.SIGKILL
        reader.join(timeout=10)
    return Run(argv, returncode, "".join(lines), time.monotonic() - start)


@dataclass(frozen=True)
class HostNetwork:
    """What dockerd changes on the host and leaves behind unless undone, as text that compares."""

    rules: dict[str, str]
    """``iptables -t TABLE -S`` (and ip6tables' filter table) by table."""
    links: frozenset[str]
    sysctls: dict[str, str]
    """ip_forward, every interface's IPv4 and IPv6 forwarding, the bridge netfilter switches."""

    @staticmethod
    def now() -> HostNetwork:
        rules = {
            f"{tool} {table}": subprocess.run(
                [tool, "-t", table, "-S"], check=True, capture_output=True, text=True, timeout=30
            ).stdout
            for tool, table in (("iptables", "filter"), ("iptables", "nat"), ("ip6tables", "filter"))
        }
        links = subprocess.run(
            ["ip", "-o", "link", "show"], check=True, capture_output=True, text=True, timeout=30
        ).stdout
        names = frozenset(line.split(": ")[1].split("@")[0] for line in links.splitlines())
        paths = [Path("/proc/sys/net/ipv4/ip_forward")]
        for pattern in ("ipv4/conf/*/forwarding", "ipv6/conf/*/forwarding", "bridge/bridge-nf-call-*"):
            paths += sorted(Path("/proc/sys/net").glob(pattern))
        sysctls = {str(p): p.read_text().strip() for p in paths if p.exists()}
        return HostNetwork(rules, names, sysctls)

    def forward_policy(self) -> str:
        return next(
            line.split()[2]
            for line in self.rules["iptables filter"].splitlines()
            if line.startswith("-P FORWARD")
        )

    def docker_chains(self) -> list[str]:
        return [
            f"{table}: {line}"
            for table, text in self.rules.items()
            for line in text.splitlines()
            if line.startswith("-N DOCKER")
        ]


@dataclass
class Shutdown:
    down: Run
    prune: Run
    stop: Run
    host: HostNetwork


@dataclass
class ComposeStack:
    """The compose stack as the test started it, and its end, done once."""

    env: dict[str, str]
    """The environment every docker command runs with: the engine's, the user's three variables."""
    api_key: str
    host_before: HostNetwork
    say: Say
    timings: dict[str, float] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    """Containers the test started beside compose's, removed before ``down``."""
    _shutdown: Shutdown | None = None

    def docker(self, *args: str, timeout: float = 120, live: bool = False) -> Run:
        return run(["docker", *args], timeout, self.say if live else None, self.env)

    def shutdown(self) -> Shutdown:
        """README's ``down``, the build's leftovers pruned, the engine stopped and the host restored."""
        if self._shutdown is None:
            for name in self.containers:
                self.docker("rm", "--force", name)
            down = run(README_DOWN.split(), 300, None, self.env)  # a line per container: shown if it fails
            # Images a rebuild left untagged: a day's stay as the next runs' build cache (the services'
            # dependency layer, the Collector's OCB stage), then gone, so the engine's disk stays bounded.
            prune = self.docker("image", "prune", "--force", "--filter", "until=24h")
            stop = run([str(ENGINE), "stop"], 180, self.say)
            self._shutdown = Shutdown(down, prune, stop, HostNetwork.now())
            self.timings["down, prune, stop"] = down.seconds + prune.seconds + stop.seconds
        return self._shutdown
