"""telemetry.testing itself: the re-raise scope a capture opens, and looking metric values up."""

from __future__ import annotations

import pytest

from telemetry import testing
from telemetry._errors import contained


def _raises() -> bool:
    """Whether an internal error is re-raised right now (rather than contained and logged)."""
    try:
        with contained("unit.test.probe"):
            raise RuntimeError("probe")
    except RuntimeError:
        return True
    return False


def test_a_capture_reraises_internal_errors_only_until_it_ends() -> None:
    before = _raises()
    capture = testing.capture("scoped")
    assert _raises()
    capture.shutdown()
    assert _raises() is before
    with testing.capture("scoped", raise_errors=False):
        assert not _raises()
    assert _raises() is before


def test_captures_nest_and_may_end_in_any_order() -> None:
    before = _raises()
    with testing.capture("outer"):
        with testing.capture("inner", raise_errors=False):
            assert not _raises()
        assert _raises()
    first = testing.capture("first", raise_errors=False)
    second = testing.capture("second")
    first.shutdown()  # not the newest: the newest still decides
    assert _raises()
    second.shutdown()
    assert _raises() is before


def test_a_capture_whose_setup_fails_leaves_the_switch_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _raises()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        testing.capture("broken", raise_errors=not before)
    assert _raises() is before
