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


def test_value_looks_up_a_counters_sum_and_a_gauges_value(telemetry_capture: testing.Capture) -> None:
    meter = telemetry_capture.telemetry.meter_provider.get_meter("m")
    requests = meter.create_counter("requests")
    requests.add(2, {"route": "/a"})
    requests.add(3, {"route": "/a"})
    requests.add(7, {"route": "/b"})
    meter.create_gauge("queue.depth").set(4)
    assert telemetry_capture.value("requests", {"route": "/a"}) == 5
    assert telemetry_capture.value("requests", {"route": "/b"}) == 7
    assert telemetry_capture.value("queue.depth") == 4


def test_value_looks_up_a_histograms_count_or_sum(telemetry_capture: testing.Capture) -> None:
    histogram = telemetry_capture.telemetry.meter_provider.get_meter("m").create_histogram("latency")
    for seconds in (0.25, 0.5):
        histogram.record(seconds, {"model": "m1"})
    assert telemetry_capture.value("latency", {"model": "m1"}, of="count") == 2
    assert telemetry_capture.value("latency", {"model": "m1"}, of="sum") == 0.75
    with pytest.raises(ValueError, match=r"latency is a Histogram: say of='count' or of='sum'"):
        telemetry_capture.value("latency", {"model": "m1"})


def test_value_of_a_point_not_recorded_says_what_there_is(telemetry_capture: testing.Capture) -> None:
    meter = telemetry_capture.telemetry.meter_provider.get_meter("m")
    meter.create_counter("requests").add(1, {"route": "/a"})
    with pytest.raises(LookupError, match=r"requests has no point with attributes \{'route': '/b'\}"):
        telemetry_capture.value("requests", {"route": "/b"})
    with pytest.raises(LookupError, match=r"its points have \[\{'route': '/a'\}\]"):
        telemetry_capture.value("requests")  # attributes must match exactly: none is not "any"
    with pytest.raises(LookupError, match=r"no metric 'reqests' was recorded; there are \[.*'requests'"):
        telemetry_capture.value("reqests")
    with pytest.raises(ValueError, match=r"requests is a Sum: it has no count or sum"):
        telemetry_capture.value("requests", {"route": "/a"}, of="sum")
