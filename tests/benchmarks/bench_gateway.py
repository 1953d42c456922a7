"""Gateway throughput under uvicorn + wrk: no telemetry vs ours vs stock OpenTelemetry (a benchmark).

    .venv/bin/python -m tests.benchmarks.bench_gateway [--reps 3] [--duration 8] [--warmup 2]
        [--conns 32] [--threads 2] [--scenarios cache,upstream] [--variants none,floor,signals,ours,stock]
        [--no-pin] [--out /tmp/bench_gateway.json]
    .venv/bin/python -m tests.benchmarks.bench_gateway --profile [--requests 3000] [--reps 5]

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install -y wrk``) and ``taskset`` (util-linux) unless ``--no-pin``.
Everything binds 127.0.0.1. Default run: 3 reps x 5 variants x 2 scenarios x (8 s + 2 s warm-up + start-up),
about 7 minutes.

Request: ``POST /v1/chat/completions`` with ``Authorization: Bearer <key>`` and one fixed JSON body, from
wrk (``-t2 -c32``, pinned to CPU 1), against ``services.gateway.app.create_app`` under uvicorn, one worker,
asyncio + h11 (what the pinned dependencies install), no access log, pinned to CPU 0.

Scenarios
  cache     every request is a response-cache hit (the cache is filled with the answer for the fixed body
            before the run; the upstream URL points at a closed port, so a miss would show up as a 502 in
            wrk's non-2xx count). Isolates the gateway's own cost: auth, body read and validation, cache
            lookup, JSON response, and the telemetry around them (SERVER span, HTTP metrics with exemplars,
            cache counter).
  upstream  the response cache is off (0 entries), so every request goes to a minimal upstream stub (HTTP/1.1
            straight on asyncio, no framework, answering /v1/generate at once, pinned to CPU 1 beside wrk;
            ``_StubUpstream``): adds the upstream call (httpx's API over aiohttp's pool), and for ``ours``
            the GenAI INTERNAL span, the httpx CLIENT span, traceparent injection,
            http.client.request.duration and the gen_ai.client.* metrics.

Variants
  none   ``create_app`` with a Telemetry whose providers are the API's no-ops, then every instrumentation
         it applied undone through its handles (``app.state.instrumentation``: our ASGI middleware and the
         httpx transport wrapper). What remains are the gateway's own calls into the no-op API (cache
         counter, GenAI span/metrics), a few µs per request, and FastAPI's native telemetry with its
         switches back at their defaults, as in an app never instrumented: inert without global SDK
         providers, but it looks for them on every request (about 4 µs, timed alone on FastAPI 0.165;
         ``ours`` turns it off).
  ours   ``build_telemetry`` (our views, default sampler = 100 %, exemplar filter trace_based) with a
         BatchSpanProcessor to an exporter that only counts, an InMemoryMetricReader that is not collected
         during the run; ``create_app`` as shipped (middleware, httpx, GenAI, cache metrics).
  floor  the ``none`` app + an outermost ASGI middleware doing only what no SDK-based instrumentation can
         avoid: one sampled SERVER span and one ``http.server.request.duration`` record with an exemplar
         per request, with pre-built attributes (``_bench.Floor``, over ``build_telemetry`` providers as
         ``ours``). Our overhead is also printed as a multiple of this one's (paired per rep).
  signals the ``none`` app + an outermost ASGI middleware replaying exactly what one ``ours`` request emits
         (its spans with their attributes, events and status; its measurements with their values,
         attributes and span contexts, so exemplars too), pre-built, over ``ours`` providers
         (``_replay.Replay``, captured from one in-process request at start-up): the SDK's price of our
         signal set. ``ours`` minus ``signals`` is what our own code adds to it.
  none+httpx, ours+httpx (upstream scenario, on request: ``--variants none,ours,none+httpx,ours+httpx``)
         the same with the upstream client the gateway had before aiohttp (``httpx.AsyncClient.send``
         over httpcore 1.0.9's pool), for before/after figures from one interleaved run.
  stock  the ``none`` app + ``opentelemetry-instrumentation-fastapi`` ``FastAPIInstrumentor.instrument_app``
         with a plain SDK TracerProvider (same BSP + counting exporter) and MeterProvider (no views),
         ``OTEL_SEMCONV_STABILITY_OPT_IN=http``. It traces only the server side (no httpx/GenAI spans).

Figures: req/s median (min–max) over reps; ratio vs ``none`` paired per rep; server CPU µs per request
(utime+stime of the server process over the measured run / requests); wrk p50/p99; spans exported per
measured request (force-flushed before and after the run: a sanity check; expected ours 1 (cache) and 3
(upstream), stock 4 (SERVER + "http receive" + 2 "http send")) and, for ``ours``, duration points per request.

``--profile`` calls the ASGI app in-process (no sockets, no uvicorn, upstream answered by an in-process
httpx transport), times none/ours/stock per scenario, then runs cProfile on ``none`` and ``ours`` and
prints where the extra time goes, grouped by package.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from deploy.stack import PollTimeoutError, free_port, poll_until
from telemetry import instrument_httpx
from tests.benchmarks._bench import (
    Children,
    CountingSpanExporter,
    Floor,
    children,
    floor_multiples,
    fmt,
    machine_info,
    markdown_table,
    noop_telemetry,
    ours_telemetry,
    paired_runs,
    pin,
    proc_cpu_seconds,
    rotated,
    stock_providers,
    summarize,
    write_json,
)
from tests.benchmarks._replay import CapturingSpanProcessor, Replay, captured_measurements

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Stats = Callable[[], dict[str, Any]]

VARIANTS = ("none", "floor", "signals", "ours", "stock")
SCENARIOS = ("cache", "upstream")
API_KEY = "bench-key-0123456789"
PATH = "/v1/chat/completions"
STATS_PATH = "/_bench/stats"
MODEL = "llama-3.1-8b-instruct"
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello in one word."}],
    "max_tokens": 16,
}
BODY_BYTES = json.dumps(BODY).encode()
UPSTREAM_ANSWER = json.dumps(
    {
        "id": "bench-0001",
        "model": MODEL,
        "text": "Hello",
        "finish_reason": "stop",
        "usage": {"input_tokens": 6, "output_tokens": 1},
    }
).encode()
CLOSED_URL = "http://127.0.0.1:9"  # discard port: nothing listens; a cache miss answers 502


# --------------------------------------------------------------------------------------------------
# Building the app (server child and in-process profile)


def _fill_cache(app: Any) -> None:
    """Store the answer for BODY exactly as ``Gateway.complete`` keys it, so every request hits."""
    from services.gateway.cache import request_key
    from services.gateway.tenants import anonymous_tenant_id, key_digest
    from services.gateway.wire import ChatCompletionRequest, chat_completion

    payload = ChatCompletionRequest.model_validate(BODY).model_dump()
    answer = json.dumps(chat_completion(json.loads(UPSTREAM_ANSWER)), separators=(",", ":")).encode()
    app.state.gateway.cache.put(request_key(anonymous_tenant_id(key_digest(API_KEY)), payload), answer)


def build_gateway(variant: str, scenario: str, upstream_url: str | None) -> tuple[Any, Stats]:
    """The gateway app for ``variant``/``scenario`` and a function returning the telemetry counts.

    ``variant`` may end in ``+httpx``: the same, with the upstream client the gateway had before aiohttp.
    """
    variant, _, client = variant.partition("+")
    from services.common.models import load_catalog
    from services.gateway.app import GatewaySettings, create_app

    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        orchestrator_url=upstream_url or CLOSED_URL,
        api_keys=(API_KEY,),
        insecure_no_auth=False,
        max_body_bytes=1 << 20,
        max_in_flight=256,
        upstream_timeout=10.0,
        cache_entries=1024 if scenario == "cache" else 0,
        cache_ttl=86_400.0,
    )
    models = load_catalog({})
    if variant == "ours":
        built, exporter, reader = ours_telemetry("gateway")
        app = create_app(settings, built, models)

        def ours_stats() -> dict[str, Any]:
            built.tracer_provider.force_flush()
            points = 0
            data = reader.get_metrics_data()
            for rm in data.resource_metrics if data else ():
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == "http.server.request.duration":
                            data_points: Any = metric.data.data_points
                            points += sum(int(p.count) for p in data_points)
            return {"spans": exporter.count, "duration_points": points}

        stats: Stats = ours_stats
    else:
        app = create_app(settings, noop_telemetry("gateway"), models)
        for handle in app.state.instrumentation:
            handle.uninstrument()
        stats = dict
        if variant == "floor":
            stats = _add_floor(app)
        elif variant == "signals":
            stats = _add_replay(app, _capture_signals(settings, scenario))
        elif variant == "stock":
            os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "http"
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            tracer_provider, meter_provider, stock_exporter = stock_providers("gateway")
            FastAPIInstrumentor.instrument_app(
                app, tracer_provider=tracer_provider, meter_provider=meter_provider
            )

            def stock_stats() -> dict[str, Any]:
                tracer_provider.force_flush()
                return {"spans": stock_exporter.count}

            stats = stock_stats
        elif variant != "none":
            raise SystemExit(f"unknown variant {variant!r}")
    if client == "httpx":
        _use_httpx_client(app)
    elif client:
        raise SystemExit(f"unknown upstream client {client!r} (only +httpx)")
    if scenario == "cache":
        _fill_cache(app)
    return app, stats


class _AroundEachRequest:
    """``signals.start()`` before each HTTP request and ``signals.end(...)`` after it, nothing else: the
    floor (``Floor``) or the replay of our signals (``Replay``) as the outermost middleware."""

    def __init__(self, app: ASGIApp, signals: Floor | Replay) -> None:
        self.app, self.signals = app, signals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: Any = self.signals.start()
        try:
            await self.app(scope, receive, send)
        finally:
            self.signals.end(started)


def _add_floor(app: Any) -> Stats:
    """The floor as the outermost middleware, where ``instrument_fastapi`` puts ours."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.util.types import AttributeValue
    from starlette.middleware import Middleware

    from telemetry import semconv as sc

    attributes: dict[str, AttributeValue] = {
        sc.HTTP_REQUEST_METHOD: "POST",
        sc.URL_SCHEME: "http",
        sc.HTTP_ROUTE: PATH,
        sc.HTTP_RESPONSE_STATUS_CODE: 200,
        sc.NETWORK_PROTOCOL_VERSION: "1.1",
    }
    floor = Floor("gateway", sc.HTTP_SERVER_REQUEST_DURATION, SpanKind.SERVER, f"POST {PATH}", attributes)
    app.user_middleware.insert(0, Middleware(_AroundEachRequest, signals=floor))
    app.middleware_stack = None
    return lambda: {"spans": floor.spans()}


