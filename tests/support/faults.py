"""Helpers for tests/e2e/test_faults.py: load in the background, process faults, what the SDKs counted.

Every load is bounded in requests and seconds and targets loopback; every fault acts on a process the
stack started, by its PID.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.services import ServiceAddresses
from deploy.stack import ManagedProcess
from services.loadgen import LoadReport, run_load
from telemetry import semconv

# ---- the figures table -------------------------------------------------------------------------------


@dataclass
class Figures:
    """Rows (fault, figure, value) collected over the session; tests/conftest.py prints them at the end."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, fault: str, figure: str, value: str) -> None:
        self.rows.append((fault, figure, value))
        print(f"[faults] {fault}: {figure} = {value}", flush=True)

    def table(self) -> str:
        widths = [max(len(row[i]) for row in [("fault", "figure", "value"), *self.rows]) for i in range(3)]
        lines = [
            " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [("fault", "figure", "value"), tuple("-" * w for w in widths), *self.rows]
        ]
        return "\n".join(lines)


FIGURES = Figures()

# ---- load -------------------------------------------------------------------------------------------

CONCURRENCY = 6
"""The steady load: 6 in flight, under the local stack's admission limits (deploy/local/services.py)."""


class BackgroundLoad:
    """``services.loadgen.run_load`` in a thread: at most ``duration`` seconds and 50 requests a second."""

    def __init__(self, services: ServiceAddresses, duration: float, seed: int = 23) -> None:
        self.started = time.monotonic()
        self._result: list[LoadReport] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                report = asyncio.run(
                    run_load(
                        services.gateway_url,
                        services.api_key,
                        requests=int(duration * 50),
                        concurrency=CONCURRENCY,
                        duration=duration,
                        seed=seed,
                    )
                )
                self._result.append(report)
            except BaseException as exc:  # re-raised by join() in the test's thread
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name="fault-load", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 120.0) -> LoadReport:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the load did not finish within {timeout:g} s")
        if self._error:
            raise self._error[0]
        return self._result[0]


def failed(report: LoadReport) -> dict[str, int]:
    """Requests that failed: a 5xx or no HTTP answer at all. 4xx are the plan's deliberate bad requests."""
    return {k: v for k, v in report.statuses.items() if not k.isdigit() or int(k) >= 500}


def p99(report: LoadReport) -> float:
    return statistics.quantiles(report.latencies, n=100)[98] if len(report.latencies) > 1 else 0.0


# ---- processes ----------------------------------------------------------------------------------------


