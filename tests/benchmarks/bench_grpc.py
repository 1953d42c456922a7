"""Unary gRPC (grpc.aio) round trips: no telemetry vs ours vs stock OpenTelemetry (benchmark, not a test).

    .venv/bin/python -m tests.benchmarks.bench_grpc [--reps 5] [--calls 5000] [--warmup 500]
        [--variants none,passthrough,floor,ours,stock] [--no-pin] [--out /tmp/bench_grpc.json]

The call is ``Inference.ListModels`` on the real ``InferenceServicer`` (a cheap unary RPC answering the
3-model catalog) served by ``grpc.aio.server()`` in its own process (pinned to CPU 0); a client process
(pinned to CPU 1) makes ``--warmup`` then ``--calls`` sequential awaited calls on one
``grpc.aio.insecure_channel``. Everything binds 127.0.0.1; about 2 minutes with the defaults.

Variants (both sides alike)
  none   no interceptors; the servicer built with a Telemetry whose providers are the API's no-ops.
  ours   ``grpc_server_interceptor`` / ``grpc_client_interceptors`` over ``build_telemetry`` providers
         (default sampler, BatchSpanProcessor to a counting exporter, exemplars trace_based):
         SERVER + CLIENT span, traceparent propagation, rpc.{server,client}.call.duration.
  stock  ``opentelemetry-instrumentation-grpc`` ``GrpcAioInstrumentorServer`` / ``GrpcAioInstrumentorClient``
         with a plain SDK TracerProvider (same BSP + counting exporter); it records spans only.
  passthrough  interceptors on both sides that only call ``continuation``: the cost of grpc.aio's
         interceptor machinery itself, which any interceptor-based instrumentation pays.
  floor  interceptors on both sides that do only what no SDK-based instrumentation can avoid: one sampled
         span and one ``rpc.*.call.duration`` record with an exemplar per call and side (``_bench.Floor``,
         over ``build_telemetry`` providers as ``ours``), no propagation. Our overhead is printed as a
         multiple of this one's; each floor process also prints the same work timed in a tight loop.
  ours_server, ours_client (not in the default set): ours on one side only.

Figures: calls/s median (min–max) over reps, ratio vs ``none`` paired per rep, µs per call, server CPU
µs/call (``/proc`` utime+stime of the server, read by the client around its measured loop) and client
CPU µs/call (``process_time`` of the client, all threads, over the same loop), CPU µs added per call (both
sides, paired against ``none``) and that as a multiple of the floor's (paired per rep), spans per call on
each side (sanity check: 1 and 1 when instrumented).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from tests.benchmarks._bench import (
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

VARIANTS = ("none", "passthrough", "floor", "ours", "stock")
# variant -> (server flavour, client flavour)
SIDES = {
    "none": ("none", "none"),
    "passthrough": ("passthrough", "passthrough"),
    "floor": ("floor", "floor"),
    "ours": ("ours", "ours"),
    "stock": ("stock", "stock"),
    "ours_server": ("ours", "none"),
    "ours_client": ("none", "ours"),
}


def _passthrough_server() -> Any:
    from grpc import aio

    class Passthrough(aio.ServerInterceptor):  # type: ignore[type-arg]
        async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
            return await continuation(handler_call_details)

    return Passthrough()


def _passthrough_client() -> Any:
    from grpc import aio

    class Passthrough(aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
        async def intercept_unary_unary(
            self, continuation: Any, client_call_details: Any, request: Any
        ) -> Any:
            return await continuation(client_call_details, request)

    return Passthrough()


def _floor(side: str) -> Floor:
    from opentelemetry.trace import SpanKind

    from telemetry import semconv as sc

    method = "llm.inference.v1.Inference/ListModels"
    attributes = {
        sc.RPC_SYSTEM_NAME: sc.RPC_SYSTEM_GRPC,
        sc.RPC_METHOD: method,
        sc.RPC_RESPONSE_STATUS_CODE: "OK",
    }
    if side == "server":
        return Floor("inference", sc.RPC_SERVER_CALL_DURATION, SpanKind.SERVER, method, attributes)
    return Floor("gateway", sc.RPC_CLIENT_CALL_DURATION, SpanKind.CLIENT, method, attributes)


def _floor_server(floor: Floor) -> Any:
    import grpc
    from grpc import aio

    class FloorServer(aio.ServerInterceptor):  # type: ignore[type-arg]
        """Wraps the (one) unary handler once, as ours does, and spends one floor per call."""

        def __init__(self) -> None:
            self.cached: tuple[Any, Any] = (None, None)

        async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
            handler = await continuation(handler_call_details)
            if handler is None or handler.unary_unary is None:
                return handler
            if self.cached[0] is not handler:
                inner = handler.unary_unary

                async def unary(request: Any, context: Any) -> Any:
                    started = floor.start()
                    try:
                        return await inner(request, context)
                    finally:
                        floor.end(started)

                wrapped = grpc.unary_unary_rpc_method_handler(
                    unary, handler.request_deserializer, handler.response_serializer
                )
                self.cached = (handler, wrapped)
            return self.cached[1]

    return FloorServer()


def _floor_client(floor: Floor) -> Any:
    from grpc import aio

    class FloorClient(aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
        async def intercept_unary_unary(
            self, continuation: Any, client_call_details: Any, request: Any
        ) -> Any:
            started = floor.start()
            try:
                return await (await continuation(client_call_details, request))
            finally:
                floor.end(started)

    return FloorClient()


async def serve(flavour: str) -> None:
    from grpc import aio

    from services.common.models import load_catalog
    from services.inference.scheduler import SchedulerLimits
    from services.inference.server import InferenceServicer
    from services.inference.simulated import KvCacheConfig, SimulatedEngine
    from services.proto import inference_pb2_grpc as pb_grpc
    from telemetry import grpc_server_interceptor

    flush: Any = None
    exporter: Any = None
    floor: Floor | None = None
    interceptors: list[Any] = []
    if flavour == "ours":
        built, exporter, _ = ours_telemetry("inference")
        flush = built.tracer_provider.force_flush
        interceptors.append(grpc_server_interceptor(built.tracer_provider, built.meter_provider))
    else:
        if flavour == "passthrough":
            interceptors.append(_passthrough_server())
        elif flavour == "floor":
            floor = _floor("server")
            interceptors.append(_floor_server(floor))
        built = noop_telemetry("inference")
        if flavour == "stock":
            from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer

            tracer_provider, _, exporter = stock_providers("inference")
            flush = tracer_provider.force_flush
            GrpcAioInstrumentorServer().instrument(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    models = load_catalog({})
    engine = SimulatedEngine(
        models,
        kv_cache=KvCacheConfig(4 << 30),
        limits=SchedulerLimits(max_running=8),
        meter_provider=built.meter_provider,
        tracer_provider=built.tracer_provider,
    )
    servicer = InferenceServicer(models, engine, built, gpu_index=0)
    server = aio.server(interceptors=interceptors or None)
    pb_grpc.add_InferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"PORT {port}", flush=True)
    await stop.wait()
    await server.stop(0)
    if flush is not None:
        flush()
    result: dict[str, Any] = {"server_spans": exporter.count if exporter is not None else 0}
    if floor is not None:
        result["server_spans"] = floor.spans()
        result["server_floor_hot_loop_us"] = floor.hot_loop_cpu_us()
    print(json.dumps(result), flush=True)


async def client(flavour: str, port: int, calls: int, warmup: int, server_pid: int) -> None:
    from grpc import aio

    from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
    from telemetry import grpc_client_interceptors

    flush: Any = None
    exporter: Any = None
    floor: Floor | None = None
    interceptors: list[Any] = []
    if flavour == "ours":
        built, exporter, _ = ours_telemetry("gateway")
        flush = built.tracer_provider.force_flush
        interceptors = grpc_client_interceptors(built.tracer_provider, built.meter_provider)
    elif flavour == "passthrough":
        interceptors = [_passthrough_client()]
    elif flavour == "floor":
        floor = _floor("client")
        interceptors = [_floor_client(floor)]
    elif flavour == "stock":
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

        tracer_provider, _, exporter = stock_providers("gateway")
        flush = tracer_provider.force_flush
        GrpcAioInstrumentorClient().instrument(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    channel = aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors or None)
    stub = pb_grpc.InferenceStub(channel)
    request = pb.ListModelsRequest()
    for _ in range(warmup):
        await stub.ListModels(request)
    if flush is not None:
        flush()
    spans0 = floor.spans() if floor is not None else exporter.count if exporter is not None else 0
    server0 = proc_cpu_seconds(server_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        response = await stub.ListModels(request)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server_cpu = proc_cpu_seconds(server_pid) - server0
    assert len(response.models) == 3
    if flush is not None:
        flush()
    spans = (floor.spans() if floor is not None else exporter.count if exporter is not None else 0) - spans0
    await channel.close(None)
    result = {"wall_s": wall, "client_cpu_s": cpu, "server_cpu_s": server_cpu, "client_spans": spans}
    if floor is not None:
        result["client_floor_hot_loop_us"] = floor.hot_loop_cpu_us()
    print(json.dumps(result), flush=True)


def run_one(kids: Any, args: argparse.Namespace, variant: str) -> dict[str, Any]:
    server_flavour, client_flavour = SIDES[variant]
    me = [sys.executable, "-m", "tests.benchmarks.bench_grpc"]
    server = kids.start(
        [*pin(0, args.pin), *me, "--role", "server", "--flavour", server_flavour],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server {server_flavour} failed: {line!r} {server.stderr.read()[-2000:]}")
        port = int(line.split()[1])
        out = kids.run(
            [
                *pin(1, args.pin),
                *me,
                *("--role", "client", "--flavour", client_flavour, "--port", str(port)),
                *("--calls", str(args.calls), "--warmup", str(args.warmup), "--server-pid", str(server.pid)),
            ],
            timeout=600,
        )
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        os.kill(server.pid, signal.SIGTERM)
        tail, _ = server.communicate(timeout=30)
        server_result = json.loads(tail.strip().splitlines()[-1])
        result.update(server_result)
    finally:
        kids.stop(server)
    n = args.calls
    result.update(
        variant=variant,
        cps=n / result["wall_s"],
        us_per_call=result["wall_s"] / n * 1e6,
        server_cpu_us_per_call=result["server_cpu_s"] / n * 1e6,
        client_cpu_us_per_call=result["client_cpu_s"] / n * 1e6,
        cpu_us_per_call=(result["server_cpu_s"] + result["client_cpu_s"]) / n * 1e6,
        client_spans_per_call=result["client_spans"] / n,
        # the server's spans cover warm-up + measured calls
        server_spans_per_call=result["server_spans"] / (n + args.warmup),
    )
    return result


def summarise(runs: dict[str, list[dict[str, Any]]], variants: list[str]) -> dict[str, Any]:
    multiples = floor_multiples(runs, "cpu_us_per_call")
    summary: dict[str, Any] = {}
    for v, rs, pairs in paired_runs(runs, variants):
        s = {
            "calls_per_s": summarize([r["cps"] for r in rs]),
            "ratio_vs_none": summarize([r["cps"] / b["cps"] for r, b in pairs]),
            "us_per_call": summarize([r["us_per_call"] for r in rs]),
            "us_per_call_overhead": summarize([r["us_per_call"] - b["us_per_call"] for r, b in pairs]),
            "server_cpu_us_per_call": summarize([r["server_cpu_us_per_call"] for r in rs]),
            "client_cpu_us_per_call": summarize([r["client_cpu_us_per_call"] for r in rs]),
            "cpu_us_added_per_call": summarize(
                [r["cpu_us_per_call"] - b["cpu_us_per_call"] for r, b in pairs]
            ),
            "server_spans_per_call": summarize([r["server_spans_per_call"] for r in rs]),
            "client_spans_per_call": summarize([r["client_spans_per_call"] for r in rs]),
        }
        if v in multiples:
            s["floor_multiple"] = multiples[v]
        summary[v] = s
    return summary


HEADER = [
    "variant",
    "calls/s median (min–max)",
    "× none (paired)",
    "µs/call",
    "overhead µs/call (paired)",
    "server CPU µs/call",
    "client CPU µs/call",
    "CPU µs added/call, both sides (paired)",
    "× floor (CPU added, paired)",
    "spans/call srv / cli",
]


def row(v: str, s: dict[str, Any]) -> list[str]:
    return [
        v,
        fmt(s["calls_per_s"]),
        fmt(s["ratio_vs_none"], 2),
        f"{s['us_per_call']['median']:.0f}",
        fmt(s["us_per_call_overhead"]),
        fmt(s["server_cpu_us_per_call"]),
        fmt(s["client_cpu_us_per_call"]),
        fmt(s["cpu_us_added_per_call"]),
        fmt(s["floor_multiple"], 2) if "floor_multiple" in s else "",
        f"{s['server_spans_per_call']['median']:.2f} / {s['client_spans_per_call']['median']:.2f}",
    ]


def main_bench(args: argparse.Namespace) -> None:
    variants = args.variants.split(",")
    unknown = set(variants) - set(SIDES)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {sorted(SIDES)}")
    print(
        f"grpc.aio unary Inference.ListModels, server on CPU 0, sequential client on CPU 1"
        f"{' (NOT pinned)' if not args.pin else ''}; {args.reps} reps x {args.calls} calls "
        f"(+{args.warmup} warm-up); variants {variants}",
        flush=True,
    )
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at start: {load_at_start} (other work on this machine adds noise)", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with children() as kids:
        for rep in range(args.reps):
            for variant in rotated(variants, rep):
                r = run_one(kids, args, variant)
                r["rep"] = rep
                runs[variant].append(r)
                print(
                    f"rep {rep} {variant:11s} calls/s={r['cps']:7.0f} us/call={r['us_per_call']:6.0f} "
                    f"srv cpu/call={r['server_cpu_us_per_call']:5.0f}us "
                    f"cli cpu/call={r['client_cpu_us_per_call']:5.0f}us "
                    f"spans/call srv={r['server_spans_per_call']:.2f} cli={r['client_spans_per_call']:.2f}",
                    flush=True,
                )
    summary = summarise(runs, variants)
    print()
    print(markdown_table(HEADER, [row(v, summary[v]) for v in variants]))
    sides = ("server_floor_hot_loop_us", "client_floor_hot_loop_us")
    hot = [r[k] for r in runs.get("floor", []) for k in sides]
    if hot:
        print(
            f"\nthe floor's span + record timed in a tight loop in the same processes: "
            f"{fmt(summarize(hot))} µs CPU per side"
        )
    print(f"\nload average at end: {os.getloadavg()}")
    config = {k: v for k, v in vars(args).items() if k not in ("role", "out")}
    machine = machine_info()
    machine["loadavg_at_start"] = load_at_start
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(args.out, {"config": config, "machine": machine, "summary": summary, "runs": runs})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calls", type=int, default=5000, help="measured calls per run")
    ap.add_argument("--warmup", type=int, default=500, help="warm-up calls per run")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin with taskset")
    ap.add_argument("--out", default=None, help="write JSON results here (use /tmp or a git-ignored path)")
    # internal: the child processes
    ap.add_argument("--role", choices=("bench", "server", "client"), default="bench")
    ap.add_argument("--flavour", default="none", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "server":
        asyncio.run(serve(args.flavour))
    elif args.role == "client":
        asyncio.run(client(args.flavour, args.port, args.calls, args.warmup, args.server_pid))
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
