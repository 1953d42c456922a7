"""A realistic, bounded load against the gateway: ``python -m services.loadgen --help``.

The mix: several models, short and long prompts, streaming and non-streaming, repeated prompts (cache
hits), long prompts that share a preamble (the engine's prefix cache serves it), streams the client
abandons after a few chunks (the engine aborts them), a few bad requests (unknown model, invalid JSON, no
API key) and a few slow ones (the large model with long answers); then, with ``--burst N``, N requests at
once with long prompts, past the services' admission limits when they are set low (the local stack's
are), so refusals at the gateway (429), sheds in the orchestrator (503) and a KV cache that runs out
(requests wait, running ones are preempted) show up too. Deterministic for a given ``--seed``. Every run
is bounded by ``--requests`` and ``--duration``, and targets loopback by default.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.common.models import BUILTIN_CATALOG

TOPICS = (
    "why is p99 latency of the chat model higher after the deploy",
    "explain exemplars in prometheus",
    "how does dynamic batching affect time to first token",
    "what does load shedding protect",
    "summarise the trace of a slow request",
    "when does gpu memory pressure slow decoding",
)


@dataclass
class LoadReport:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    late: int = 0
    """Open-loop arrivals that waited for a free slot (``run_load(rate=...)``)."""
    elapsed: float = 0.0
    """Seconds from the first request sent to the last answer."""
    arrival_rate: float | None = None
    """Open-loop arrivals per second actually achieved: requests sent over the time it took to send them
    (``run_load(rate=...)``); below the asked rate only when this client could not keep up."""

    def summary(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return "no requests completed"
        p = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.kinds.items()))
        pace = f" in {self.elapsed:.0f} s ({len(lat) / self.elapsed:.1f}/s)" if self.elapsed else ""
        late = f", {self.late} arrivals waited for a free slot" if self.late else ""
        if self.arrival_rate is not None:
            late += f", sent at {self.arrival_rate:.1f}/s"
        return (
            f"{len(lat)} requests{pace} ({kinds}){late}\n"
            f"  status codes: {statuses}\n"
            f"  latency p50 {p[49] * 1000:.0f} ms, p95 {p[94] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )


PREAMBLES = tuple(
    " ".join(
        f"{word}"
        for _ in range(6)
        for word in (
            f"You are the on-call assistant of team {team}.",
            "Answer from the trace, the metrics and the runbook; cite the span that shows it;",
            "prefer the exemplar of the slowest bucket, and say which model, batch and GPU served it.",
        )
    )
    for team in ("search", "checkout")
)
"""Long instructions many requests start with (about 190 tokens each): after the first request of each,
the engine serves those blocks from its prefix cache."""
CANCEL_AFTER_CHUNKS = 3
"""A cancelled stream reads this many chunks, then the client goes away."""


def plan(n: int, seed: int, models: Sequence[str]) -> list[tuple[str, dict[str, Any] | bytes, bool]]:
    """``n`` requests as (kind, body, authorised): the same plan for the same seed."""
    rng = random.Random(seed)
    requests: list[tuple[str, dict[str, Any] | bytes, bool]] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.03:
            requests.append(("unknown_model", {"model": "gpt-unknown", "messages": _messages(rng, 1)}, True))
        elif roll < 0.05:
            requests.append(("invalid_json", b'{"model": "broken', True))
        elif roll < 0.06:
            requests.append(("no_auth", {"model": models[0], "messages": _messages(rng, 1)}, False))
        elif roll < 0.14:
            # The slow tail: the big model with a long answer.
            body = {
                "model": models[-1],
                "messages": _messages(rng, 3),
                "max_tokens": 256,
                "stream": i % 2 == 0,
            }
            requests.append(("slow", body, True))
        elif roll < 0.19:
            # A long shared preamble, then a question on the team's topic (so retrieval prepends the same
            # context): every request of a team after its first finds that prefix in the engine's cache.
            team = sum(kind == "shared_prefix" for kind, _, _ in requests) % len(PREAMBLES)
            preamble = PREAMBLES[team]
            question = f"{TOPICS[team]} (#{rng.randrange(10_000)})"
            body = {
                "model": models[0],
                "messages": [{"role": "system", "content": preamble}, {"role": "user", "content": question}],
                "max_tokens": 32,
            }
            requests.append(("shared_prefix", body, True))
        elif roll < 0.22:
            # A long answer the client abandons after a few chunks: the engine aborts a running request.
            body = {"model": models[0], "messages": _messages(rng, 2), "max_tokens": 256, "stream": True}
            requests.append(("cancelled", body, True))
        elif roll < 0.30:
            requests.append(
                (
                    "repeat",
                    {
                        "model": models[0],
                        "messages": [{"role": "user", "content": TOPICS[0]}],
                        "max_tokens": 16,
                    },
                    True,
                )
            )
        else:
            body = {
                "model": rng.choice(models[:-1]),
                "messages": _messages(rng, rng.choice((1, 1, 2, 6))),
                "max_tokens": rng.choice((16, 32, 64)),
                "stream": rng.random() < 0.4,
            }
            requests.append(("stream" if body["stream"] else "chat", body, True))
    return requests


def _messages(rng: random.Random, turns: int) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"{rng.choice(TOPICS)} (#{rng.randrange(10_000)}) " * rng.randint(1, 4)}
        for _ in range(turns)
    ]


async def _one(
    client: httpx.AsyncClient, kind: str, body: dict[str, Any] | bytes, auth: bool, report: LoadReport
) -> None:
    headers = {} if auth else {"Authorization": ""}
    start = time.perf_counter()
    try:
        if isinstance(body, bytes):
            response = await client.post(
                "/v1/chat/completions", content=body, headers={**headers, "Content-Type": "application/json"}
            )
        elif body.get("stream"):
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                chunks = 0
                async for line in response.aiter_lines():
                    chunks += line.startswith("data: ")
                    if kind == "cancelled" and chunks >= CANCEL_AFTER_CHUNKS:
                        break  # leaving the block closes the connection mid-stream
        else:
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
        report.statuses[str(response.status_code)] += 1
    except httpx.HTTPError as exc:
        report.statuses[type(exc).__name__] += 1
    report.latencies.append(time.perf_counter() - start)
    report.kinds[kind] += 1


async def run_load(
    url: str,
    api_key: str,
    *,
    requests: int,
    concurrency: int,
    duration: float,
    seed: int = 7,
    models: Sequence[str] | None = None,
    burst: int = 0,
    rate: float | None = None,
) -> LoadReport:
    """Send up to ``requests`` requests with ``concurrency`` in flight, stopping after ``duration`` s;
    then ``burst`` more, all at once.

    With ``rate`` (requests per second) the arrivals are open-loop, one every ``1/rate`` s whatever the
    answers' latency, as real users arrive; ``concurrency`` then caps how many are in flight (a request
    due while the cap is reached waits for a slot, and the report's ``late`` counts it)."""
    report = LoadReport()
    names = list(models or [m.name for m in BUILTIN_CATALOG])
    queue = list(plan(requests, seed, names))
    began = time.monotonic()
    deadline = began + duration
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    ) as client:

        async def worker() -> None:
            while queue and time.monotonic() < deadline:
                kind, body, auth = queue.pop()
                await _one(client, kind, body, auth, report)

        if rate is None:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            await _open_loop(client, queue, report, rate=rate, concurrency=concurrency, deadline=deadline)
        if burst and time.monotonic() < deadline:
            rng = random.Random(seed + 1)
            # Long prompts and answers at once: more KV blocks than the engine has (with a small cache).
            bodies = [
                {"model": names[0], "messages": _messages(rng, 5), "max_tokens": 128} for _ in range(burst)
            ]
            await asyncio.gather(*(_one(client, "burst", body, True, report) for body in bodies))
    report.elapsed = time.monotonic() - began
    return report


async def _open_loop(
    client: httpx.AsyncClient,
    queue: list[tuple[str, dict[str, Any] | bytes, bool]],
    report: LoadReport,
    *,
    rate: float,
    concurrency: int,
    deadline: float,
) -> None:
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()

    async def one(kind: str, body: dict[str, Any] | bytes, auth: bool) -> None:
        try:
            await _one(client, kind, body, auth, report)
        finally:
            slots.release()

    sent = 0
    last_sent = start
    while queue and time.monotonic() < deadline:
        due = start + sent / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if slots.locked():
            report.late += 1
        await slots.acquire()
        task = asyncio.create_task(one(*queue.pop()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        last_sent = time.monotonic()
    if sent > 1:
        report.arrival_rate = (sent - 1) / (last_sent - start)
    await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.loadgen", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--burst", type=int, default=0, help="then this many requests at once")
    parser.add_argument(
        "--rate", type=float, help="open-loop arrivals per second (--concurrency caps those in flight)"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(
        run_load(
            args.url,
            args.api_key,
            requests=args.requests,
            concurrency=args.concurrency,
            duration=args.duration,
            seed=args.seed,
            burst=args.burst,
            rate=args.rate,
        )
    )
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
