"""A gateway with a real OpenAI-compatible provider (LiteLLM's proxy) beside our pipeline, through the real
Collector into the real Prometheus and Jaeger: per-provider and per-tenant series (requests, tokens, cost,
and the inference server's time to first token, attributed through the gateway's baggage), the cost
histogram and its recording rules, a tenant over its budget refused and alerted on, and a provider call's
exemplar that opens its trace, with the upstream call in it.

The gateway runs as its own process (``python -m services.gateway``) with ``LLM_MODEL_CATALOG`` naming
a YAML catalog and ``LLM_GATEWAY_KEY_FILE`` its tenants, and the pipeline of the ``loaded_backends``
behind it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.stack import JaegerClient, ProcessSpec, PrometheusClient, free_port, http_ready, poll_until
from services.gateway.tenants import key_digest
from tests.support.litellm import LiteLLMServer, mock_models, start_litellm
from tests.support.loaded import LoadedBackends

REPO = Path(__file__).resolve().parents[2]
NAME = "gateway-providers"
INSTANCE = "gateway-providers-e2e"
"""Its service.instance.id, which Prometheus stores as ``instance``: its service.name is "gateway"."""
PRICE = (0.15, 0.60)  # USD per million input and output tokens
CATALOG = """
providers:
  openai:
    type: openai_compatible
    base_url: {base_url}
    api_key_env: E2E_OPENAI_KEY
    timeout_seconds: 30
models:
  - {{name: gpt-4o-mini, provider: openai, upstream_model: mock-chat,
      usd_per_million_tokens: {{input: {price[0]}, output: {price[1]}}}}}
  - {{name: llama-3.1-8b-instruct, usd_per_million_tokens: {{input: 0.05, output: 0.10}}}}
"""


ACME_KEY, BETA_KEY = "e2e-acme-key", "e2e-beta-key"
TENANTS = {
    "tenants": [
        {"id": "acme", "keys": [{"sha256": key_digest(ACME_KEY), "team": "search"}]},
        # one token a day: its first request is admitted (nothing used yet), the next ones are refused
        {"id": "beta", "budget": {"window": "1d", "tokens": 1}, "keys": [{"sha256": key_digest(BETA_KEY)}]},
    ]
}


@dataclass(frozen=True)
class ProviderGateway:
    url: str
    api_key: str
    """acme's key."""
    upstream: LiteLLMServer


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMServer]:
    server = start_litellm("litellm-e2e", mock_models(), tmp_path_factory.mktemp("litellm"), "sk-e2e-master")
    try:
        server.process.wait_ready()
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def gateway(
    loaded_backends: LoadedBackends, upstream: LiteLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProviderGateway]:
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    catalog.write_text(CATALOG.format(base_url=upstream.base_url, price=PRICE))
    key_file = catalog.with_name("keys.json")
    key_file.write_text(json.dumps(TENANTS))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = ProcessSpec(
        NAME,
        [sys.executable, "-m", "services.gateway"],
        env={
            **loaded_backends.stack.otel_env(),
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={INSTANCE}",
            "LLM_GATEWAY_HOST": "127.0.0.1",
            "LLM_GATEWAY_PORT": str(port),
            "LLM_ORCHESTRATOR_URL": loaded_backends.services.orchestrator_url,
            "LLM_GATEWAY_KEY_FILE": str(key_file),
            "LLM_GATEWAY_CACHE_ENTRIES": "0",
            "LLM_MODEL_CATALOG": str(catalog),
            "E2E_OPENAI_KEY": upstream.master_key,
        },
        ready_check=http_ready(f"{url}/ready"),
        cwd=REPO,
    )
    process = loaded_backends.stack.start_process(spec)
    try:
        yield ProviderGateway(url, ACME_KEY, upstream)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(loaded_backends: LoadedBackends) -> Iterator[PrometheusClient]:
    client = PrometheusClient(loaded_backends.prometheus_url, timeout=10.0)
    yield client
    client.close()


def _usage(response: httpx.Response) -> dict[str, int]:
    assert response.status_code == 200, response.text
    if not response.headers["content-type"].startswith("text/event-stream"):
        usage: dict[str, int] = response.json()["usage"]
        return usage
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return dict(httpx.Response(200, content=data[-2]).json()["usage"])


