"""What a test does when something it needs (a built backend binary, a fixture) is not there."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str | Exception) -> NoReturn:
    """Skip the test, naming what is missing; fail it under CI=true, where everything must be built."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(str(reason))