def _capture_signals(settings: Any, scenario: str) -> tuple[Replay, Any, CountingSpanExporter]:
    """What one request to ``ours`` emits, captured in-process (upstream answered without a socket)."""
    from services.common.models import load_catalog
    from services.gateway.app import create_app

    capture = CapturingSpanProcessor()
    built, exporter, _ = ours_telemetry("gateway", capture)
    app = create_app(settings, built, load_catalog({}))
    _answer_in_process(app)
    if scenario == "cache":
        _fill_cache(app)
    capture.recording = True
    with captured_measurements() as measurements:
        asyncio.run(_drive(app, 1, 0, None))
    capture.recording = False
    built.tracer_provider.force_flush()
    replay = Replay(built.tracer_provider.get_tracer("bench.replay"), capture.spans, measurements)
    return replay, built, exporter


def _add_replay(app: Any, captured: tuple[Replay, Any, CountingSpanExporter]) -> Stats:
    """The replay as the outermost middleware, where ``instrument_fastapi`` puts ours."""
    from starlette.middleware import Middleware

    replay, built, exporter = captured
    print(f"signals replayed per request: {replay.signals()}", file=sys.stderr, flush=True)
    app.user_middleware.insert(0, Middleware(_AroundEachRequest, signals=replay))
    app.middleware_stack = None

    def replay_stats() -> dict[str, Any]:
        built.tracer_provider.force_flush()
        return {"spans": exporter.count}

    return replay_stats


