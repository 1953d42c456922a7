"""Settings precedence and loud errors; configure() idempotence; standard OTEL_* variables keep working."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace

import telemetry
from telemetry import AdvancedOptions, _setup, testing
from telemetry._errors import contained, internal_errors_raised
from telemetry._propagation import propagation_fields
from telemetry.options import load_settings


@pytest.fixture(autouse=True)
def _no_global_setup() -> Iterator[None]:
    textmap = propagate.get_global_textmap()
    yield
    telemetry.shutdown(timeout_millis=100)
    propagate.set_global_textmap(textmap)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLM_TELEMETRY_TRACES", "maybe"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "2"),
        ("LLM_TELEMETRY_GPU", "sometimes"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
        ("OTEL_PROPAGATORS", "tracecontext,b4"),
    ],
)
def test_a_bad_setting_fails_naming_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(telemetry.TelemetryConfigError) as error:
        load_settings(environ={variable: value})
    assert f"{variable}={value!r} is invalid" in str(error.value)


def test_argument_beats_environment_beats_default() -> None:
    env = {"OTEL_SERVICE_NAME": "from-env", "LLM_TELEMETRY_ENVIRONMENT": "staging"}
    assert load_settings(environ=env).service_name == "from-env"
    assert load_settings({"service_name": "from-arg"}, environ=env).service_name == "from-arg"
    assert load_settings(environ={}).environment == "development"
    assert load_settings(environ=env).environment == "staging"
    assert load_settings(environ={}).gpu is None  # auto


def test_unknown_keywords_are_rejected() -> None:
    with pytest.raises(TypeError, match="unknown telemetry option"):
        load_settings({"servicename": "x"}, environ={})
    with pytest.raises(TypeError, match="unknown telemetry option"):
        telemetry.build_telemetry(metrics_enabled=False)  # type: ignore[call-arg]  # 0.1's name


def test_configure_is_idempotent_and_warns_on_different_arguments(caplog: pytest.LogCaptureFixture) -> None:
    first = telemetry.configure(
        service_name="one", traces=False, metrics=False, gpu=False, advanced=AdvancedOptions(set_global=False)
    )
    assert telemetry.configure(service_name="one", traces=False, metrics=False, gpu=False) is first
    with caplog.at_level(logging.WARNING, logger="telemetry"):
        assert telemetry.configure(service_name="two") is first
    assert "keeping the first" in caplog.text
    telemetry.shutdown()
    second = telemetry.configure(
        service_name="two", traces=False, metrics=False, gpu=False, advanced=AdvancedOptions(set_global=False)
    )
    assert second is not first
    assert second.resource.attributes["service.name"] == "two"


def test_resource_attributes_from_the_standard_variable_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=llm")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc-from-env")
    built = _setup.build_telemetry(gpu=False, traces=False, metrics=False)
    attributes = built.resource.attributes
    assert attributes["deployment.environment.name"] == "prod"
    assert attributes["team"] == "llm"
    assert attributes["service.name"] == "svc-from-env"
    assert attributes["service.instance.id"]
    monkeypatch.setenv("LLM_TELEMETRY_ENVIRONMENT", "staging")  # ours, set explicitly: it wins
    assert (
        _setup.build_telemetry(gpu=False, traces=False, metrics=False).resource.attributes[
            "deployment.environment.name"
        ]
        == "staging"
    )


def test_sampler_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    capture = testing.capture("sampled-off")
    tracer = capture.telemetry.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("request") as span:
        assert not span.get_span_context().trace_flags.sampled
    assert capture.spans() == []


def test_exemplar_filter_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")
    capture = testing.capture("no-exemplars")
    histogram = capture.telemetry.meter_provider.get_meter("m").create_histogram("h", unit="s")
    with capture.telemetry.tracer_provider.get_tracer("t").start_as_current_span("request"):
        histogram.record(0.1)
    assert capture.metrics()["h"]["points"][0]["exemplars"] == []


def test_sdk_disabled_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    built = _setup.build_telemetry(gpu=False)
    with built.tracer_provider.get_tracer("t").start_as_current_span("x") as span:
        assert not span.is_recording()
    built.shutdown()


def test_a_collector_that_is_down_never_raises_into_the_caller(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bound port that does not listen refuses connections: every export fails, in the background.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        built = _setup.build_telemetry(service_name="down", gpu=False)
        tracer = built.tracer_provider.get_tracer("t")
        histogram = built.meter_provider.get_meter("m").create_histogram("h")
        with caplog.at_level(logging.WARNING):
            started = time.monotonic()
            for _ in range(200):
                with tracer.start_as_current_span("request") as span:
                    histogram.record(1.0)
                    assert span.is_recording()
            recorded = time.monotonic()
            # The spans' export is tried and fails within OTEL_EXPORTER_OTLP_TIMEOUT: reported, not raised.
            built.tracer_provider.force_flush(timeout_millis=10_000)
            failures = [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
            flushed = time.monotonic()
            built.shutdown(timeout_millis=500)  # the metrics' final export fails too, within the bound
            stopped = time.monotonic()
    assert recorded - started < 2, "recording waited on the exporter"
    assert stopped - flushed < 5, "shutdown waited past its timeout on a collector that is down"
    assert any(f"to 127.0.0.1:{port}" in m for m in failures), failures


def test_shutdown_keeps_its_deadline_when_the_collector_hangs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A socket that listens but is never accepted from: connections open, exports hang to their 10 s
    # deadline and retry, as with a Collector frozen by SIGSTOP. The SDK's flush would wait for that.
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(64)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{frozen.getsockname()[1]}")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT", raising=False)
        built = _setup.build_telemetry(service_name="frozen", gpu=False)
        tracer = built.tracer_provider.get_tracer("t")
        for _ in range(2000):  # several batches queued
            tracer.start_span("request").end()
        with caplog.at_level(logging.WARNING, logger="telemetry"):
            started = time.monotonic()
            built.shutdown(timeout_millis=1000)
            took = time.monotonic() - started
    assert took < 1.0 + _setup._ABANDON_S + 1.5, f"shutdown took {took:.1f} s against a 1 s deadline"
    assert "export not finished 1000 ms into shutdown" in caplog.text
    assert not any(t.name == "telemetry-shutdown" for t in threading.enumerate()), "the flush still runs"


def test_internal_errors_are_contained_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with internal_errors_raised(False), caplog.at_level(logging.ERROR, logger="telemetry"):
        for _ in range(3):
            with contained("unit.test.site"):
                raise RuntimeError("boom")
    assert caplog.text.count("internal error in unit.test.site") == 1
    with internal_errors_raised(), pytest.raises(RuntimeError, match="boom"), contained("unit.test.site"):
        raise RuntimeError("boom")


def test_global_configure_installs_w3c_trace_context_and_baggage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    telemetry.configure(service_name="global", traces=False, metrics=False, gpu=False)
    assert propagate.get_global_textmap().fields == {"traceparent", "tracestate", "baggage"}
    assert trace.get_tracer_provider() is not None


def _injected_headers() -> dict[str, str]:
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            0x1234, 0x5678, is_remote=False, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def test_global_configure_installs_the_propagators_otel_propagators_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "b3")
    telemetry.configure(service_name="b3", traces=False, metrics=False, gpu=False)
    assert _injected_headers() == {"b3": "00000000000000000000000000001234-0000000000005678-1"}
    assert propagation_fields().text == {"b3"}  # what the middleware and interceptor look for


def test_otel_propagators_none_installs_no_propagation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,none")
    telemetry.configure(service_name="none", traces=False, metrics=False, gpu=False)
    assert _injected_headers() == {}


def test_every_setup_reports_process_uptime(telemetry_capture: testing.Capture) -> None:
    assert telemetry_capture.value("process.uptime") >= 0
    assert telemetry_capture.metrics()["process.uptime"]["unit"] == "s"


def test_every_keyword_is_a_setting_or_one_of_the_two_that_are_not() -> None:
    from dataclasses import fields

    from telemetry.options import TelemetryOptions, TelemetrySettings

    env_only = {"propagators", "sdk_disabled"}  # standard variables, no keyword
    settings = {f.name for f in fields(TelemetrySettings)} - env_only
    assert set(TelemetryOptions.__annotations__) == settings | {"resource_attributes", "advanced"}
