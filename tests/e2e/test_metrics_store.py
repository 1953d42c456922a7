"""Metrics past one Prometheus: it remote-writes everything it stores, exemplars included, to Thanos Receive
(two nodes in one hashring, every series on both) and the dashboards read Thanos Query.

The stack (our Collector, Prometheus, Jaeger) and the three real services under load, as for
test_dashboards.py, with Prometheus' ``remote_write`` pointing at the store, as the Helm chart's
``prometheus.remoteWrite`` sets it. Through Thanos Query's Prometheus-compatible API:

- every dashboard panel's query returns data, the latency panels' exemplars come back and one opens its
  trace in Jaeger, and the trace-to-metrics links find data: test_dashboards.py's tests, run here again
  against the store (imported below, with this module's ``loaded`` and ``prometheus`` fixtures);
- the store holds what Prometheus holds, once: the same sums, no series twice (deduplication over the
  replica label);
- a receiver killed (SIGKILL) mid-load: every sample written before the kill is still served by the other
  replica; what the store refuses meanwhile, Prometheus retries from its WAL; and once the receiver is
  back the store holds every sample Prometheus holds over the whole window: none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deploy.stack import Binaries, PrometheusClient, Stack, StackConfig, StackError, poll_until
from services.loadgen import run_load
from tests.e2e.test_dashboards import (
    test_an_http_latency_exemplar_opens_its_trace_in_jaeger,
    test_exemplar_panel_has_exemplars,
    test_panel_query_returns_data,
    test_trace_to_metrics_links_of_a_real_span_return_data,
)
from tests.support.backends import require
from tests.support.loaded import LoadedBackends, load_services
from tests.support.thanos import REPLICA_LABEL, ThanosStore, thanos_store

__all__ = [  # test_dashboards.py's tests, collected here too: they run against Thanos Query
    "test_an_http_latency_exemplar_opens_its_trace_in_jaeger",
    "test_exemplar_panel_has_exemplars",
    "test_panel_query_returns_data",
    "test_trace_to_metrics_links_of_a_real_span_return_data",
]

SELF_SCRAPE = 'prometheus_http_request_duration_seconds_bucket{job="prometheus"}'
"""One of Prometheus' own metrics, scraped every second, a hundred-odd series: the samples the kill test
counts (one metric name, since count_over_time drops the name and two names would collide)."""


@dataclass(frozen=True)
class StoreRun:
    """What test_dashboards.py's tests read (``prometheus_url`` is the store's query API here)."""

    loaded: LoadedBackends
    store: ThanosStore

    @property
    def stack(self) -> Stack:
        return self.loaded.stack

    @property
    def prometheus_url(self) -> str:
        return self.store.query_url

    @property
    def jaeger_url(self) -> str:
        return self.loaded.jaeger_url


class Trickle:
    """A request every 2 s through the gateway, in a thread, until :meth:`stop` (at most 15 minutes).

    The SLO panels read the SLO rules' 5-minute error ratios, 0/0 (NaN) five minutes after the last
    request; the rules' 30-day ratio sums them, so it stays NaN from then on. This module's hundred-odd
    panel queries and the receiver's outage run longer than five minutes after the load on a busy machine,
    so the SLO panels see traffic the way a serving system's dashboards do: never idle."""

    def __init__(self, loaded: LoadedBackends) -> None:
        services = loaded.services
        self._loop = asyncio.new_event_loop()
        load = run_load(
            services.gateway_url,
            services.api_key,
            requests=450,
            concurrency=2,
            duration=900,
            seed=13,
            rate=0.5,
        )
        self._task = self._loop.create_task(load)
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # RuntimeError: the load ran out and closed its loop
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def loaded(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreRun]:
    paths = require(binaries, "thanos", "prometheus", "jaeger", "otelcol")
    store = thanos_store(str(paths["thanos"]), tmp_path_factory.mktemp("thanos"))
    stack = Stack(StackConfig(remote_write_url=store.remote_write_url), binaries)
    try:
        for receiver in store.receivers:
            stack.start_process(receiver.spec)
        stack.start_process(store.query)
        stack.start()
    except StackError as exc:
        stack.stop(failed=True)
        pytest.fail(str(exc), pytrace=False)
    trickle = None
    try:
        services = load_services(stack)
        trickle = Trickle(services)
        trickle.start()
        yield StoreRun(services, store)
    finally:
        if trickle is not None:
            trickle.stop()
        stack.stop()