def _use_httpx_client(app: Any) -> None:
    """The upstream client as it was before aiohttp: ``AsyncClient.send`` over httpx's own transport
    (httpcore 1.0.9, retries=0, default limits), kept instrumented if it was (the ``+httpx`` variants)."""
    from services.gateway.upstream import Orchestrator

    class HttpxOrchestrator(Orchestrator):
        async def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
            try:
                return await self.client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None

    gateway = app.state.gateway
    upstream = gateway.upstream
    handle = upstream.instrumentation
    was_instrumented = handle.active
    handle.uninstrument()
    upstream.client._transport = httpx.AsyncHTTPTransport(retries=0)
    if was_instrumented:
        instrument_httpx(
            upstream.client,
            tracer_provider=gateway.telemetry.tracer_provider,
            meter_provider=gateway.telemetry.meter_provider,
        )
    upstream.__class__ = HttpxOrchestrator


def with_stats_endpoint(app: ASGIApp, stats: Stats) -> ASGIApp:
    """``GET /_bench/stats`` answered outside every instrumentation layer (one comparison per request)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STATS_PATH:
            body = json.dumps(stats()).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


def _stub_response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _StubUpstream(asyncio.Protocol):
    """The minimal orchestrator stand-in: HTTP/1.1 keep-alive straight on asyncio, ``POST /v1/generate``
    answered with a fixed completion at once, anything else with ``{"status":"ok"}``.

    No web framework: at 1,500 req/s a uvicorn stub (about 0.3 ms of CPU a request here) would take half
    of CPU 1, which it shares with wrk, and the benchmark would measure the stub; this one costs a few tens
    of µs. Request bodies must come with Content-Length (httpx, aiohttp and urllib send one).
    """

    GENERATE = _stub_response(UPSTREAM_ANSWER)
    OTHER = _stub_response(b'{"status":"ok"}')

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            length = 0
            if (at := head.find(b"\r\ncontent-length:")) >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is still coming
            del self.buffer[: end + 4 + length]
            path = head.split(b" ", 2)[1]
            self.transport.write(self.GENERATE if path == b"/v1/generate" else self.OTHER)


def serve_stub_upstream(port: int) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_StubUpstream, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def serve(app: ASGIApp, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="h11",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


# --------------------------------------------------------------------------------------------------
# wrk runs


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    result["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        result[f"p{pct}_ms"] = float(m.group(1)) * _UNIT_MS[m.group(2)] if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1).strip() if m else ""
    return result


def wrk_script(directory: str) -> str:
    path = Path(directory) / "post.lua"
    body = BODY_BYTES.decode().replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
    )
    return str(path)


def get_json(url: str, timeout: float = 30.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        result: dict[str, Any] = json.load(response)
        return result


def _answers(url: str) -> bool:
    try:
        get_json(url, timeout=1.0)
    except (OSError, ValueError):
        return False
    return True


def post_once(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}",
        data=BODY_BYTES,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def run_one(
    kids: Children,
    args: argparse.Namespace,
    *,
    variant: str,
    scenario: str,
    upstream_port: int | None,
    lua: str,
) -> dict[str, Any]:
    port = free_port()
    cmd = [*pin(0, args.pin), sys.executable, "-m", "tests.benchmarks.bench_gateway", "--role", "gateway"]
    cmd += ["--variant", variant, "--scenario", scenario, "--port", str(port)]
    if upstream_port is not None:
        cmd += ["--upstream-port", str(upstream_port)]
    server = kids.start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        stats_url = f"http://127.0.0.1:{port}{STATS_PATH}"
        try:
            poll_until(
                lambda: server.poll() is None and _answers(stats_url), "the gateway", 60.0, interval=0.05
            )
        except PollTimeoutError:
            err = server.stderr.read() if server.poll() is not None and server.stderr else ""
            raise RuntimeError(f"gateway {variant} did not start: {err[-2000:]}") from None
        status = post_once(port)
        if status != 200:
            raise RuntimeError(f"{variant}/{scenario}: probe request answered {status}")
        url = f"http://127.0.0.1:{port}{PATH}"
        wrk = [*pin(1, args.pin), "wrk", f"-t{args.threads}", f"-c{args.conns}", "-s", lua]
        kids.run([*wrk, f"-d{args.warmup}s", url], timeout=args.warmup + 60)
        before = get_json(stats_url)
        cpu0 = proc_cpu_seconds(server.pid)
        t0 = time.perf_counter()
        out = kids.run([*wrk, f"-d{args.duration}s", "--latency", url], timeout=args.duration + 60)
        wall = time.perf_counter() - t0
        cpu = proc_cpu_seconds(server.pid) - cpu0
        after = get_json(stats_url)
    finally:
        kids.stop(server)
    result = parse_wrk(out)
    requests = result["requests"] or 1
    result.update(
        variant=variant,
        scenario=scenario,
        server_cpu_s=cpu,
        wall_s=wall,
        server_cpu_util=cpu / wall,
        cpu_us_per_req=cpu / requests * 1e6,
        spans_per_req=(after["spans"] - before["spans"]) / requests if "spans" in after else 0.0,
    )
    if "duration_points" in after:
        result["duration_points_per_req"] = (after["duration_points"] - before["duration_points"]) / requests
    return result


def summarise(runs: dict[str, list[dict[str, Any]]], variants: list[str]) -> dict[str, Any]:
    multiples = floor_multiples(runs, "cpu_us_per_req")
    summary: dict[str, Any] = {}
    for v, rs, pairs in paired_runs(runs, variants):
        summary[v] = {
            "rps": summarize([r["rps"] for r in rs]),
            "ratio_vs_none": summarize([r["rps"] / b["rps"] for r, b in pairs]),
            "inv_rps_overhead_us": summarize([1e6 / r["rps"] - 1e6 / b["rps"] for r, b in pairs]),
            "cpu_us_per_req": summarize([r["cpu_us_per_req"] for r in rs]),
            "cpu_overhead_us": summarize([r["cpu_us_per_req"] - b["cpu_us_per_req"] for r, b in pairs]),
            "server_cpu_util": summarize([r["server_cpu_util"] for r in rs]),
            "p50_ms": summarize([r["p50_ms"] for r in rs]),
            "p99_ms": summarize([r["p99_ms"] for r in rs]),
            "spans_per_req": summarize([r["spans_per_req"] for r in rs]),
            "non2xx": sum(r["non2xx"] for r in rs),
        }
        if v in multiples:
            summary[v]["floor_multiple"] = multiples[v]
    return summary


def print_table(scenario: str, summary: dict[str, Any], variants: list[str]) -> None:
    header = [
        "variant",
        "req/s median (min–max)",
        "× none (paired)",
        "server CPU µs/req",
        "CPU overhead µs/req (paired)",
        "× floor (CPU overhead, paired)",
        "CPU util",
        "p50 ms",
        "p99 ms",
        "spans/req",
        "non-2xx",
    ]
    rows = []
    for v in variants:
        s = summary[v]
        rows.append(
            [
                v,
                fmt(s["rps"]),
                fmt(s["ratio_vs_none"], 2),
                fmt(s["cpu_us_per_req"]),
                fmt(s["cpu_overhead_us"]),
                fmt(s["floor_multiple"], 2) if "floor_multiple" in s else "",
                f"{s['server_cpu_util']['median']:.2f}",
                f"{s['p50_ms']['median']:.1f}",
                f"{s['p99_ms']['median']:.1f}",
                f"{s['spans_per_req']['median']:.2f}",
                str(s["non2xx"]),
            ]
        )
    print(f"\n### scenario: {scenario}\n")
    print(markdown_table(header, rows))
    starved = [v for v in variants if summary[v]["server_cpu_util"]["median"] < 0.95]
    if starved:
        print(
            f"\nnote: the server got less than 95 % of its CPU in {starved} (other load on CPU 0): req/s and"
            " its ratios are unreliable there; server CPU µs/req still holds"
        )


def main_bench(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), then re-run")
    if args.pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        raise SystemExit("pinning needs taskset and 2 CPUs: install util-linux or pass --no-pin")
    variants = args.variants.split(",")
    scenarios = args.scenarios.split(",")
    print(
        f"gateway {PATH}, uvicorn 1 worker (asyncio+h11) on CPU 0, wrk -t{args.threads} -c{args.conns} on "
        f"CPU 1{' (NOT pinned)' if not args.pin else ''}; {args.reps} reps x {args.duration}s "
        f"(+{args.warmup}s warm-up); scenarios {scenarios}; variants {variants}",
        flush=True,
    )
    print(f"load average at start: {os.getloadavg()} (other work on this machine adds noise)", flush=True)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {v: [] for v in variants} for s in scenarios}
    with children() as kids, tempfile.TemporaryDirectory(prefix="bench_gateway_") as tmp:
        lua = wrk_script(tmp)
        upstream_port: int | None = None
        if "upstream" in scenarios:
            upstream_port = free_port()
            upstream = kids.start(
                [
                    *pin(1, args.pin),
                    *(sys.executable, "-m", "tests.benchmarks.bench_gateway"),
                    *("--role", "upstream", "--port", str(upstream_port)),
                ],
                stdout=subprocess.DEVNULL,
            )
            health = f"http://127.0.0.1:{upstream_port}/health"
            poll_until(
                lambda: upstream.poll() is None and _answers(health), "the upstream stub", 60.0, interval=0.05
            )
        for rep in range(args.reps):
            for scenario in scenarios:
                for variant in rotated(variants, rep):
                    r = run_one(
                        kids,
                        args,
                        variant=variant,
                        scenario=scenario,
                        upstream_port=upstream_port if scenario == "upstream" else None,
                        lua=lua,
                    )
                    r["rep"] = rep
                    runs[scenario][variant].append(r)
                    print(
                        f"rep {rep} {scenario:8s} {variant:5s} rps={r['rps']:7.0f} "
                        f"cpu/req={r['cpu_us_per_req']:6.0f}us util={r['server_cpu_util']:.2f} "
                        f"p50={r['p50_ms']:.1f}ms p99={r['p99_ms']:.1f}ms spans/req={r['spans_per_req']:.2f}"
                        + (
                            f" duration-points/req={r['duration_points_per_req']:.2f}"
                            if "duration_points_per_req" in r
                            else ""
                        )
                        + f" non2xx={r['non2xx']} {r['socket_errors']}",
                        flush=True,
                    )
    summaries = {s: summarise(runs[s], variants) for s in scenarios}
    for s in scenarios:
        print_table(s, summaries[s], variants)
    print(f"\nload average at end: {os.getloadavg()}")
    config = {k: v for k, v in vars(args).items() if k not in ("role", "out")}
    write_json(
        args.out,
        {"config": config, "machine": machine_info(), "summary": summaries, "runs": runs},
    )


# --------------------------------------------------------------------------------------------------
# In-process timing and profile


class _AnswerStream(httpx.AsyncByteStream):
    """The answer as a stream not yet read, as a socket's is: the gateway reads it bounded, chunk by chunk
    (``content=`` bytes would hand it a response httpx has already read)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield UPSTREAM_ANSWER


