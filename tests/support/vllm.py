"""A vLLM ``/metrics`` stand-in: an exposition built from vLLM's documented metric names and types (vLLM V1:
vllm/v1/metrics/loggers.py, docs/design/metrics.md), served on loopback and advancing at every scrape as a
busy engine's would, for the mapping recipe's test (deploy/prometheus/vllm/scrape-vllm.yml).

Labels are vLLM's: ``model_name`` and ``engine`` on everything, ``finished_reason`` on request_success.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deploy.stack import LOOPBACK

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
LABELS = f'model_name="{MODEL}",engine="0"'

# Buckets as vLLM declares them (shortened where vLLM's run on to 1-2-5 × max_model_len).
_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_TPOT = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_LATENCY = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
_LENGTH = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_ITERATION = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclass(frozen=True)
class Histogram:
    name: str
    buckets: tuple[float, ...]
    observed: float
    """What each scrape adds one observation of."""


HISTOGRAMS = (
    Histogram("vllm:time_to_first_token_seconds", _TTFT, 0.3),
    Histogram("vllm:request_time_per_output_token_seconds", _TPOT, 0.02),
    Histogram("vllm:e2e_request_latency_seconds", _LATENCY, 2.2),
    Histogram("vllm:request_queue_time_seconds", _LATENCY, 0.4),
    Histogram("vllm:request_prompt_tokens", _LENGTH, 180),
    Histogram("vllm:request_generation_tokens", _LENGTH, 90),
    Histogram("vllm:iteration_tokens_total", _ITERATION, 40),
)
FINISH_REASONS = {"stop": 3, "length": 1, "abort": 1}
"""request_success per scrape, by finished_reason."""
PER_SCRAPE = {
    "vllm:prompt_tokens_total": 540,
    "vllm:generation_tokens_total": 270,
    "vllm:prefix_cache_queries_total": 540,
    "vllm:prefix_cache_hits_total": 135,
    "vllm:num_preemptions_total": 1,
}
"""Counters and what each scrape adds (vLLM counts prefix-cache queries and hits in tokens)."""


class VllmExposition:
    """The text of scrape number ``n``: gauges that move, counters and histograms that only grow."""

    def __init__(self) -> None:
        self.scrapes = 0
        self._lock = threading.Lock()

    def render(self) -> str:
        with self._lock:
            self.scrapes += 1
            n = self.scrapes
        lines = [
            *_gauge("vllm:num_requests_running", "Number of requests in model execution batches.", 16),
            *_gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", 2 + n),
            *_gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", 0.93),
            *_gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage (deprecated).", 0.93),
        ]
        for name, step in PER_SCRAPE.items():
            lines += [f"# HELP {name} {name}.", f"# TYPE {name} counter", f"{name}{{{LABELS}}} {step * n}"]
        name = "vllm:request_success_total"
        lines += [f"# HELP {name} Count of successfully processed requests.", f"# TYPE {name} counter"]
        lines += [f'{name}{{{LABELS},finished_reason="{r}"}} {k * n}' for r, k in FINISH_REASONS.items()]
        for histogram in HISTOGRAMS:
            lines += _histogram(histogram, n)
        return "\n".join(lines) + "\n"


def _gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{{{LABELS}}} {value}"]


def _histogram(histogram: Histogram, count: int) -> list[str]:
    name = histogram.name
    lines = [f"# HELP {name} {name}.", f"# TYPE {name} histogram"]
    for bound in histogram.buckets:
        inside = count if histogram.observed <= bound else 0
        lines.append(f'{name}_bucket{{{LABELS},le="{bound}"}} {inside}')
    lines.append(f'{name}_bucket{{{LABELS},le="+Inf"}} {count}')
    lines.append(f"{name}_sum{{{LABELS}}} {histogram.observed * count}")
    lines.append(f"{name}_count{{{LABELS}}} {count}")
    return lines


@contextmanager
def serve_vllm_metrics(port: int) -> Iterator[VllmExposition]:
    """``/metrics`` on ``LOOPBACK:port`` until the block ends."""
    exposition = VllmExposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition.render().encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exposition
    finally:
        server.shutdown()
        server.server_close()
