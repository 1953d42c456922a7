"""Buckets and allow-lists from views; bounded request values; GenAI recording and content capture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from telemetry import (
    GenAIClientMetrics,
    GenAIRequest,
    GenAIServerMetrics,
    TokenUsage,
    capture_messages,
    semconv,
    testing,
)
from telemetry.views import bounded, clear_known_values, register_known_values


@pytest.fixture
def capture() -> Iterator[testing.Capture]:
    clear_known_values()
    c = testing.capture("views")
    yield c
    c.shutdown()
    clear_known_values()


def test_request_supplied_model_names_outside_the_catalog_become_other(capture: testing.Capture) -> None:
    register_known_values(semconv.GEN_AI_REQUEST_MODEL, ["m1", "m2"])
    assert bounded(semconv.GEN_AI_REQUEST_MODEL, "m1") == "m1"
    assert bounded(semconv.GEN_AI_REQUEST_MODEL, "../../etc/passwd") == "_OTHER"
    metrics = GenAIServerMetrics(capture.telemetry.meter_provider)
    for model in ("m1", "attacker-1", "attacker-2"):
        metrics.record(
            GenAIRequest("chat", "p", model), duration=1.0, time_to_first_token=0.1, output_tokens=5
        )
    points = capture.metrics()["gen_ai.server.request.duration"]["points"]
    assert sorted(p["attributes"]["gen_ai.request.model"] for p in points) == ["_OTHER", "m1"]


def test_views_drop_attribute_keys_outside_the_allow_list(capture: testing.Capture) -> None:
    meter = capture.telemetry.meter_provider.get_meter("m")
    histogram = meter.create_histogram(semconv.HTTP_SERVER_REQUEST_DURATION.name, unit="s")
    histogram.record(
        0.2, {"http.request.method": "GET", "url.full": "http://x/?token=secret", "user.id": "u1"}
    )
    point = capture.metrics()["http.server.request.duration"]["points"][0]
    assert point["attributes"] == {"http.request.method": "GET"}
    assert point["bounds"] == list(semconv.HTTP_DURATION_BUCKETS)


def test_server_metrics_derive_tpot_and_skip_ttft_on_errors(capture: testing.Capture) -> None:
    metrics = GenAIServerMetrics(capture.telemetry.meter_provider)
    request = GenAIRequest("text_completion", "self_hosted", "m")
    metrics.record(request, duration=2.1, time_to_first_token=0.1, output_tokens=21)
    metrics.record(request, duration=0.5, time_to_first_token=None, output_tokens=0, error_type="cancelled")
    exported = capture.metrics()
    tpot = exported["gen_ai.server.time_per_output_token"]["points"]
    assert [(p["count"], p["sum"]) for p in tpot] == [(1, pytest.approx(0.1))]
    assert [p["count"] for p in exported["gen_ai.server.time_to_first_token"]["points"]] == [1]
    durations = {
        p["attributes"].get("error.type"): p["count"]
        for p in exported["gen_ai.server.request.duration"]["points"]
    }
    assert durations == {None: 1, "cancelled": 1}


def test_legacy_client_token_usage_is_recorded_only_when_known(capture: testing.Capture) -> None:
    metrics = GenAIClientMetrics(capture.telemetry.meter_provider, "legacy")
    request = GenAIRequest("chat", "self_hosted", "m")
    metrics.record(request, duration=1.0, usage=TokenUsage(12, 30))
    metrics.record(request, duration=1.0, error_type="upstream_timeout")
    exported = capture.metrics()
    points = exported["gen_ai.client.token.usage"]["points"]
    assert {p["attributes"]["gen_ai.token.type"]: p["sum"] for p in points} == {"input": 12, "output": 30}
    assert not any(name.startswith("gen_ai.client.inference.") for name in exported)


def test_latest_usage_counters_count_every_call_and_unknown_usage_as_zero_of_modality_unknown(
    capture: testing.Capture,
) -> None:
    metrics = GenAIClientMetrics(capture.telemetry.meter_provider, "latest")
    request = GenAIRequest("chat", "self_hosted", "m", "10.0.0.7", 8081)
    metrics.record(request, duration=1.0, usage=TokenUsage(12, 30, 8, 0), response_model="m")
    metrics.record(request, duration=2.0, error_type="upstream_timeout")
    exported = capture.metrics()
    assert "gen_ai.client.token.usage" not in exported
    identity = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "self_hosted",
        "gen_ai.request.model": "m",
        "server.address": "10.0.0.7",
        "server.port": 8081,
    }
    answered = {**identity, "gen_ai.response.model": "m", "gen_ai.token.modality": "text"}
    unknown = {**identity, "gen_ai.token.modality": "unknown"}
    for name, total in (
        ("input_tokens", 12),
        ("output_tokens", 30),
        ("cache_read.input_tokens", 8),
        ("reasoning.output_tokens", 0),
    ):
        metric = f"gen_ai.client.inference.usage.{name}"
        assert capture.value(metric, answered) == total, metric
        assert capture.value(metric, unknown) == 0, metric
    durations = {
        p["attributes"].get("error.type"): p["count"]
        for p in exported["gen_ai.client.inference.duration"]["points"]
    }
    assert durations == {None: 1, "upstream_timeout": 1}
    (inputs,) = exported["gen_ai.client.inference.operation.input_tokens"]["points"]
    assert (inputs["count"], inputs["sum"]) == (1, 12)


def test_message_content_is_captured_only_when_opted_in() -> None:
    for enabled in (False, True):
        c = testing.capture("content", capture_content=enabled)
        tracer = c.telemetry.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("chat m") as span:
            recorded = capture_messages(
                span,
                input_messages=[{"role": "user", "content": "hi"}],
                enabled=c.telemetry.capture_content,
            )
        assert recorded is enabled
        attributes = c.spans()[0]["attributes"]
        assert ("gen_ai.input.messages" in attributes) is enabled
        c.shutdown()
