"""The LLM serving overview: HTTP, GenAI per model and provider, the pipeline's queues, GPUs, span metrics.

Every latency panel plots exemplars on the raw ``_bucket`` series (a recorded series has none): the
Prometheus datasource links each to its trace in Jaeger.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy import series_names as n
from deploy.grafana.generate._build import (
    OVERVIEW,
    PIPELINE_HEALTH,
    PanelBuilder,
    Query,
    agg,
    dashboard_model,
    dashed,
    grouped,
    label_variable,
    quantile,
    rate,
    ratio,
    right_axis,
    select,
    series,
    stat,
    timeseries,
)
from services.common import semconv as svc
from telemetry import semconv as s
from telemetry.semconv import MetricSpec

JOB = 'job=~"$job"'
MODEL = 'gen_ai_request_model=~"$model"'
PROVIDER = 'gen_ai_provider_name=~"$provider"'
SERVER_SPANS = 'span_kind="SPAN_KIND_SERVER"'
EXEMPLARS = " (exemplars → traces)"
"""Title suffix of the panels whose p95 plots exemplars."""

ENGINE_MODEL = MODEL
"""The engine panels filter on the model alone: a vLLM fleet mapped onto our names (deploy/prometheus/vllm/)
has jobs of its own."""

HTTP = s.HTTP_SERVER_REQUEST_DURATION
TTFT = s.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
TPOT = s.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN
INFERENCE = s.GEN_AI_SERVER_REQUEST_DURATION
PROVIDER_CALLS = s.GEN_AI_CLIENT_INFERENCE_DURATION
"""Provider calls, under the 2026 GenAI name; every GenAI client panel falls back to the pre-2026 one
(:func:`genai_client`), so the dashboards serve any LLM_TELEMETRY_GENAI_SEMCONV."""
LEGACY_PROVIDER_CALLS = s.GEN_AI_CLIENT_OPERATION_DURATION
COST = s.GEN_AI_CLIENT_OPERATION_COST
TENANT = 'llm_tenant_id=~"$tenant"'


def genai_client(latest: str, legacy: str) -> str:
    """``latest`` where the 2026 GenAI names have data, else ``legacy`` (PromQL ``or`` keeps the left side's
    series and adds the right side's only for label sets the left lacks): one query for all three settings,
    and a fleet mid-migration. Under ``both`` the latest series win, so nothing counts twice."""
    return f"({latest}) or ({legacy})"


def _quantiles(spec: MetricSpec, label: str, matchers: str) -> list[Query]:
    """p50, p95 and p99 of ``spec`` per ``label``; exemplars on the p95."""
    return [
        Query(quantile(q, label, series(spec, "bucket"), matchers), f"p{q[2:]} {{{{{label}}}}}", q == "0.95")
        for q in ("0.50", "0.95", "0.99")
    ]


def _p95(spec: MetricSpec, label: str, matchers: str) -> Query:
    return Query(quantile("0.95", label, series(spec, "bucket"), matchers), f"{{{{{label}}}}}", exemplar=True)


def _per_gpu(spec: MetricSpec, extra_label: str = "", prefix: str = "") -> Query:
    labels = ", ".join(["instance", "hw_id", *([extra_label] if extra_label else [])])
    return grouped("max", labels, series(spec), prefix)


def _sum_rate(
    labels: str, spec: MetricSpec, matchers: str = JOB, suffix: str = "", prefix: str = ""
) -> Query:
    """Per second, summed per ``labels``: a counter, or a histogram's ``suffix`` series."""
    return grouped("sum", labels, rate(series(spec, suffix), matchers), prefix)


def _provider_calls(label: str, matchers: str) -> Query:
    """GenAI client calls per second by ``label`` (under either vocabulary: :func:`genai_client`)."""
    return Query(
        genai_client(
            agg("sum", label, rate(series(PROVIDER_CALLS, "count"), matchers)),
            agg("sum", label, rate(series(LEGACY_PROVIDER_CALLS, "count"), matchers)),
        ),
        f"{{{{{label}}}}}",
    )


def _tokens_per_second(per: str, label: str, matchers: str) -> PanelBuilder:
    return timeseries(
        f"Tokens per second by {per}",
        f"{s.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS.name} and .output_tokens summed per second per {per} "
        f"(or {s.GEN_AI_CLIENT_TOKEN_USAGE.name} under the pre-2026 names), and the input tokens the "
        "provider served from its cache (our pipeline: the engine's prefix cache).",
        "short",
        *(
            Query(
                genai_client(
                    agg("sum", label, rate(series(latest), matchers)),
                    agg(
                        "sum",
                        label,
                        rate(
                            series(s.GEN_AI_CLIENT_TOKEN_USAGE, "sum"),
                            f'{matchers}, gen_ai_token_type="{kind}"',
                        ),
                    ),
                ),
                f"{{{{{label}}}}} {kind}",
            )
            for kind, latest in (
                ("input", s.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS),
                ("output", s.GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS),
            )
        ),
        Query(
            agg(
                "sum", label, rate(series(s.GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS), matchers)
            ),
            f"{{{{{label}}}}} cached input",
        ),
        stacked=True,
    )


def _http() -> list[PanelBuilder]:
    count = series(HTTP, "count")
    return [
        stat(
            "Requests / s",
            "All HTTP requests served, summed over the selected services.",
            "reqps",
            agg("sum", "", rate(count, JOB)),
            steps=[("green", None)],
            decimals=2,
        ),
        stat(
            "5xx error ratio",
            "Share of HTTP requests answered 5xx over 5 minutes (recording rule). Alert LLMHighErrorRate "
            "fires above 5 %.",
            "percentunit",
            agg("max", "", select(n.HTTP_ERROR_RATIO, JOB)),
            steps=[("green", None), ("orange", 0.01), ("red", 0.05)],
        ),
        stat(
            "p95 latency",
            f"Worst service's p95 of {HTTP.name} over 5 minutes. Alert LLMHighLatencyP95 fires above 5 s.",
            "s",
            agg("max", "", select(n.HTTP_P95, JOB)),
            steps=[("green", None), ("orange", 2), ("red", 5)],
        ),
        stat(
            "Cache hit ratio",
            "Response-cache hits over lookups, 5 minutes (recording rule).",
            "percentunit",
            agg("avg", "", n.CACHE_HIT_RATIO),
            steps=[("red", None), ("orange", 0.3), ("green", 0.5)],
        ),
        timeseries(
            "Request rate by service",
            "HTTP requests per second per service (job = service.name).",
            "reqps",
            _sum_rate("job", HTTP, suffix="count"),
        ),
        ratio(
            "5xx error ratio by service",
            f"Recording rule {n.HTTP_ERROR_RATIO}: 0 when a service has no errors, so silence and health "
            "look different.",
            Query(select(n.HTTP_ERROR_RATIO, JOB), "{{job}}"),
        ),
        timeseries(
            f"HTTP latency p50 / p95 / p99{EXEMPLARS}",
            f"Quantiles of {HTTP.name} per service. The dots are exemplars: click one to open that "
            "request's trace in Jaeger.",
            "s",
            *_quantiles(HTTP, "job", JOB),
        ),
        timeseries(
            "5xx responses by route and error type",
            "Which routes fail, and how (error.type). Empty while nothing fails.",
            "reqps",
            _sum_rate(
                "job, http_route, error_type", HTTP, f'{JOB}, http_response_status_code=~"5.."', "count"
            ),
        ),
        timeseries(
            "p95 latency by route",
            f"Recording rule {n.HTTP_ROUTE_P95}.",
            "s",
            Query(select(n.HTTP_ROUTE_P95, JOB), "{{job}} {{http_route}}"),
        ),
        timeseries(
            "Requests refused at the gateway",
            f"{svc.LLM_GATEWAY_REJECTED_REQUESTS.name} by error.type (auth, validation, overload). "
            "Empty while nothing is refused.",
            "reqps",
            _sum_rate("error_type", svc.LLM_GATEWAY_REJECTED_REQUESTS, ""),
        ),
    ]


def _genai() -> list[PanelBuilder]:
    return [
        timeseries(
            f"Time to first token p50 / p95 / p99 by model{EXEMPLARS}",
            f"{TTFT.name}: queueing plus prefill. Exemplars open the trace.",
            "s",
            *_quantiles(TTFT, "gen_ai_request_model", MODEL),
        ),
        timeseries(
            f"Time per output token p50 / p95 / p99 by model{EXEMPLARS}",
            f"{TPOT.name}: decode time per token after the first. Exemplars open the trace.",
            "s",
            *_quantiles(TPOT, "gen_ai_request_model", MODEL),
        ),
        timeseries(
            f"Inference request duration p95 by model{EXEMPLARS}",
            f"{INFERENCE.name}: request receipt to the last output token.",
            "s",
            _p95(INFERENCE, "gen_ai_request_model", MODEL),
        ),
        timeseries(
            "Inference requests by model",
            "Completed inference requests per second per model.",
            "reqps",
            _sum_rate("gen_ai_request_model", INFERENCE, MODEL, "count"),
        ),
        _tokens_per_second("model", "gen_ai_request_model", MODEL),
        timeseries(
            "Provider calls per second",
            f"{PROVIDER_CALLS.name} (or {LEGACY_PROVIDER_CALLS.name}) count per provider.",
            "reqps",
            _provider_calls("gen_ai_provider_name", PROVIDER),
        ),
        timeseries(
            f"Provider call p95{EXEMPLARS}",
            f"{PROVIDER_CALLS.name} (or {LEGACY_PROVIDER_CALLS.name}) p95 per provider.",
            "s",
            Query(
                genai_client(
                    quantile("0.95", "gen_ai_provider_name", series(PROVIDER_CALLS, "bucket"), PROVIDER),
                    quantile(
                        "0.95", "gen_ai_provider_name", series(LEGACY_PROVIDER_CALLS, "bucket"), PROVIDER
                    ),
                ),
                "{{gen_ai_provider_name}}",
                exemplar=True,
            ),
        ),
        ratio(
            "Provider error ratio",
            "Share of provider calls with an error.type, 5 minutes (recording rule). Alert "
            "LLMProviderHighErrorRate fires above 20 %.",
            Query(select(n.PROVIDER_ERROR_RATIO, PROVIDER), "{{gen_ai_provider_name}}"),
        ),
        timeseries(
            "Estimated spend per hour by provider and model",
            f"{COST.name}: each call's cost (the upstream's own figure, our pipeline's from the GPU time the "
            "request used, else the tokens it reported times the catalog's prices), in USD per hour "
            "(recording rule × 3600). Cache hits cost nothing; a call that reported no usage (a stream the "
            "client cancelled) is not counted. Total spend: sum(gen_ai_client_operation_cost_sum).",
            "currencyUSD",
            Query(
                f"{select(n.COST_RATE, PROVIDER)} * 3600",
                "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
            ),
            stacked=True,
        ),
    ]


def _tenants() -> list[PanelBuilder]:
    return [
        timeseries(
            "Requests per tenant",
            f"{PROVIDER_CALLS.name} (or {LEGACY_PROVIDER_CALLS.name}) count per llm.tenant.id (the key "
            "file's tenants; _OTHER for none of them), at the gateway.",
            "reqps",
            _provider_calls("llm_tenant_id", TENANT),
            stacked=True,
        ),
        _tokens_per_second("tenant", "llm_tenant_id", TENANT),
        timeseries(
            "Spend per hour per tenant",
            f"{COST.name} per tenant, USD per hour (recording rule × 3600).",
            "currencyUSD",
            Query(f"{select(n.TENANT_COST_RATE, TENANT)} * 3600", "{{llm_tenant_id}}"),
            stacked=True,
        ),
        timeseries(
            f"Request cost p99 per tenant{EXEMPLARS}",
            f"{COST.name}: the dearest requests' cost per tenant; each exemplar opens an expensive request's "
            f"trace. A self-hosted request's cost is its share of the GPU time (and energy) of the engine "
            f"steps it ran in ({svc.LLM_INFERENCE_COST.name} at the inference server).",
            "currencyUSD",
            Query(
                quantile("0.99", "llm_tenant_id", series(COST, "bucket"), TENANT), "{{llm_tenant_id}}", True
            ),
        ),
        timeseries(
            f"Time to first token p95 per tenant (server side){EXEMPLARS}",
            f"{TTFT.name} at the inference server, per tenant (from the gateway's baggage).",
            "s",
            _p95(TTFT, "llm_tenant_id", TENANT),
        ),
        ratio(
            "Budget used per tenant",
            f"{svc.LLM_GATEWAY_BUDGET_UTILIZATION.name}: share of each tenant's token or spend budget used "
            "in the current window (max across gateway replicas). Alerts LLMTenantBudgetNearlySpent at "
            "80 %, LLMTenantBudgetExhausted at 100 % (requests then get 429 budget_exceeded).",
            grouped(
                "max",
                "llm_tenant_id, llm_budget_limit",
                select(svc.LLM_GATEWAY_BUDGET_UTILIZATION.prometheus_name, TENANT),
            ),
        ),
        timeseries(
            "Refusals per tenant",
            f"{svc.LLM_GATEWAY_REJECTED_REQUESTS.name} per tenant and error.type (budget, per-key limit, "
            "validation); refusals before the key is known carry no tenant.",
            "reqps",
            _sum_rate("llm_tenant_id, error_type", svc.LLM_GATEWAY_REJECTED_REQUESTS, TENANT),
            stacked=True,
        ),
    ]


def _pipeline() -> list[PanelBuilder]:
    batch = series(svc.LLM_INFERENCE_BATCH_SIZE, "bucket")
    return [
        timeseries(
            "Orchestrator queue depth per stage",
            f"{svc.LLM_ORCHESTRATOR_QUEUE_SIZE.name} against its limit (dashed). Shedding starts when a "
            "stage's queue is full.",
            "short",
            grouped("sum", "llm_stage", select(series(svc.LLM_ORCHESTRATOR_QUEUE_SIZE), JOB)),
            grouped("sum", "llm_stage", select(series(svc.LLM_ORCHESTRATOR_QUEUE_LIMIT), JOB), "limit"),
            overrides=[dashed("^limit .*")],
        ),
        ratio(
            "Queue saturation per stage",
            "Queue size over limit (recording rule). Alert LLMQueueNearCapacity fires above 90 %.",
            Query(select(n.QUEUE_SATURATION, JOB), "{{instance}} {{llm_stage}}"),
        ),
        timeseries(
            "Shed requests per stage",
            f"{svc.LLM_ORCHESTRATOR_SHED_REQUESTS.name} per second by stage. "
            "Empty until a stage first sheds.",
            "reqps",
            _sum_rate("llm_stage", svc.LLM_ORCHESTRATOR_SHED_REQUESTS),
            stacked=True,
        ),
        ratio(
            "Shed ratio",
            "Shed over all orchestrator requests, 5 minutes (recording rule). Alert LLMHighShedRate fires "
            "above 10 %.",
            Query(select(n.SHED_RATIO, JOB), "{{job}}"),
        ),
        timeseries(
            "Stage duration p95",
            f"{svc.LLM_ORCHESTRATOR_STAGE_DURATION.name} p95 per stage.",
            "s",
            _p95(svc.LLM_ORCHESTRATOR_STAGE_DURATION, "llm_stage", JOB),
        ),
        timeseries(
            "Pipeline requests by outcome",
            f"{svc.LLM_ORCHESTRATOR_REQUESTS.name} per second by llm.outcome (ok, error, shed), and pipeline "
            "errors by stage.",
            "reqps",
            _sum_rate("llm_outcome", svc.LLM_ORCHESTRATOR_REQUESTS),
            Query(select(n.STAGE_ERRORS, JOB), "errors {{llm_stage}}"),
        ),
        timeseries(
            "Requests per engine step",
            f"{svc.LLM_INFERENCE_BATCH_SIZE.name}: the continuous batch's size at each step, p50 / p95 "
            "(exemplars open the batch's own trace, whose links lead to its requests).",
            "short",
            Query(quantile("0.50", "", batch, JOB), "batch p50"),
            Query(quantile("0.95", "", batch, JOB), "batch p95", exemplar=True),
        ),
        timeseries(
            "Inference queue wait p95",
            f"{svc.LLM_INFERENCE_QUEUE_DURATION.name} p95: time spent waiting for a batch.",
            "s",
            _p95(svc.LLM_INFERENCE_QUEUE_DURATION, "job", JOB),
        ),
        timeseries(
            "Response cache lookups",
            f"{svc.LLM_GATEWAY_CACHE_REQUESTS.name} per second by result, and the hit ratio (right axis). "
            "Alert LLMLowCacheHitRate fires under 50 %.",
            "reqps",
            _sum_rate("llm_cache_result", svc.LLM_GATEWAY_CACHE_REQUESTS),
            Query(select(n.CACHE_HIT_RATIO, JOB), "hit ratio {{job}}"),
            overrides=[right_axis("^hit ratio.*", "percentunit", max_val=1)],
        ),
        timeseries(
            "Response cache entries",
            f"{svc.LLM_GATEWAY_CACHE_ENTRIES.name} per gateway instance.",
            "short",
            grouped("sum", "job, instance", select(series(svc.LLM_GATEWAY_CACHE_ENTRIES), JOB)),
        ),
    ]


def _engine() -> list[PanelBuilder]:
    waiting = 'llm_engine_request_state="waiting"'
    requests = series(s.LLM_ENGINE_REQUESTS)
    return [
        timeseries(
            "Engine requests running and waiting",
            f"{s.LLM_ENGINE_REQUESTS.name} by llm.engine.request.state per model: running holds KV blocks, "
            "waiting queues for admission (preempted requests included). Alert LLMEngineQueueGrowing fires "
            "when waiting grows while running stays flat.",
            "short",
            grouped(
                "sum",
                "gen_ai_request_model, llm_engine_request_state",
                select(series(s.LLM_ENGINE_REQUESTS), ENGINE_MODEL),
            ),
        ),
        ratio(
            "KV-cache usage",
            f"{s.LLM_ENGINE_KV_CACHE_USAGE.name}: share of the KV blocks held by requests, per model and "
            "instance. Alert LLMKVCacheUsageHigh fires above 90 % (the engine is KV-bound: admissions wait, "
            "running requests get preempted).",
            grouped(
                "max",
                "gen_ai_request_model, instance",
                select(series(s.LLM_ENGINE_KV_CACHE_USAGE), ENGINE_MODEL),
            ),
        ),
        timeseries(
            "KV-cache blocks by state",
            f"{s.LLM_ENGINE_KV_CACHE_BLOCKS.name}: used (held by requests), cached (free, keeping a reusable "
            "prefix) and free; the stack's height is the pool's size.",
            "short",
            grouped(
                "sum",
                "gen_ai_request_model, llm_engine_kv_cache_block_state",
                select(series(s.LLM_ENGINE_KV_CACHE_BLOCKS), ENGINE_MODEL),
            ),
            stacked=True,
        ),
        ratio(
            "Prefix-cache hit rate",
            f"Recording rule {n.PREFIX_CACHE_HIT_RATIO}: prompt tokens served from the prefix cache over "
            "prompt tokens looked up ({s.LLM_ENGINE_PREFIX_CACHE_HITS.name} / "
            f"{s.LLM_ENGINE_PREFIX_CACHE_QUERIES.name}).",
            Query(select(n.PREFIX_CACHE_HIT_RATIO, ENGINE_MODEL), "{{gen_ai_request_model}}"),
        ),
        timeseries(
            "Preemptions per second",
            f"{s.LLM_ENGINE_PREEMPTIONS.name}: running requests evicted for want of KV blocks (computed "
            "again later). Alert LLMHighPreemptionRate fires above one per ten finished requests.",
            "short",
            _sum_rate("gen_ai_request_model", s.LLM_ENGINE_PREEMPTIONS, ENGINE_MODEL),
        ),
        timeseries(
            "Finished requests by reason, aborted by state",
            f"{s.LLM_ENGINE_FINISHED_REQUESTS.name} per second by llm.engine.finish_reason (stop, length, "
            f"abort), and {s.LLM_ENGINE_ABORTED_REQUESTS.name} by where the caller left them (waiting, "
            "running). A rising `length` share means answers are cut at max_tokens.",
            "reqps",
            _sum_rate("llm_engine_finish_reason", s.LLM_ENGINE_FINISHED_REQUESTS, ENGINE_MODEL),
            _sum_rate(
                "llm_engine_request_state", s.LLM_ENGINE_ABORTED_REQUESTS, ENGINE_MODEL, prefix="aborted"
            ),
        ),
        timeseries(
            f"Prompt and generation length p50 / p95{EXEMPLARS}",
            f"{s.LLM_ENGINE_REQUEST_INPUT_TOKENS.name} and {s.LLM_ENGINE_REQUEST_OUTPUT_TOKENS.name}: the "
            "workload's shape. Exemplars open the request's trace.",
            "short",
            *(
                Query(quantile(q, "", series(spec, "bucket"), ENGINE_MODEL), f"{what} p{q[2:]}", q == "0.95")
                for spec, what in (
                    (s.LLM_ENGINE_REQUEST_INPUT_TOKENS, "prompt"),
                    (s.LLM_ENGINE_REQUEST_OUTPUT_TOKENS, "generation"),
                )
                for q in ("0.50", "0.95")
            ),
        ),
        timeseries(
            f"Tokens per engine step p50 / p95{EXEMPLARS}",
            f"{s.LLM_ENGINE_STEP_TOKENS.name}: prefill and decode tokens one step computed. Exemplars open "
            "the batch's trace: its span links to every request in the batch.",
            "short",
            Query(quantile("0.50", "", series(s.LLM_ENGINE_STEP_TOKENS, "bucket"), ENGINE_MODEL), "p50"),
            Query(
                quantile("0.95", "", series(s.LLM_ENGINE_STEP_TOKENS, "bucket"), ENGINE_MODEL), "p95", True
            ),
        ),
        ratio(
            "Waiting share of engine requests",
            f"{s.LLM_ENGINE_REQUESTS.name}: waiting over running plus waiting, per model; 0 while the "
            "engine is idle.",
            Query(
                f"{agg('sum', 'gen_ai_request_model', select(requests, f'{ENGINE_MODEL}, {waiting}'))}"
                f" / clamp_min({agg('sum', 'gen_ai_request_model', select(requests, ENGINE_MODEL))}, 1)",
                "{{gen_ai_request_model}}",
            ),
        ),
    ]


def _gpu() -> list[PanelBuilder]:
    def gpu(title: str, description: str, unit: str, *queries: Query) -> PanelBuilder:
        return timeseries(title, description, unit, *queries, width=8)

    return [
        ratio(
            "GPU utilization",
            f"{s.HW_GPU_UTILIZATION.name}: fraction of time the GPU was busy.",
            _per_gpu(s.HW_GPU_UTILIZATION),
            width=8,
        ),
        timeseries(
            "GPU memory",
            f"{s.HW_GPU_MEMORY_USAGE.name} against {s.HW_GPU_MEMORY_LIMIT.name} (dashed).",
            "bytes",
            _per_gpu(s.HW_GPU_MEMORY_USAGE),
            _per_gpu(s.HW_GPU_MEMORY_LIMIT, prefix="limit"),
            width=8,
            overrides=[dashed("^limit .*")],
        ),
        gpu("GPU power", f"{s.HW_POWER.name} drawn per device.", "watt", _per_gpu(s.HW_POWER)),
        gpu("GPU temperature", f"{s.HW_TEMPERATURE.name} per device.", "celsius", _per_gpu(s.HW_TEMPERATURE)),
        gpu(
            "GPU status and throttling",
            f"{s.HW_STATUS.name} of the current hw.state (1 = in that state) and {s.LLM_GPU_THROTTLED.name} "
            "by reason. Alerts GPUFailed and GPUThrottled.",
            "short",
            *(
                Query(f"{query.expr} == 1", query.legend)
                for query in (
                    _per_gpu(s.HW_STATUS, "hw_state"),
                    _per_gpu(s.LLM_GPU_THROTTLED, "llm_gpu_throttle_reason", prefix="throttled"),
                )
            ),
        ),
        gpu(
            "GPU ECC errors",
            f"{s.HW_ERRORS.name} per second by error.type (corrected, uncorrected). Uncorrected errors make "
            "hw.state degraded (alert GPUDegraded).",
            "short",
            _sum_rate("instance, hw_id, error_type", s.HW_ERRORS, ""),
        ),
        gpu(
            "GPU SM clock",
            f"{s.LLM_GPU_CLOCK_SM.name}: drops when the GPU throttles.",
            "hertz",
            _per_gpu(s.LLM_GPU_CLOCK_SM),
        ),
        timeseries(
            "GPU telemetry available",
            f"{s.LLM_TELEMETRY_GPU_AVAILABLE.name}: {s.LLM_TELEMETRY_GPU_AVAILABLE.description}",
            "short",
            grouped("max", "job, instance, llm_telemetry_reason", series(s.LLM_TELEMETRY_GPU_AVAILABLE)),
            width=8,
            max_val=1,
        ),
    ]


def _span_metrics() -> list[PanelBuilder]:
    return [
        timeseries(
            "Server span rate by service and operation",
            f"{n.SPAN_CALLS} for SERVER spans, from the Collector's span_metrics connector.",
            "reqps",
            grouped("sum", "service_name, span_name", rate(n.SPAN_CALLS, SERVER_SPANS)),
        ),
        timeseries(
            f"Server span p95 by service{EXEMPLARS}",
            f"{n.SPAN_DURATION_BUCKET.removesuffix('_bucket')} p95 for SERVER spans; the connector attaches "
            "exemplars.",
            "s",
            Query(
                quantile("0.95", "service_name", n.SPAN_DURATION_BUCKET, SERVER_SPANS),
                "{{service_name}}",
                True,
            ),
        ),
        ratio(
            "Server span error ratio",
            f"Recording rule {n.SERVER_SPAN_ERROR_RATIO}.",
            Query(n.SERVER_SPAN_ERROR_RATIO, "{{service_name}}"),
        ),
        timeseries(
            "Service graph: requests per edge",
            f"{n.SERVICE_GRAPH_REQUESTS} from the Collector's servicegraph connector: calls from client to "
            "server.",
            "reqps",
            Query(agg("sum", "client, server", rate(n.SERVICE_GRAPH_REQUESTS)), "{{client}} → {{server}}"),
        ),
    ]


def build() -> Dashboard:
    return dashboard_model(
        OVERVIEW,
        "Requests, errors and latency per service; TTFT, TPOT and tokens per model and provider; queues, "
        "shedding and cache; the engine's batch and KV cache; GPUs. Latency panels show exemplars that open "
        "the request's trace in Jaeger.",
        ["llm", "opentelemetry"],
        PIPELINE_HEALTH,
        sections=[
            ("Requests, errors, latency (HTTP, per service)", _http()),
            ("GenAI: per model and provider", _genai()),
            ("Tenants: requests, tokens, spend, latency and budgets", _tenants()),
            ("Pipeline: queues, shedding, batching, cache", _pipeline()),
            ("Engine: continuous batching and the KV cache", _engine()),
            ("GPU", _gpu()),
            ("Span metrics and service graph (100 % of spans, before sampling)", _span_metrics()),
        ],
        variables=[
            label_variable("job", "Service", series(HTTP, "count"), "job"),
            label_variable("model", "Model", series(INFERENCE, "count"), "gen_ai_request_model"),
            label_variable(
                "provider",
                "Provider",
                f'{{__name__=~"{series(PROVIDER_CALLS, "count")}|{series(LEGACY_PROVIDER_CALLS, "count")}"}}',
                "gen_ai_provider_name",
            ),
            label_variable(
                "tenant",
                "Tenant",
                f'{{__name__=~"{series(PROVIDER_CALLS, "count")}|{series(LEGACY_PROVIDER_CALLS, "count")}"}}',
                "llm_tenant_id",
            ),
        ],
    )
