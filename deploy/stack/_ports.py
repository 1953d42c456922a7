"""Free loopback ports for one stack run."""

from __future__ import annotations

import socket
from typing import ClassVar

LOOPBACK = "127.0.0.1"


class PortAllocator:
    """Hands out distinct free TCP ports on 127.0.0.1.

    The kernel picks each port (bind to 0), so parallel stacks and other people's processes on the
    same machine do not collide on fixed numbers. The socket is closed before the backend binds, so a
    race is possible but rare; a port handed out once in this process is never handed out again, so
    two stacks started back to back cannot be given the same one.
    """

    _given: ClassVar[set[int]] = set()

    def port(self) -> int:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port: int = sock.getsockname()[1]
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("could not find a free loopback port in 50 tries")


def free_port() -> int:
    """One free loopback port, for a process started outside a :class:`~deploy.stack.Stack`.

    It comes from a :class:`PortAllocator`, so it is never one handed out before in this process.
    """
    return PortAllocator().port()