class _InstantUpstream(httpx.AsyncBaseTransport):
    """An httpx transport answering /v1/generate in-process (no socket), for the in-process runs."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return httpx.Response(200, stream=_AnswerStream(), headers={"content-type": "application/json"})

    async def aclose(self) -> None:
        pass


def _inproc_app(variant: str, scenario: str) -> ASGIApp:
    app, _ = build_gateway(variant, scenario, "http://upstream.invalid")
    _answer_in_process(app)
    built: ASGIApp = app
    return built


def _answer_in_process(app: Any) -> None:
    """Point the gateway's upstream client at ``_InstantUpstream``, keeping its instrumentation as it was."""
    gateway = app.state.gateway
    client = gateway.upstream.client
    # httpx has no public way to swap a client's transport: undo ours (if any), swap, then instrument again.
    http_handle = gateway.upstream.instrumentation
    was_instrumented = http_handle.active
    http_handle.uninstrument()
    client._transport = _InstantUpstream()
    if was_instrumented:
        instrument_httpx(
            client,
            tracer_provider=gateway.telemetry.tracer_provider,
            meter_provider=gateway.telemetry.meter_provider,
        )


async def _drive(app: ASGIApp, n: int, warmup: int, profiler: cProfile.Profile | None) -> tuple[float, float]:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {API_KEY}".encode()),
            (b"content-length", str(len(BODY_BYTES)).encode()),
        ],
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY_BYTES, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"status {message['status']}")

    lifespan_in: asyncio.Queue[Message] = asyncio.Queue()
    lifespan_out: asyncio.Queue[Message] = asyncio.Queue()
    await lifespan_in.put({"type": "lifespan.startup"})

    async def lifespan() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_in.get, lifespan_out.put)

    task = asyncio.create_task(lifespan())
    await lifespan_out.get()
    for _ in range(warmup):
        await app(dict(scope), receive, send)
    gc.collect()
    if profiler is not None:
        profiler.enable()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler is not None:
        profiler.disable()
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await task
    return wall, cpu


