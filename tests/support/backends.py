"""The built backend binaries a test needs: their paths, or a skip naming the build script (a failure under
CI=true, where a test must never pass by testing nothing)."""

from __future__ import annotations

from pathlib import Path

from deploy.stack import Binaries, BinaryMissingError
from tests.support.ci import missing


def require(binaries: Binaries, *names: str) -> dict[str, Path]:
    """The binaries' paths, or skip (fail under CI) naming scripts/build-backends.sh."""
    try:
        return binaries.require(*names)
    except BinaryMissingError as exc:
        missing(exc)