def rss_mib(pid: int, field_name: str = "VmRSS") -> float:
    """``VmRSS`` (or ``RssAnon``, ``RssFile``) of ``pid`` from /proc, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    raise LookupError(f"/proc/{pid}/status has no {field_name}")


def signal_process(proc: ManagedProcess, sig: signal.Signals) -> None:
    os.killpg(proc.pid, sig)


def terminate(proc: ManagedProcess) -> float:
    """SIGTERM ``proc`` and wait up to its ``stop_timeout`` (its grace period); the seconds it took.

    Raises ``TimeoutError`` if it outlives its grace (the stack's stop then kills it).
    """
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout=proc.spec.stop_timeout)
    except Exception as exc:
        raise TimeoutError(f"{proc.spec.name} still runs {proc.spec.stop_timeout:g} s after SIGTERM") from exc
    return time.monotonic() - started


# ---- what the services' SDKs counted (their /metrics, pull reader next to OTLP) ------------------------


@dataclass(frozen=True)
class SdkCounts:
    spans_handed: float = 0.0
    spans_dropped: float = 0.0
    spans_exported: float = 0.0
    spans_lost: float = 0.0
    points_exported: float = 0.0
    points_lost: float = 0.0

    @property
    def lost(self) -> float:
        """Everything this SDK could not deliver: dropped spans, spans and points whose export failed."""
        return self.spans_dropped + self.spans_lost + self.points_lost

    def __sub__(self, other: SdkCounts) -> SdkCounts:
        names = SdkCounts.__dataclass_fields__
        return SdkCounts(**{n: getattr(self, n) - getattr(other, n) for n in names})

    def __add__(self, other: SdkCounts) -> SdkCounts:
        names = SdkCounts.__dataclass_fields__
        return SdkCounts(**{n: getattr(self, n) + getattr(other, n) for n in names})


_SDK_SAMPLES = {
    semconv.OTEL_SDK_PROCESSOR_SPAN_PROCESSED.prometheus_name: ("spans_handed", "spans_dropped"),
    semconv.OTEL_SDK_EXPORTER_SPAN_EXPORTED.prometheus_name: ("spans_exported", "spans_lost"),
    semconv.OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED.prometheus_name: ("points_exported", "points_lost"),
}


def metrics_urls(services: ServiceAddresses) -> dict[str, str]:
    return {
        "gateway": f"{services.gateway_url}/metrics",
        "orchestrator": f"{services.orchestrator_url}/metrics",
        "inference": f"{services.inference_http_url}/metrics",
    }


def sdk_counts(url: str) -> SdkCounts:
    """The otel.sdk.* totals one service's /metrics shows now."""
    text = httpx.get(url, timeout=5).raise_for_status().text
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            fields = _SDK_SAMPLES.get(sample.name)
            if fields is not None:
                totals[fields[1] if sample.labels.get("error_type") else fields[0]] += sample.value  # type: ignore[assignment]
    return SdkCounts(**totals)


def all_sdk_counts(services: ServiceAddresses) -> dict[str, SdkCounts]:
    """Every service's counts, scraped in parallel (a scrape under load takes up to a second or two)."""
    urls = metrics_urls(services)
    with ThreadPoolExecutor(len(urls)) as pool:
        return dict(zip(urls, pool.map(sdk_counts, urls.values()), strict=True))


def total(counts: Iterable[SdkCounts]) -> SdkCounts:
    result = SdkCounts()
    for c in counts:
        result = result + c
    return result


# ---- the Collector's own metrics -----------------------------------------------------------------------


def collector_value(telemetry_url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on the Collector's own /metrics whose labels include ``labels``.

    ``name`` as the Collector writes it (its counters have no ``_total``; the parser adds one).
    """
    text = httpx.get(telemetry_url, timeout=5).raise_for_status().text
    found = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name in (name, f"{name}_total") and labels.items() <= sample.labels.items():
                found += sample.value
    return found


# ---- a burst of large OTLP requests, straight to the Collector ------------------------------------------


@dataclass
class BurstResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0


def _burst_request(spans: int, payload_bytes: int) -> trace_service_pb2.ExportTraceServiceRequest:
    now = time.time_ns()
    resource = resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="burst"))]
    )
    made = [
        trace_pb2.Span(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name="burst",
            kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1_000_000,
            attributes=[
                common_pb2.KeyValue(
                    key="payload",
                    value=common_pb2.AnyValue(string_value=os.urandom(payload_bytes // 2).hex()),
                )
            ],
        )
        for _ in range(spans)
    ]
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=made)])
        ]
    )


def span_burst(otlp_grpc: str, *, seconds: float, senders: int = 8, max_requests: int = 400) -> BurstResult:
    """``senders`` threads send ~2.5 MB OTLP trace requests (600 spans of 4 KB) as fast as the Collector
    answers, for at most ``seconds`` and ``max_requests`` requests in all; outcomes by gRPC status."""
    request = _burst_request(600, 4096)
    size = request.ByteSize()
    result = BurstResult()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    budget = [max_requests]

    def send() -> None:
        with grpc.insecure_channel(otlp_grpc) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                try:
                    stub.Export(request, timeout=10)
                    outcome = "OK"
                except grpc.RpcError as exc:
                    outcome = exc.code().name
                with lock:
                    result.outcomes[outcome] += 1
                    result.bytes_sent += size

    threads = [threading.Thread(target=send, name=f"burst-{i}", daemon=True) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 15)
    return result


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (monotonic seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    return statistics.linear_regression(xs, ys).slope * 60


# ---- requests whose trace ids we know (graceful shutdown) -------------------------------------------------


@dataclass(frozen=True)
class TracedRequest:
    started: float
    ended: float
    outcome: str
    """The HTTP status, or the httpx exception's name when no answer came."""
    trace_id: str

    def spans(self, moment: float) -> bool:
        """Whether the request was in flight at ``moment`` (monotonic seconds)."""

        return self.started < moment < self.ended


def traced_requests(services: ServiceAddresses, until: float, model: str) -> list[TracedRequest]:
    """Chat requests, :data:`CONCURRENCY` at a time until ``until`` (monotonic), each with a
    ``traceparent`` of ours so its trace can be looked up in Jaeger."""
    done: list[TracedRequest] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            trace_id = secrets.token_hex(16)
            headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
            # A prompt of its own: a cached answer would never reach the orchestrator or inference.
            body: dict[str, Any] = {
                "model": model,
                "messages": [{"role": "user", "content": f"summarise trace {trace_id}"}],
                "max_tokens": 64,
            }
            start = time.monotonic()
            try:
                response = await client.post("/v1/chat/completions", json=body, headers=headers)
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
                await asyncio.sleep(0.05)  # a refused connection answers at once: do not spin
            done.append(TracedRequest(start, time.monotonic(), outcome, trace_id))

    async def run() -> None:
        headers = {"Authorization": f"Bearer {services.api_key}"}
        async with httpx.AsyncClient(base_url=services.gateway_url, headers=headers, timeout=30) as client:
            await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))

    asyncio.run(run())
    return done