def inproc_child(args: argparse.Namespace) -> None:
    app = _inproc_app(args.variant, args.scenario)
    profiler = cProfile.Profile() if args.cprofile else None
    wall, cpu = asyncio.run(_drive(app, args.requests, args.warmup_requests, profiler))
    if profiler is not None:
        profiler.dump_stats(args.cprofile)
    n = args.requests
    print(json.dumps({"us_per_req": wall / n * 1e6, "cpu_us_per_req": cpu / n * 1e6}))


# (bucket, substring of the function's file) in match order; the first match wins.
_AREAS = (
    ("telemetry (ours)", "/telemetry/"),
    ("contrib instrumentation", "/opentelemetry/instrumentation/"),
    ("contrib util-http/semconv", "/opentelemetry/util/http"),
    ("SDK trace (spans, BSP)", "/opentelemetry/sdk/trace/"),
    ("SDK metrics (aggregation, exemplars)", "/opentelemetry/sdk/metrics/"),
    ("SDK other (attributes, util)", "/opentelemetry/sdk/"),
    ("OTel API (context, propagation, attribute cleaning)", "/opentelemetry/"),
    ("gateway (services/)", "/services/"),
    ("fastapi/starlette", "/starlette/"),
    ("fastapi/starlette", "/fastapi/"),
    ("pydantic", "/pydantic"),
    ("httpx/httpcore", "/httpx/"),
    ("httpx/httpcore", "/httpcore/"),
    ("asyncio/contextvars", "/asyncio/"),
    ("threading/queue/random", "/threading.py"),
    ("threading/queue/random", "/random.py"),
    ("stdlib other", "/lib/python3"),
)