def _value(prometheus: PrometheusClient, expr: str, by: str = "gen_ai_provider_name") -> dict[str, float]:
    """The samples of ``expr`` by their label ``by``."""
    return {s.labels.get(by, ""): s.value for s in prometheus.query(expr)}


def test_a_provider_and_the_pipeline_reach_prometheus_with_their_series_spend_and_traces(
    gateway: ProviderGateway, prometheus: PrometheusClient, loaded_backends: LoadedBackends
) -> None:
    started = time.time()
    spent = 0.0
    where = f'job="gateway", instance="{INSTANCE}"'
    with httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.api_key}"}, timeout=60
    ) as client:
        for i in range(6):
            if i == 1:  # the spend counter in Prometheus before it grows, or rate() sees no increase
                poll_until(
                    lambda: prometheus.query(f"gen_ai_client_operation_cost_sum{{{where}}}"),
                    "the first call's spend in Prometheus",
                    timeout=60,
                )
            streamed: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"question {i}"}],
                **(streamed if i % 2 else {}),
            }
            usage = _usage(client.post("/v1/chat/completions", json=body))
            spent += (usage["prompt_tokens"] * PRICE[0] + usage["completion_tokens"] * PRICE[1]) / 1e6
        pipeline = {"model": "llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "ours"}]}
        for _ in range(2):
            _usage(client.post("/v1/chat/completions", json=pipeline))

    def calls() -> dict[str, float] | None:
        by_provider = _value(
            prometheus,
            f"sum by (gen_ai_provider_name) (gen_ai_client_inference_duration_seconds_count{{{where}}})",
        )
        return by_provider if (by_provider.get("openai"), by_provider.get("self_hosted")) == (6, 2) else None

    print(f"\n[providers] calls {poll_until(calls, '6 openai and 2 self_hosted calls', timeout=60)}")
    print(f"[providers] expected spend on openai: {spent:.9f} USD")
    (openai,) = prometheus.query(
        f'gen_ai_client_inference_duration_seconds_count{{{where}, gen_ai_provider_name="openai"}}'
    )
    assert openai.labels["server_address"] == "127.0.0.1"
    assert openai.labels["server_port"] == str(gateway.upstream.port)
    assert openai.labels["gen_ai_request_model"] == "gpt-4o-mini"

    cost = _value(prometheus, f"sum by (gen_ai_provider_name) (gen_ai_client_operation_cost_sum{{{where}}})")
    assert cost["openai"] == pytest.approx(spent, rel=1e-9)
    assert cost["self_hosted"] > 0
    chunk_gaps = "gen_ai_client_inference_time_per_output_chunk_seconds_count"
    chunks = _value(prometheus, f"sum by (gen_ai_provider_name) ({chunk_gaps}{{{where}}})")
    assert chunks["openai"] > 0
    poll_until(
        lambda: (
            _value(
                prometheus,
                'provider_model:gen_ai_client_operation_cost:rate5m{gen_ai_provider_name="openai"}',
            ).get("openai", 0)
            > 0
        ),
        "the recording rule provider_model:gen_ai_client_operation_cost:rate5m for openai",
        timeout=60,
    )

    # An exemplar of a provider call opens its trace: the gateway's chat span and, under it, the call
    # that carried the trace context to the provider.
    series = prometheus.query_exemplars(
        f'gen_ai_client_inference_duration_seconds_bucket{{{where}, gen_ai_provider_name="openai"}}',
        start=started - 5,
        end=time.time() + 5,
    )
    trace_ids = {e.trace_id for s in series for e in s.exemplars if e.trace_id}
    assert trace_ids, "no exemplar on the provider's duration histogram"
    jaeger = JaegerClient(loaded_backends.jaeger_url, timeout=10.0)
    try:
        spans = poll_until(
            lambda: next((t for t in (jaeger.get_trace(i) for i in sorted(trace_ids)) if t), None),
            "a provider call's trace in Jaeger",
            timeout=30,
        )
    finally:
        jaeger.close()
    chat = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    upstream_call = next(s for s in spans if s.parent_span_id == chat.span_id)
    assert upstream_call.kind == "SPAN_KIND_CLIENT"
    assert upstream_call.attributes["server.port"] == gateway.upstream.port
    assert gateway.upstream.master_key not in str([s.attributes for s in spans])


def test_each_tenant_has_its_series_down_to_the_inference_server_and_one_over_budget_is_refused(
    gateway: ProviderGateway, prometheus: PrometheusClient
) -> None:
    where = f'job="gateway", instance="{INSTANCE}"'
    ours = {"model": "llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "whose is this?"}]}
    answers: dict[str, list[httpx.Response]] = {}
    for tenant, key in (("acme", ACME_KEY), ("beta", BETA_KEY)):
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            answers[tenant] = [c.post("/v1/chat/completions", json=ours) for _ in range(3)]
    assert [a.status_code for a in answers["acme"]] == [200, 200, 200]
    assert [a.status_code for a in answers["beta"]] == [200, 429, 429]
    refusal = answers["beta"][1]
    error = refusal.json()["error"]
    assert (error["type"], error["code"]) == ("budget_exceeded", "insufficient_quota")
    assert error["message"].startswith("tenant 'beta' has used ")
    assert int(refusal.headers["retry-after"]) >= 1

    def per_tenant(expr: str) -> dict[str, float]:
        return _value(prometheus, f"sum by (llm_tenant_id) ({expr})", by="llm_tenant_id")

    tenants = 'llm_tenant_id=~"acme|beta"'
    inference_ttft = f"gen_ai_server_time_to_first_token_seconds_count{{{tenants}}}"

    requests_at_gateway = f"gen_ai_client_inference_duration_seconds_count{{{where}}}"

    def exported() -> tuple[dict[str, float], dict[str, float]] | None:
        """The services export on their own schedules: wait for both ends' counts."""
        ttft, requests = per_tenant(inference_ttft), per_tenant(requests_at_gateway)
        done = ttft.get("beta") == 1 and ttft.get("acme", 0) >= 3 and requests.get("beta") == 1
        return (ttft, requests) if done and requests.get("acme", 0) >= 3 else None

    ttft_counts, requests = poll_until(
        exported, "acme's (3) and beta's (1) requests at the gateway and the inference server", timeout=60
    )
    tokens = per_tenant(f'{{__name__=~"gen_ai_client_inference_usage_(input|output)_tokens_total", {where}}}')
    cost = per_tenant(f"gen_ai_client_operation_cost_sum{{{where}}}")
    inference_cost = per_tenant(f"llm_inference_cost_sum{{{tenants}}}")
    print(f"\n[tenants] requests {requests} tokens {tokens} cost {cost} server TTFT count {ttft_counts}")
    assert requests["beta"] == 1  # the refused requests never ran
    assert requests["acme"] >= 3
    for tenant in ("acme", "beta"):
        assert tokens[tenant] > 0, tenant
        assert cost[tenant] > 0, tenant
        assert inference_cost[tenant] > 0, tenant  # the GPU time it used, priced at the inference server

    # What one tenant costs in series (docs/deployment.md: a 1,000-tenant deployment), per job.
    for tenant in ("acme", "beta"):
        series = _value(prometheus, f'count by (job) ({{llm_tenant_id="{tenant}"}})', by="job")
        print(f"[tenants] series of {tenant}: {series}")

    refused = per_tenant(f'llm_gateway_rejected_requests_total{{{where}, error_type="budget_exceeded"}}')
    assert refused == {"beta": 2}
    used = prometheus.query(f'llm_gateway_budget_utilization_ratio{{{where}, llm_tenant_id="beta"}}')
    assert [(s.labels["llm_budget_limit"], s.value >= 1) for s in used] == [("tokens", True)]
    poll_until(
        lambda: prometheus.query(
            'ALERTS{alertname="LLMTenantBudgetExhausted", alertstate="firing", llm_tenant_id="beta"}'
        ),
        "LLMTenantBudgetExhausted firing for beta",
        timeout=60,
    )
    assert not prometheus.query('ALERTS{alertname=~"LLMTenantBudget.*", llm_tenant_id="acme"}')
