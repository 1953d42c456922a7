"""OTLP from the Python SDK straight to the Collector: three fake services, one trace per request.

Each service has its own TracerProvider and Resource, as separate processes would; context is shared
in-process, so the spans still form one trace:

    gateway SERVER ─▶ gateway CLIENT ─▶ orchestrator SERVER ─▶ orchestrator CLIENT ─▶ inference SERVER

The inference "service" records a histogram while its SERVER span is current, so the SDK's default
trace-based exemplar filter attaches that trace's id.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, format_trace_id

from telemetry.semconv import HTTP_DURATION_BUCKETS

HISTOGRAM = "e2e.request.duration"
HISTOGRAM_PROM = "e2e_request_duration_seconds"
# One value per bucket: the SDK keeps one exemplar per bucket and collection, so distinct buckets give
# every request its own exemplar and the resolution rate is measured over all of them.
DURATIONS = (0.003, 0.007, 0.02, 0.04, 0.06, 0.09, 0.2, 0.4, 0.6, 0.9)


@dataclass
class Emitted:
    run_id: str
    services: dict[str, str]
    """Role (gateway, orchestrator, inference) → service.name."""
    model: str
    trace_ids: list[str] = field(default_factory=list)
    flushed_at: float = 0.0
    """time.time() after every span and metric point was handed to the Collector."""


class Emitter:
    """Three fake services' providers, exporting to one Collector until :meth:`close`."""

    def __init__(self, otlp_endpoint: str) -> None:
        run_id = uuid.uuid4().hex[:8]
        roles = ("gateway", "orchestrator", "inference")
        self.out = Emitted(run_id, {r: f"e2e-{r}-{run_id}" for r in roles}, model=f"e2e-model-{run_id}")
        self._providers: list[TracerProvider] = []
        self._tracers: dict[str, Tracer] = {}
        for role in roles:
            resource = Resource.create(
                {"service.name": self.out.services[role], "service.instance.id": f"{role}-{run_id}-0"}
            )
            provider = TracerProvider(resource=resource)
            exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)
            provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
            self._providers.append(provider)
            self._tracers[role] = provider.get_tracer("tests.e2e")
        self._meter_provider = MeterProvider(
            metric_readers=[
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=otlp_endpoint, insecure=True), export_interval_millis=500
                )
            ],
            resource=Resource.create(
                {
                    "service.name": self.out.services["inference"],
                    "service.instance.id": f"inference-{run_id}-0",
                }
            ),
            exemplar_filter=TraceBasedExemplarFilter(),
            views=[
                View(
                    instrument_name=HISTOGRAM,
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=HTTP_DURATION_BUCKETS),
                )
            ],
        )
        self._histogram = self._meter_provider.get_meter("tests.e2e").create_histogram(
            HISTOGRAM, unit="s", description="Fake request duration recorded inside the inference span."
        )

    def request(self, duration: float, *, error: bool = False, hold: float = 0.0) -> str:
        """One request through the three services; returns its trace id (hex).

        ``error`` marks the gateway's SERVER span as failed; ``hold`` keeps the inference span open that
        many seconds, so the whole trace is at least that slow.
        """
        gw, orch, inf = self._tracers["gateway"], self._tracers["orchestrator"], self._tracers["inference"]
        model = self.out.model
        route = {"http.route": "/v1/chat/completions", "http.request.method": "POST"}
        rpc = {"rpc.method": "Generate", "gen_ai.request.model": model}
        with (
            gw.start_as_current_span(
                "POST /v1/chat/completions", kind=SpanKind.SERVER, attributes=route
            ) as root,
            gw.start_as_current_span("POST /v1/pipeline", kind=SpanKind.CLIENT) as client,
            orch.start_as_current_span(
                "POST /v1/pipeline", kind=SpanKind.SERVER, attributes={"http.route": "/v1/pipeline"}
            ),
            orch.start_as_current_span("llm.Inference/Generate", kind=SpanKind.CLIENT, attributes=rpc),
            inf.start_as_current_span("llm.Inference/Generate", kind=SpanKind.SERVER, attributes=rpc),
        ):
            self._histogram.record(duration, {"gen_ai.request.model": model})
            if hold:
                time.sleep(hold)  # the span's duration is the point here, not a wait for a backend
            if error:
                root.set_status(Status(StatusCode.ERROR, "e2e failure"))
        trace_id = format_trace_id(client.get_span_context().trace_id)
        self.out.trace_ids.append(trace_id)
        return trace_id

    def flush(self) -> None:
        for provider in self._providers:
            provider.force_flush()
        self._meter_provider.force_flush()
        self.out.flushed_at = time.time()

    def close(self) -> None:
        for provider in self._providers:
            provider.shutdown()
        self._meter_provider.shutdown()


def emit(otlp_endpoint: str, requests: int = len(DURATIONS)) -> Emitted:
    """``requests`` requests, one per histogram bucket, flushed; the providers are shut down after."""
    emitter = Emitter(otlp_endpoint)
    try:
        for i in range(requests):
            emitter.request(DURATIONS[i % len(DURATIONS)])
        emitter.flush()
    finally:
        emitter.close()
    return emitter.out
