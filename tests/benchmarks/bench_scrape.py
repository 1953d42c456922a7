"""Time of one Prometheus scrape of the pull reader: the SDK's collect() plus the rendering.

    .venv/bin/python -m tests.benchmarks.bench_scrape [--scale N] [--scrapes N]

A gateway-like set of metrics, recorded inside sampled spans so the histograms carry exemplars: two HTTP
duration points, one time-to-first-token point, cache and rejection counters, an up-down counter, two
observable gauges (one a point per GPU of an 8-GPU node), process.uptime and target_info; ``--scale``
multiplies the label sets (scale 1 is about 70 series). It prints the series count, the body size and the
median/p95/max time per scrape of text 0.0.4 and OpenMetrics, rendered in-process and fetched over
loopback HTTP from the standalone server (which adds the HTTP round trip). No assertions: figures only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpx
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import semconv as service_sc
from telemetry import (
    AdvancedOptions,
    MetricsServer,
    PrometheusMetricReader,
    Telemetry,
    build_telemetry,
    semconv as sc,
)
from telemetry.instruments import create
from telemetry.semconv import Kind, MetricSpec

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
TEXT = "text/plain;version=0.0.4"
IN_FLIGHT = MetricSpec("llm.bench.in_flight", "{request}", Kind.UP_DOWN_COUNTER, "Requests in flight.")


def _record(built: Telemetry, scale: int) -> None:
    meter = built.meter_provider.get_meter("bench")
    tracer = built.tracer_provider.get_tracer("bench")
    http = create(meter, sc.HTTP_SERVER_REQUEST_DURATION)
    ttft = create(meter, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    cache = create(meter, service_sc.LLM_GATEWAY_CACHE_REQUESTS)
    rejected = create(meter, service_sc.LLM_GATEWAY_REJECTED_REQUESTS)
    in_flight = create(meter, IN_FLIGHT)

    def entries(_options: CallbackOptions) -> list[Observation]:
        return [Observation(10, {"shard": str(i)}) for i in range(scale)]

    def utilization(_options: CallbackOptions) -> list[Observation]:
        return [Observation(0.5, {"hw.id": f"gpu{i}"}) for i in range(8 * scale)]  # an 8-GPU node

    create(meter, service_sc.LLM_GATEWAY_CACHE_ENTRIES, callbacks=[entries])
    create(meter, sc.HW_GPU_UTILIZATION, callbacks=[utilization])
    for i in range(scale):
        model = f"model-{i}"
        for request in range(50):
            with tracer.start_as_current_span("request"):
                status = 200 if request % 10 else 429
                http.record(
                    0.01 * (request % 13 + 1),
                    {
                        "http.request.method": "POST",
                        "http.route": f"/v{i}",
                        "http.response.status_code": status,
                    },
                )
                ttft.record(0.02 * (request % 7 + 1), {"gen_ai.request.model": model})
                cache.add(1, {"llm.cache.result": "hit" if request % 3 else "miss"})
                if status == 429:
                    rejected.add(1, {"llm.reject.reason": "rate_limited"})
                in_flight.add(1 if request % 2 else -1, {"gen_ai.request.model": model})


def _time(scrape: Callable[[], bytes], scrapes: int) -> tuple[list[float], bytes]:
    body = scrape()  # warm up
    timings = []
    for _ in range(scrapes):
        started = time.perf_counter()
        body = scrape()
        timings.append((time.perf_counter() - started) * 1000)
    return timings, body


def _line(label: str, timings: list[float], body: bytes) -> str:
    p95 = statistics.quantiles(timings, n=20)[-1]
    return (
        f"{label:<28} median {statistics.median(timings):7.3f} ms   p95 {p95:7.3f} ms"
        f"   max {max(timings):7.3f} ms   {len(body):>7} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=1, help="label sets per metric (1: about 70 series)")
    parser.add_argument("--scrapes", type=int, default=300)
    args = parser.parse_args()
    reader = PrometheusMetricReader()
    built = build_telemetry(
        service_name="bench",
        gpu=False,
        advanced=AdvancedOptions(
            span_processors=[SimpleSpanProcessor(InMemorySpanExporter())], metric_readers=[reader]
        ),
    )
    _record(built, args.scale)
    server = MetricsServer(reader, "127.0.0.1", 0)
    try:
        text = reader.render(TEXT).body.decode()
        series = [line for line in text.splitlines() if line and not line.startswith("#")]
        exemplars = reader.render(OPENMETRICS).body.decode().count(" # {")
        print(
            f"scale {args.scale}: {len(series)} series, {exemplars} exemplars in OpenMetrics,"
            f" {args.scrapes} scrapes"
        )
        for label, accept in (("in-process text 0.0.4", TEXT), ("in-process OpenMetrics", OPENMETRICS)):

            def render(a: str = accept) -> bytes:
                return reader.render(a).body

            print(_line(label, *_time(render, args.scrapes)))
        with httpx.Client(timeout=10) as client:
            for label, accept in (("HTTP text 0.0.4", TEXT), ("HTTP OpenMetrics", OPENMETRICS)):

                def fetch(a: str = accept) -> bytes:
                    return client.get(server.url, headers={"Accept": a}).content

                print(_line(label, *_time(fetch, args.scrapes)))
    finally:
        server.stop()
        built.shutdown(timeout_millis=1000)


if __name__ == "__main__":
    main()