def one_request(services: ServiceAddresses, model: str) -> str:
    """One uncached chat request through all three services; its status, or the exception's name."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"probe {secrets.token_hex(8)}"}],
        "max_tokens": 8,
    }
    headers = {"Authorization": f"Bearer {services.api_key}"}
    try:
        url = f"{services.gateway_url}/v1/chat/completions"
        return str(httpx.post(url, json=body, headers=headers, timeout=10).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def uptime_s(metrics_url: str) -> float:
    """``process_uptime_seconds`` on a service's own /metrics."""
    text = httpx.get(metrics_url, timeout=5).raise_for_status().text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == semconv.PROCESS_UPTIME.prometheus_name:
                return float(sample.value)
    raise LookupError(f"no {semconv.PROCESS_UPTIME.prometheus_name} at {metrics_url}")


# ---- slow and half-open clients (the gateway's edge limits) -----------------------------------------------


@dataclass
class SlowClients:
    """What the slow clients met: how each connection ended, and when the server closed the half-open ones."""

    outcomes: Counter[str] = field(default_factory=Counter)
    closed_after: list[float] = field(default_factory=list)
    """Seconds from a half-open connection's start to the server closing it."""


def slow_clients(
    gateway_url: str, *, half_open: int, silent: int, slow_bodies: int, api_key: str, seconds: float
) -> SlowClients:
    """Bounded slowloris against ``gateway_url`` (loopback): ``half_open`` connections trickle a request head
    a byte a second, ``silent`` ones send nothing, ``slow_bodies`` send a valid head with ``api_key`` and a
    body a byte a second. Each stops when the server closes it or after ``seconds``."""
    host, port = gateway_url.removeprefix("http://").split(":")
    result = SlowClients()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()

    async def one(kind: str) -> None:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            result.outcomes[f"{kind}: connect {type(exc).__name__}"] += 1
            return
        first = {
            "half-open": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n",
            "silent": b"",
            "slow-body": head,
        }
        try:
            writer.write(first[kind])
            answer = b""
            while time.monotonic() - started < seconds:
                try:
                    answer = await asyncio.wait_for(reader.read(200), 1.0)
                    break  # an answer, or the server closed the connection (b"")
                except TimeoutError:
                    if kind != "silent":
                        writer.write(b"X")  # one more byte: never enough
            status = (
                answer.split(b" ", 2)[1].decode()
                if answer.startswith(b"HTTP/1.1 ")
                else ("closed" if answer == b"" and time.monotonic() - started < seconds else "open")
            )
            result.outcomes[f"{kind}: {status}"] += 1
            if kind == "half-open" and status != "open":
                result.closed_after.append(time.monotonic() - started)
        except OSError as exc:
            result.outcomes[f"{kind}: {type(exc).__name__}"] += 1
        finally:
            writer.close()

    async def run() -> None:
        kinds = ["half-open"] * half_open + ["silent"] * silent + ["slow-body"] * slow_bodies
        await asyncio.gather(*(one(kind) for kind in kinds))

    asyncio.run(run())
    return result


def rejected_by_type(metrics_url: str) -> Counter[str]:
    """``llm.gateway.rejected_requests`` by ``error.type``, from the gateway's own /metrics."""
    counts: Counter[str] = Counter()
    text = httpx.get(metrics_url, timeout=5).raise_for_status().text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llm_gateway_rejected_requests_total":
                counts[sample.labels.get("error_type", "")] += int(sample.value)
    return counts
