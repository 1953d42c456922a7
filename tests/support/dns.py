"""A headless Service on loopback: a DNS name that answers the ready members' addresses, and a way to run a
process whose resolver asks it, as a pod's resolver asks the cluster DNS.

The Collector's load_balancing ``dns`` resolver looks its hostname up with Go's own resolver, which reads
``/etc/resolv.conf`` and asks port 53; it has no setting for another server. So the test's server listens
on port 53 of an address of its own in 127.0.0.0/8, and the process that must use it runs in a private
mount namespace where ``/etc/resolv.conf`` is a file naming that server: the machine's resolver and every
other process are untouched. Both need root (binding port 53, ``unshare --mount``), which CI has.

Membership follows readiness, as a headless Service's endpoints do: a thread probes each member's health
URL and the name resolves to the members whose last probe passed.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

PROBE_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Member:
    """One endpoint of the service: the address its name resolves to, and its readiness probe."""

    address: str
    health_url: str


def loopback_subnet() -> str:
    """``127.a.b`` with a random ``a.b``: addresses of this run's own, away from 127.0.0.1 and other runs."""
    return f"127.{random.randint(64, 250)}.{random.randint(0, 255)}"


def common_free_port(addresses: Sequence[str]) -> int:
    """A TCP port free on every address (the dns resolver gives every member the same port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port: int = probe.getsockname()[1]
        with contextlib.ExitStack() as stack:
            try:
                for address in addresses:
                    sock = stack.enter_context(socket.socket())
                    sock.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no TCP port free on all of {addresses} in 50 tries")


@dataclass
class HeadlessService:
    """``hostname`` resolves (A records, TTL 0) to the members whose health probe passed last."""

    hostname: str
    members: Sequence[Member]
    ready: frozenset[str] = frozenset()
    changes: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    """(monotonic time, ready addresses) each time the answer changed."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def answer(self) -> list[str]:
        with self._lock:
            return sorted(self.ready)

    def _probe(self) -> None:
        with httpx.Client(timeout=0.5) as client:
            while not self._stop.is_set():
                now_ready = set()
                for member in self.members:
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(member.health_url).status_code == 200:
                            now_ready.add(member.address)
                with self._lock:
                    if now_ready != self.ready:
                        self.ready = frozenset(now_ready)
                        self.changes.append((time.monotonic(), self.ready))
                self._stop.wait(PROBE_INTERVAL_S)

    def became(self, addresses: set[str], after: float) -> float | None:
        """When the answer first became exactly ``addresses`` after ``after`` (monotonic), if it did."""
        with self._lock:
            return next((t for t, ready in self.changes if t >= after and ready == addresses), None)


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, service: HeadlessService) -> None:
        self._service = service
        self._name = service.hostname.rstrip(".").lower()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = request.q.qname
        if str(qname).rstrip(".").lower() != self._name:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in self._service.answer():
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=0))
        # AAAA and the rest: NOERROR with no answer, so a dual-stack lookup still gets the A records.
        return reply


@contextlib.contextmanager
def serve_headless_service(service: HeadlessService, address: str) -> Iterator[HeadlessService]:
    """Answer ``service``'s name on ``address``:53 (UDP) and probe its members, until the block ends."""
    server = DNSServer(
        _Resolver(service),
        address=address,
        port=53,
        logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False),
    )
    prober = threading.Thread(target=service._probe, name="headless-service-probe", daemon=True)
    prober.start()
    server.start_thread()
    try:
        yield service
    finally:
        service._stop.set()
        server.stop()
        server.server.server_close()
        prober.join(timeout=5)


def with_resolv_conf(resolv_conf: Path) -> list[str]:
    """The command prefix that runs a program with ``resolv_conf`` as its ``/etc/resolv.conf``.

    A private mount namespace (``unshare --mount``), so only that program sees the file; the command
    is exec'ed, so its PID and process group stay the ones the stack signals.
    """
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        raise RuntimeError(
            "a private /etc/resolv.conf needs util-linux's unshare and root (as CI has): "
            f"unshare={unshare}, euid={os.geteuid()}"
        )
    return [
        unshare, "--mount", "--propagation", "private", "--",
        "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv_conf),
    ]  # fmt: skip


def write_resolv_conf(path: Path, nameserver: str) -> Path:
    """A resolv.conf that asks only ``nameserver``, with a short timeout: no search domains."""
    path.write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:2\n")
    return path
