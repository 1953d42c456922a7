"""HTTP client alone: concurrent POSTs against a trivial loopback server, per client library (a benchmark).

    .venv/bin/python -m tests.benchmarks.bench_http_client [--reps 3] [--duration 5] [--concurrency 32]
        [--variants httpx,httpx-tuned,httpx2,httpx2-tuned,aiohttp] [--no-pin] [--out /tmp/x.json]

The server is ``bench_gateway``'s upstream stub (raw ASGI under uvicorn, h11, answering a fixed JSON body at
once) pinned to CPU 1; each client variant runs in its own process pinned to CPU 0, with ``--concurrency``
tasks each sending ``POST /v1/generate`` (a small JSON body, the response read whole and decoded) in a loop
for ``--duration`` seconds after a 1 s warm-up. Figures: requests per second and the client process's CPU
per request (``time.process_time``), median (min–max) over reps, variants interleaved and rotated.

Variants
  httpx         httpx 0.28.1 / httpcore 1.0.9 as the gateway used it: ``AsyncHTTPTransport(retries=0)``,
                default limits (100 connections, 20 kept alive)
  httpx-tuned   the same with every connection kept alive (``Limits(max_keepalive_connections=None)``)
  httpx2        httpx2 / httpcore2 (the maintained fork: O(N+M) pool assignment), default limits
  httpx2-tuned  httpx2 with every connection kept alive
  httpx-aiohttp httpx's client over ``services.gateway.transport.AiohttpTransport`` (aiohttp's pool under
                httpx's API: what the gateway ships)
  gateway       what ``services/gateway/upstream.py`` does: an ``httpx.Request`` built from a pre-merged URL
                and headers, handed straight to the ``AiohttpTransport`` (no ``AsyncClient.send``)
  aiohttp       ``aiohttp.ClientSession`` (``TCPConnector(limit=100)``), for reference
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from deploy.stack import free_port, poll_until
from tests.benchmarks._bench import (
    children,
    fmt,
    machine_info,
    markdown_table,
    pin,
    proc_cpu_seconds,
    rotated,
    summarize,
    write_json,
)

VARIANTS = ("httpx", "httpx-tuned", "httpx2", "httpx2-tuned", "httpx-aiohttp", "gateway", "aiohttp")
PAYLOAD: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": False}

Send = Callable[[], Awaitable[dict[str, Any]]]


async def _httpx_sender(
    module: str, tuned: bool, base_url: str
) -> tuple[Send, Callable[[], Awaitable[None]]]:
    lib: Any = __import__(module)
    if module == "aiohttp":
        from services.gateway.transport import AiohttpTransport

        lib, transport = httpx, AiohttpTransport(max_connections=100)
    else:
        limits = lib.Limits(max_connections=100, max_keepalive_connections=None if tuned else 20)
        transport = lib.AsyncHTTPTransport(retries=0, limits=limits)
    client = lib.AsyncClient(base_url=base_url, timeout=lib.Timeout(10.0, connect=5.0), transport=transport)

    async def send() -> dict[str, Any]:
        response = await client.post("/v1/generate", json=PAYLOAD)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    return send, client.aclose


async def _gateway_sender(base_url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from services.gateway.transport import AiohttpTransport

    client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10.0, connect=5.0))
    transport = AiohttpTransport(max_connections=100)
    url = client.build_request("POST", "/v1/generate").url
    headers = httpx.Headers({**client.headers, "Content-Type": "application/json"})
    extensions = {"timeout": client.timeout.as_dict()}

    async def send() -> dict[str, Any]:
        content = json.dumps(PAYLOAD, separators=(",", ":")).encode()
        request = httpx.Request("POST", url, headers=headers, content=content, extensions=dict(extensions))
        response = await transport.handle_async_request(request)
        await response.aread()
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    async def close() -> None:
        await transport.aclose()
        await client.aclose()

    return send, close


async def _aiohttp_sender(base_url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=100),
        timeout=aiohttp.ClientTimeout(total=10.0, connect=5.0),
    )

    async def send() -> dict[str, Any]:
        async with session.post("/v1/generate", json=PAYLOAD) as response:
            assert response.status == 200
            result: dict[str, Any] = json.loads(await response.read())
            return result

    return send, session.close


async def _client_run(variant: str, port: int, concurrency: int, duration: float) -> dict[str, float]:
    base_url = f"http://127.0.0.1:{port}"
    if variant == "aiohttp":
        send, close = await _aiohttp_sender(base_url)
    elif variant == "gateway":
        send, close = await _gateway_sender(base_url)
    elif variant == "httpx-aiohttp":
        send, close = await _httpx_sender("aiohttp", False, base_url)
    else:
        module = "httpx2" if variant.startswith("httpx2") else "httpx"
        send, close = await _httpx_sender(module, variant.endswith("-tuned"), base_url)
    count = 0
    measuring = False
    stop_at = 0.0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < stop_at:
            await send()
            if measuring:
                count += 1

    stop_at = time.perf_counter() + 1.0
    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up: opens the pool
    measuring = True
    c0, t0 = time.process_time(), time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await close()
    return {"rps": count / wall, "cpu_us_per_req": cpu / max(count, 1) * 1e6, "cpu_util": cpu / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--out", default=None)
    ap.add_argument("--role", choices=("bench", "client"), default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="httpx", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "client":
        result = asyncio.run(_client_run(args.variant, args.port, args.concurrency, args.duration))
        print(json.dumps(result))
        return
    variants = args.variants.split(",")
    pinned = "" if args.pin else " (NOT pinned)"
    header = f"POST /v1/generate, {args.concurrency} concurrent tasks, {args.reps} reps x {args.duration:g}s"
    print(f"{header}; client on CPU 0, stub server on CPU 1{pinned}", flush=True)
    print(f"load average at start: {machine_info()['loadavg_at_start']}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with children() as kids:
        port = free_port()
        stub = [sys.executable, "-m", "tests.benchmarks.bench_gateway", "--role", "upstream"]
        server = kids.start([*pin(1, args.pin), *stub, "--port", str(port)], stdout=subprocess.DEVNULL)
        from tests.benchmarks.bench_gateway import _answers

        health = f"http://127.0.0.1:{port}/health"
        poll_until(lambda: server.poll() is None and _answers(health), "the stub server", 60.0, interval=0.05)
        for rep in range(args.reps):
            for variant in rotated(variants, rep):
                cmd = [*pin(0, args.pin), sys.executable, "-m", "tests.benchmarks.bench_http_client"]
                cmd += ["--role", "client", "--variant", variant, "--port", str(port)]
                cmd += ["--concurrency", str(args.concurrency), "--duration", str(args.duration)]
                server_cpu0 = proc_cpu_seconds(server.pid)
                r = json.loads(kids.run(cmd, timeout=args.duration + 120).strip().splitlines()[-1])
                # the server's CPU over the whole child run (warm-up included), per measured request: an
                # upper bound, for judging whether the stub or the client is the limit
                r["server_cpu_us_per_req"] = (
                    (proc_cpu_seconds(server.pid) - server_cpu0) / (r["rps"] * args.duration + 1e-9) * 1e6
                )
                runs[variant].append(r)
                print(
                    f"rep {rep} {variant:13s} rps={r['rps']:7.0f} cpu/req={r['cpu_us_per_req']:6.0f}us "
                    f"util={r['cpu_util']:.2f} server cpu/req<={r['server_cpu_us_per_req']:.0f}us",
                    flush=True,
                )
    rows = []
    summary: dict[str, Any] = {}
    for v in variants:
        summary[v] = {
            "rps": summarize([r["rps"] for r in runs[v]]),
            "cpu_us_per_req": summarize([r["cpu_us_per_req"] for r in runs[v]]),
        }
        rows.append([v, fmt(summary[v]["rps"]), fmt(summary[v]["cpu_us_per_req"])])
    print()
    print(markdown_table(["client", "req/s median (min–max)", "client CPU µs/req"], rows))
    print(f"\nload average at end: {machine_info()['loadavg_at_start']}")
    write_json(args.out, {"config": vars(args), "machine": machine_info(), "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