@pytest.fixture(scope="module")
def prometheus(loaded: StoreRun) -> Iterator[PrometheusClient]:
    """Thanos Query, through the client the tests use for Prometheus."""
    client = PrometheusClient(loaded.store.query_url, timeout=10.0)
    try:
        yield client
    finally:
        client.close()


def _total(client: PrometheusClient, expr: str, at: float) -> float:
    return sum(s.value for s in client.query(expr, at=at))


def test_the_store_holds_each_series_once_with_what_prometheus_holds(
    loaded: StoreRun, prometheus: PrometheusClient
) -> None:
    source = loaded.stack.prometheus
    at = time.time() - 10  # both have caught up with what was written 10 s ago
    calls = "sum(traces_span_metrics_calls_total)"
    poll_until(lambda: _total(prometheus, calls, at) == _total(source, calls, at) > 0, f"{calls} alike", 60)
    # Each replica labels its copy; Thanos Query merges the two, so no series comes back twice.
    series = prometheus.query('up{job="prometheus"}')
    assert len(series) == 1, [s.labels for s in series]
    assert REPLICA_LABEL not in series[0].labels
    exported = "count({__name__=~'traces_.*|http_.*|gen_ai_.*|llm_.*'})"
    print(
        f"\n[metrics store] series written by the pipeline: Prometheus {_total(source, exported, at):g}, "
        f"Thanos Query {_total(prometheus, exported, at):g}"
    )
    assert _total(prometheus, exported, at) == _total(source, exported, at)


def test_a_receiver_killed_mid_load_loses_no_sample(loaded: StoreRun, prometheus: PrometheusClient) -> None:
    source, stack = loaded.stack.prometheus, loaded.stack
    victim = loaded.store.receivers[1]  # the replica; Prometheus writes to receiver 0

    def samples(client: PrometheusClient, start: float, end: float) -> float:
        window = max(1, round(end - start))
        return _total(client, f"sum(count_over_time({SELF_SCRAPE}[{window}s]))", at=end)

    started = time.time()
    time.sleep(8)  # samples flowing to both replicas
    os.killpg(stack.process(victim.name).pid, signal.SIGKILL)
    stack.process(victim.name).popen.wait(timeout=10)
    killed = time.time()
    # Written and acknowledged before the kill (Prometheus' writes lag a second or two): one replica left.
    before = (started, killed - 4)
    poll_until(
        lambda: samples(prometheus, *before) == samples(source, *before) > 0,
        "the surviving replica serving every sample written before the kill",
        30,
    )
    served = samples(prometheus, *before)
    time.sleep(8)  # the outage: Prometheus keeps scraping; what the store refuses, it retries from its WAL
    stack.restart(victim.name)  # the same data directory: a pod restarted on its volume
    back = time.time()
    whole = (started, back)  # the outage included
    caught_up = poll_until(
        lambda: samples(prometheus, *whole) == samples(source, *whole) and time.time(),
        "the store holding every sample Prometheus holds over the outage",
        90,
    )
    expected, stored = samples(source, *whole), samples(prometheus, *whole)
    print(
        f"\n[metrics store] receiver 1 SIGKILLed after {killed - started:.0f} s, back after "
        f"{back - killed:.0f} s; before the kill {served:g} samples of {SELF_SCRAPE} served by receiver 0 "
        f"alone; over the {whole[1] - whole[0]:.0f} s window Prometheus holds {expected:g}, the store "
        f"{stored:g} (lost {expected - stored:g}), caught up {caught_up - back:.1f} s after the restart"
    )
    assert stored == expected