def _area(filename: str) -> str:
    for name, needle in _AREAS:
        if needle in filename:
            return name
    return "builtins/C" if filename == "~" else "other"


def _by_area(path: str, n: int) -> dict[str, float]:
    stats = pstats.Stats(path)
    areas: dict[str, float] = {}
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        area = _area(filename)
        areas[area] = areas.get(area, 0.0) + tottime / n * 1e6
    return areas


def _top_functions(path: str, n: int, limit: int) -> list[tuple[str, float, float]]:
    stats = pstats.Stats(path)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_, ncalls, tottime, _, _) in raw.items():
        short = re.sub(r".*/(site-packages|main)/", "", filename)
        rows.append((f"{short}:{line}({func})", tottime / n * 1e6, ncalls / n))
    rows.sort(key=lambda r: -r[1])
    return rows[:limit]


def main_profile(args: argparse.Namespace) -> None:
    variants = args.variants.split(",")
    scenarios = args.scenarios.split(",")
    base = [sys.executable, "-m", "tests.benchmarks.bench_gateway", "--role", "inproc"]
    size = ["--requests", str(args.requests), "--warmup-requests", str(args.warmup_requests)]
    pinning = pin(0, args.pin)
    results: dict[str, dict[str, list[dict[str, float]]]] = {s: {v: [] for v in variants} for s in scenarios}
    report: dict[str, Any] = {"config": vars(args), "machine": machine_info(), "inproc": results}
    print(
        f"in-process ASGI calls ({args.requests} requests after {args.warmup_requests} warm-up, each variant "
        f"in its own process{', pinned to CPU 0' if args.pin else ''}), {args.reps} reps",
        flush=True,
    )
    with children() as kids, tempfile.TemporaryDirectory(prefix="bench_gateway_prof_") as tmp:
        for rep in range(args.reps):
            for scenario in scenarios:
                for variant in rotated(variants, rep):
                    cmd = [*pinning, *base, "--variant", variant, "--scenario", scenario, *size]
                    r = json.loads(kids.run(cmd, timeout=600).strip().splitlines()[-1])
                    results[scenario][variant].append(r)
                    print(f"rep {rep} {scenario:8s} {variant:5s} {r['us_per_req']:7.1f} µs/req", flush=True)
        for scenario in scenarios:
            rows = []
            none_runs = results[scenario].get("none")
            for v in variants:
                rs = results[scenario][v]
                row = [v, fmt(summarize([r["us_per_req"] for r in rs]), 1)]
                if none_runs:
                    pairs = list(zip(rs, none_runs, strict=True))
                    row.append(fmt(summarize([r["us_per_req"] - b["us_per_req"] for r, b in pairs]), 1))
                    row.append(
                        f"{summarize([r['us_per_req'] / b['us_per_req'] for r, b in pairs])['median']:.2f}"
                    )
                rows.append(row)
            print(f"\n### in-process, scenario {scenario}\n")
            print(
                markdown_table(
                    ["variant", "µs/req median (min–max)", "overhead µs/req (paired)", "× none time"], rows
                )
            )

        # cProfile: none vs ours, per scenario; the difference per area is where our overhead goes.
        report["profile"] = {}
        for scenario in scenarios:
            areas: dict[str, dict[str, float]] = {}
            for variant in ("none", "ours"):
                path = str(Path(tmp) / f"{scenario}-{variant}.prof")
                cmd = [
                    *pinning,
                    *base,
                    "--variant",
                    variant,
                    "--scenario",
                    scenario,
                    *size,
                    "--cprofile",
                    path,
                ]
                kids.run(cmd, timeout=600)
                areas[variant] = _by_area(path, args.requests)
                if variant == "ours":
                    top = _top_functions(path, args.requests, 25)
            names = sorted(set(areas["none"]) | set(areas["ours"]), key=lambda a: -areas["ours"].get(a, 0.0))
            rows = []
            for name in names:
                o, z = areas["ours"].get(name, 0.0), areas["none"].get(name, 0.0)
                rows.append([name, f"{z:.1f}", f"{o:.1f}", f"{o - z:+.1f}"])
            total_o, total_z = sum(areas["ours"].values()), sum(areas["none"].values())
            rows.append(["**total**", f"{total_z:.1f}", f"{total_o:.1f}", f"{total_o - total_z:+.1f}"])
            print(f"\n### cProfile own time by area, scenario {scenario} (µs/req under the profiler)\n")
            print(markdown_table(["area", "none", "ours", "ours − none"], rows))
            print(
                f"\ntop functions by own time, ours, scenario {scenario} "
                "(µs/req under the profiler, calls/req)\n"
            )
            print(
                markdown_table(
                    ["function", "own µs/req", "calls/req"], [[f, f"{t:.1f}", f"{c:.1f}"] for f, t, c in top]
                )
            )
            report["profile"][scenario] = {"areas": areas, "top_ours": top}
    write_json(args.out, report)


# --------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="measured seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds per wrk run")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--conns", type=int, default=32, help="wrk connections")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin with taskset")
    ap.add_argument("--out", default=None, help="write JSON results here (use /tmp or a git-ignored path)")
    ap.add_argument("--profile", action="store_true", help="in-process timing + cProfile instead of wrk")
    ap.add_argument("--requests", type=int, default=3000, help="--profile: requests per child")
    ap.add_argument("--warmup-requests", type=int, default=500, help="--profile: warm-up requests")
    # internal: the child processes
    ap.add_argument("--role", choices=("bench", "gateway", "upstream", "inproc"), default="bench")
    ap.add_argument("--variant", default="none", help=argparse.SUPPRESS)
    ap.add_argument("--scenario", default="cache", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--upstream-port", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cprofile", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "gateway":
        upstream = f"http://127.0.0.1:{args.upstream_port}" if args.upstream_port else None
        app, stats = build_gateway(args.variant, args.scenario, upstream)
        serve(with_stats_endpoint(app, stats), args.port)
    elif args.role == "upstream":
        serve_stub_upstream(args.port)
    elif args.role == "inproc":
        inproc_child(args)
    elif args.profile:
        main_profile(args)
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
