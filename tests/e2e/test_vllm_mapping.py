"""One schema across engines: a vLLM engine's /metrics, scraped by the real Prometheus through
deploy/prometheus/vllm/scrape-vllm.yml, lands under our names, and the dashboard's engine panels, our
recording rules and the llm-engine alerts work on it unchanged.

The engine is a stand-in serving an exposition built from vLLM's documented names and types
(tests/support/vllm.py), busy and saturated: its KV cache 93 % full, 16 running and a growing queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from deploy.grafana.generate._build import OVERVIEW
from deploy.stack import (
    LOOPBACK,
    Binaries,
    ManagedProcess,
    ProcessSpec,
    PrometheusClient,
    free_port,
    http_ready,
    poll_until,
)
from deploy.stack._process import start_process
from tests.support.backends import require
from tests.support.grafana import expand, load_dashboards, panel_queries
from tests.support.promql import REPO_ROOT, RULES_DIR
from tests.support.vllm import FINISH_REASONS, MODEL, PER_SCRAPE, serve_vllm_metrics

RECIPE = REPO_ROOT / "deploy" / "prometheus" / "vllm" / "scrape-vllm.yml"
ENGINE_SECTION = "Engine: continuous batching and the KV cache"
NO_VLLM_EQUIVALENT = {
    "llm_engine_kv_cache_blocks": "vLLM exports the usage share, not block counts (the pool's size is a "
    "label of vllm:cache_config_info, which relabelling cannot turn into a sample)",
    "llm_engine_aborted_requests_total": "vLLM counts aborts as request_success with finished_reason abort, "
    "which the finished-requests query shows",
}
"""Queries of the engine panels that stay empty on a vLLM fleet, and why."""


@pytest.fixture(scope="module")
def prometheus(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusClient]:
    """The real Prometheus scraping the vLLM stand-in each second with the recipe's job as written (only its
    target replaced), evaluating our rule files each second."""
    bins = require(binaries, "prometheus")
    run = tmp_path_factory.mktemp("vllm-mapping")
    engine_port, prometheus_port = free_port(), free_port()
    (job,) = yaml.safe_load(RECIPE.read_text())["scrape_configs"]
    job["static_configs"] = [{"targets": [f"{LOOPBACK}:{engine_port}"]}]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_DIR / "recording.yml"), str(RULES_DIR / "alerts-llm.yml")],
        "scrape_configs": [job],
    }
    (run / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://{LOOPBACK}:{prometheus_port}"
    spec = ProcessSpec(
        "prometheus",
        [
            str(bins["prometheus"]),
            f"--config.file={run / 'prometheus.yml'}",
            f"--storage.tsdb.path={run / 'data'}",
            f"--web.listen-address={LOOPBACK}:{prometheus_port}",
        ],
        ready_check=http_ready(f"{url}/-/ready"),
    )
    with serve_vllm_metrics(engine_port):
        process: ManagedProcess = start_process(spec, run)
        try:
            process.wait_ready()
            client = PrometheusClient(url)
            # Enough scrapes for rate() and for the rules' 5-minute windows to hold two samples.
            poll_until(
                lambda: client.query("count_over_time(llm_engine_kv_cache_usage_ratio[1m]) >= 6"),
                "six scrapes of the vLLM stand-in",
                timeout=60,
            )
            yield client
            client.close()
        finally:
            process.stop()


def _values(prometheus: PrometheusClient, expr: str, by: str) -> dict[str, float]:
    return {s.labels.get(by, ""): s.value for s in prometheus.query(expr)}


def test_vllms_gauges_land_under_our_names_with_the_model_as_our_label(prometheus: PrometheusClient) -> None:
    states = _values(prometheus, "llm_engine_requests", "llm_engine_request_state")
    assert set(states) == {"running", "waiting"}
    assert states["running"] == 16
    (usage,) = prometheus.query("llm_engine_kv_cache_usage_ratio")
    assert usage.value == pytest.approx(0.93)
    assert usage.labels["gen_ai_request_model"] == MODEL
    assert usage.labels["job"] == "vllm"
    assert "model_name" not in usage.labels
    # The deprecated twin keeps its own name: mapping both would store one series twice.
    assert prometheus.query("vllm:gpu_cache_usage_perc")
    assert not prometheus.query('{__name__=~"vllm:(num_requests_.*|kv_cache_usage_perc)"}')


def test_vllms_counters_and_histograms_land_under_our_names(prometheus: PrometheusClient) -> None:
    for ours, theirs in (
        ("llm_engine_prefix_cache_queries_total", "vllm:prefix_cache_queries_total"),
        ("llm_engine_prefix_cache_hits_total", "vllm:prefix_cache_hits_total"),
        ("llm_engine_preemptions_total", "vllm:num_preemptions_total"),
    ):
        (sample,) = prometheus.query(ours)
        assert sample.value > 0, ours
        assert sample.value % PER_SCRAPE[theirs] == 0, ours
        assert not prometheus.query(theirs)
    reasons = _values(prometheus, "llm_engine_finished_requests_total", "llm_engine_finish_reason")
    assert set(reasons) == set(FINISH_REASONS)
    assert not prometheus.query('{finished_reason!=""}')
    for histogram in (
        "llm_engine_request_input_tokens",
        "llm_engine_request_output_tokens",
        "llm_engine_step_tokens",
        "llm_inference_queue_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_per_output_token_seconds",
        "gen_ai_server_request_duration_seconds",
    ):
        for suffix in ("bucket", "sum", "count"):
            assert prometheus.query(f"{histogram}_{suffix}"), f"{histogram}_{suffix}"
    # vLLM's other series keep their names: nothing is lost.
    assert prometheus.query("vllm:prompt_tokens_total")


def test_the_dashboards_engine_panels_read_a_vllm_fleet(prometheus: PrometheusClient) -> None:
    dashboard = load_dashboards()[OVERVIEW.file]
    titles = _section_titles(dashboard, ENGINE_SECTION)
    queries = [q for q in panel_queries(dashboard) if q.panel in titles]
    assert len(queries) >= 8, titles
    empty = []
    for query in queries:
        expr = expand(query.expr, {"model": ".*", "job": ".*", "provider": ".*"}, rate_interval="1m")
        if not prometheus.query(expr):
            empty.append(f"{query.panel}: {expr}")
    assert [e for e in empty if not any(name in e for name in NO_VLLM_EQUIVALENT)] == []


def _section_titles(dashboard: dict[str, Any], section: str) -> set[str]:
    """Titles of the panels under the row ``section`` (our rows are open: their panels follow them)."""
    titles: set[str] = set()
    inside = False
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            inside = panel["title"] == section
        elif inside:
            titles.add(panel["title"])
    return titles


def test_our_rules_and_engine_alerts_evaluate_on_a_vllm_fleet(prometheus: PrometheusClient) -> None:
    ratio = _values(prometheus, "model:llm_engine_prefix_cache_hit_ratio:rate5m", "gen_ai_request_model")
    assert ratio[MODEL] == pytest.approx(0.25)
    preemptions = prometheus.query("model:llm_engine_preemptions:rate5m")
    assert preemptions
    assert preemptions[0].value > 0
    # The stand-in is saturated: KV cache above 90 %, a queue that grows while the batch stays at 16.
    pending = poll_until(
        lambda: (
            {
                s.labels["alertname"]
                for s in prometheus.query('ALERTS{alertname=~"LLMKVCacheUsageHigh|LLMEngineQueueGrowing"}')
            }
            or None
        ),
        "the engine alerts pending on the vLLM stand-in",
        timeout=30,
    )
    assert pending == {"LLMKVCacheUsageHigh", "LLMEngineQueueGrowing"}


def test_the_recipe_maps_only_onto_names_we_declare() -> None:
    from tests.support.promql import semconv_names

    job = yaml.safe_load(RECIPE.read_text())["scrape_configs"][0]
    targets: set[str] = set()
    for rule in job["metric_relabel_configs"]:
        if rule.get("target_label") != "__name__":
            continue
        group = re.search(r"\(([^()]*)\)", rule["regex"])
        captures = group.group(1).split("|") if group else [""]
        targets.update(rule["replacement"].replace("${1}", captured) for captured in captures)
    assert len(targets) >= 20
    assert targets <= semconv_names(), targets - semconv_names()
