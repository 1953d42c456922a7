"""The demo services' own conventions: their metrics, span attributes and error words.

They extend the library's (:mod:`telemetry.semconv`): the metrics are registered into
``telemetry.semconv.METRICS`` when this module is imported, so the views give them their buckets and
exemplars, and the semconv test and docs/reference/metrics.md cover them. Every service module that records
one imports this module, which happens before ``configure()``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from telemetry import semconv as sc
from telemetry.semconv import COST_BUCKETS, Kind, MetricSpec, register_metrics

# ---- bucket boundaries ---------------------------------------------------------------------------------
# Our own short durations (queue waits, tokenization, stages): sub-millisecond to tens of seconds.
SHORT_DURATION_BUCKETS: Final = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128)


# ---- attribute keys ------------------------------------------------------------------------------------
LLM_STAGE: Final = "llm.stage"
LLM_CACHE_RESULT: Final = "llm.cache.result"
LLM_CACHE_EVICTION_REASON: Final = "llm.cache.eviction.reason"
LLM_OUTCOME: Final = "llm.outcome"
"""How a pipeline request ended, once per request: one of :class:`Outcome`."""
# span attributes only (never on metric points)
LLM_GATEWAY_PROVIDER: Final = "llm.gateway.provider"
"""The catalog id of the provider the gateway called (``gen_ai.provider.name`` is its semconv name)."""
LLM_GATEWAY_STREAM_CHUNKS: Final = "llm.gateway.stream.chunks"
"""Content chunks relayed to the client before a stream ended (however it ended)."""
LLM_TENANT_ID: Final = sc.LLM_TENANT_ID
"""Who sent the request: the tenant of its API key (``LLM_GATEWAY_KEY_FILE``; ``key-`` and a hash prefix
for a key of ``LLM_GATEWAY_API_KEYS``; never the key). On the gateway's spans and in the baggage the gateway
alone sets for the services behind it (the response cache and the orchestrator's coalescing are scoped by
it), and a metric label bounded by the configured tenants (``_OTHER`` for anything else)."""
LLM_TENANT_TEAM: Final = "llm.tenant.team"
"""The team the key file names for the request's key (spans only: teams are not metric labels)."""
LLM_BUDGET_LIMIT: Final = "llm.budget.limit"
"""Which limit of a tenant's budget a point is about: ``tokens`` or ``usd``."""
LLM_GATEWAY_CACHE_HIT: Final = "llm.gateway.cache.hit"
"""Whether the gateway answered from its response cache (non-streaming requests)."""
LLM_INFERENCE_GPU_SECONDS: Final = "llm.inference.gpu.seconds"
"""GPU time charged to the request: its share of each engine step it ran in (by what it computed there)."""
LLM_INFERENCE_GPU_ENERGY: Final = "llm.inference.gpu.energy"
"""Energy charged to the request, in joules, shared the same way (only when NVML measures it)."""
LLM_RETRIEVAL_DOCUMENTS: Final = "llm.retrieval.documents"
"""How many documents the retrieval stage added to the prompt."""
LLM_ORCHESTRATOR_COALESCED: Final = "llm.orchestrator.coalesced"
"""The request shared the answer of an identical one already in flight."""


class ErrorType(StrEnum):
    """The ``error.type`` values our services set, one taxonomy for every hop.

    Each service passes its caller the same value it puts on its own span, so a failure keeps one name
    from inference to the client: the OpenAI error ``type`` of the gateway's answer, the orchestrator's
    ``error`` field and the ``error.type`` of every span and metric point. Failures that are none of
    these are named by their exception type's qualified name, as the semantic conventions advise.
    """

    INVALID_REQUEST = "invalid_request_error"
    """The request is malformed or breaks a limit: 400 (OpenAI's own type name)."""
    INVALID_API_KEY = "invalid_api_key"
    REQUEST_TOO_LARGE = "request_too_large"
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    """Refused at the gateway's door: too many requests in flight (429)."""
    KEY_RATE_LIMIT_EXCEEDED = "key_rate_limit_exceeded"
    """Refused at the gateway's door: too many requests in flight for the caller's key (429)."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """Refused at the gateway's door: the tenant has used its token or spend budget for the window (429)."""
    UNSUPPORTED_PARAMETER = "unsupported_parameter"
    """Refused: the request sets a parameter the model's provider cannot honour (our pipeline) (400)."""
    REQUEST_TIMEOUT = "request_timeout"
    """The client did not send its request head or body in time (408)."""
    TOO_MANY_CONNECTIONS = "too_many_connections"
    """A connection refused at once: the gateway holds its maximum of open connections."""
    OVERLOADED = "overloaded"
    """Shed by a full pipeline stage (503)."""
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_ERROR = "upstream_error"
    """The next hop failed in a way none of the above names."""
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited"
    """The upstream provider refused with 429 (its rate limit or quota, not ours); we answer 429 too."""
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"
    """The upstream provider refused our credentials (401/403): its API key is wrong or expired (502)."""
    UPSTREAM_STREAM_BROKEN = "upstream_stream_broken"
    """The upstream's stream ended before its end: connection lost, a malformed event, or no [DONE]."""
    CANCELLED = "cancelled"
    """The caller went away before the answer was complete."""


class Outcome(StrEnum):
    """The values of ``llm.outcome``."""

    OK = "ok"
    ERROR = "error"
    SHED = "shed"
    """Refused by a full stage, before or during the answer."""
    CANCELLED = "cancelled"
    """The caller went away before the answer was complete."""


OPERATION_RETRIEVAL: Final = "retrieval"


def _h(name: str, unit: str, description: str, buckets: tuple[float, ...]) -> MetricSpec:
    return MetricSpec(name, unit, Kind.HISTOGRAM, description, buckets)


# ---- metrics ---------------------------------------------------------------------------------------
# gateway
LLM_GATEWAY_CACHE_REQUESTS: Final = MetricSpec(
    "llm.gateway.cache.requests",
    "{request}",
    Kind.COUNTER,
    "Response-cache lookups, by llm.cache.result (hit or miss).",
)
LLM_GATEWAY_CACHE_ENTRIES: Final = MetricSpec(
    "llm.gateway.cache.entries", "{entry}", Kind.OBSERVABLE_GAUGE, "Entries held in the response cache."
)
LLM_GATEWAY_CACHE_EVICTIONS: Final = MetricSpec(
    "llm.gateway.cache.evictions",
    "{entry}",
    Kind.COUNTER,
    "Entries dropped from the response cache, by llm.cache.eviction.reason (capacity or expired).",
)
LLM_GATEWAY_BUDGET_UTILIZATION: Final = MetricSpec(
    "llm.gateway.budget.utilization",
    "1",
    Kind.OBSERVABLE_GAUGE,
    "Share of a tenant's budget used in the current window (0..1, past 1 once exceeded), by llm.tenant.id "
    "and llm.budget.limit (tokens or usd); with LLM_GATEWAY_BUDGET_REPLICAS, of this replica's part.",
)
LLM_GATEWAY_REJECTED_REQUESTS: Final = MetricSpec(
    "llm.gateway.rejected_requests",
    "{request}",
    Kind.COUNTER,
    "Requests refused before reaching the upstream, by error.type (auth, validation, overload, ...).",
)

# orchestrator
LLM_ORCHESTRATOR_STAGE_DURATION: Final = _h(
    "llm.orchestrator.stage.duration",
    "s",
    "Duration of one pipeline stage, by llm.stage.",
    SHORT_DURATION_BUCKETS,
)
LLM_ORCHESTRATOR_QUEUE_DURATION: Final = _h(
    "llm.orchestrator.queue.duration",
    "s",
    "Time a request waited for a slot in a stage, by llm.stage.",
    SHORT_DURATION_BUCKETS,
)
LLM_ORCHESTRATOR_QUEUE_SIZE: Final = MetricSpec(
    "llm.orchestrator.queue.size",
    "{request}",
    Kind.OBSERVABLE_GAUGE,
    "Requests waiting or running in a stage's bounded queue, by llm.stage.",
)
LLM_ORCHESTRATOR_QUEUE_LIMIT: Final = MetricSpec(
    "llm.orchestrator.queue.limit", "{request}", Kind.OBSERVABLE_GAUGE, "Capacity of a stage's queue."
)
LLM_ORCHESTRATOR_SHED_REQUESTS: Final = MetricSpec(
    "llm.orchestrator.shed_requests",
    "{request}",
    Kind.COUNTER,
    "Requests shed because a stage's queue was full, by llm.stage.",
)
LLM_ORCHESTRATOR_ERRORS: Final = MetricSpec(
    "llm.orchestrator.errors", "{error}", Kind.COUNTER, "Pipeline failures, by llm.stage and error.type."
)
LLM_ORCHESTRATOR_COALESCED_REQUESTS: Final = MetricSpec(
    "llm.orchestrator.coalesced_requests",
    "{request}",
    Kind.COUNTER,
    "Requests answered by joining an identical request already in flight.",
)
LLM_ORCHESTRATOR_REQUESTS: Final = MetricSpec(
    "llm.orchestrator.requests", "{request}", Kind.COUNTER, "Pipeline requests completed, by outcome."
)

# inference
LLM_INFERENCE_QUEUE_DURATION: Final = _h(
    "llm.inference.queue.duration",
    "s",
    "Time a request waited from its arrival at the engine to its first admission into the batch.",
    SHORT_DURATION_BUCKETS,
)
LLM_INFERENCE_BATCH_SIZE: Final = MetricSpec(
    "llm.inference.batch.size",
    "{request}",
    Kind.HISTOGRAM,
    "Requests in the continuous batch at each engine step (recorded in the batch span).",
    BATCH_SIZE_BUCKETS,
)
LLM_INFERENCE_TOKENIZATION_DURATION: Final = _h(
    "llm.inference.tokenization.duration", "s", "Time to tokenize a prompt.", SHORT_DURATION_BUCKETS
)
LLM_INFERENCE_TOKENS: Final = MetricSpec(
    "llm.inference.tokens",
    "{token}",
    Kind.COUNTER,
    "Tokens processed by the model server, by gen_ai.token.type (input, output); cancelled streams count "
    "what they produced.",
)
LLM_INFERENCE_COST: Final = MetricSpec(
    "llm.inference.cost",
    "{USD}",
    Kind.HISTOGRAM,
    "Cost of each self-hosted request, its share of the GPU time (and measured energy) of the engine steps "
    "it ran in, priced from the catalog, by gen_ai.request.model and llm.tenant.id.",
    COST_BUCKETS,
)

METRICS: Final = tuple(spec for spec in globals().copy().values() if isinstance(spec, MetricSpec))
"""The services' metrics, in declaration order."""
register_metrics(*METRICS)
