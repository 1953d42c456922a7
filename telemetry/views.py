"""Views: semconv bucket boundaries, attribute allow-lists, and bounded attribute values.

Two defences against cardinality blow-ups, because one alone is not enough:

- **keys**: each metric's view keeps only the attribute keys in :data:`ATTRIBUTE_ALLOW_LISTS`, so a stray
  high-cardinality key (a request id, a URL path) added by some code path never becomes a series;
- **values**: values that come from requests (model names, routes) go through :func:`bounded` and become
  ``_OTHER`` unless registered with :func:`register_known_values`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from telemetry import semconv as sc
from telemetry.exemplars import MarkedSpans, marking_reservoir_factory
from telemetry.options import DEFAULT_EXEMPLAR_WINDOW_S

_HTTP_SERVER_KEYS = frozenset(
    {
        sc.HTTP_REQUEST_METHOD,
        sc.HTTP_ROUTE,
        sc.HTTP_RESPONSE_STATUS_CODE,
        sc.URL_SCHEME,
        sc.ERROR_TYPE,
        sc.NETWORK_PROTOCOL_NAME,
        sc.NETWORK_PROTOCOL_VERSION,
    }
)
_RPC_KEYS = frozenset({sc.RPC_SYSTEM_NAME, sc.RPC_METHOD, sc.RPC_RESPONSE_STATUS_CODE, sc.ERROR_TYPE})
_GENAI_KEYS = frozenset(
    {
        sc.GEN_AI_OPERATION_NAME,
        sc.GEN_AI_PROVIDER_NAME,
        sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.ERROR_TYPE,
        sc.SERVER_ADDRESS,
        sc.SERVER_PORT,
        sc.LLM_TENANT_ID,
    }
)

ATTRIBUTE_ALLOW_LISTS: dict[str, frozenset[str]] = {
    sc.HTTP_SERVER_REQUEST_DURATION.name: _HTTP_SERVER_KEYS,
    sc.HTTP_SERVER_REQUEST_BODY_SIZE.name: _HTTP_SERVER_KEYS,
    sc.HTTP_SERVER_RESPONSE_BODY_SIZE.name: _HTTP_SERVER_KEYS,
    sc.HTTP_SERVER_ACTIVE_REQUESTS.name: frozenset({sc.HTTP_REQUEST_METHOD, sc.URL_SCHEME}),
    sc.HTTP_CLIENT_REQUEST_DURATION.name: frozenset(
        {
            sc.HTTP_REQUEST_METHOD,
            sc.HTTP_RESPONSE_STATUS_CODE,
            sc.SERVER_ADDRESS,
            sc.SERVER_PORT,
            sc.ERROR_TYPE,
            sc.URL_SCHEME,
        }
    ),
    sc.RPC_SERVER_CALL_DURATION.name: _RPC_KEYS,
    sc.RPC_CLIENT_CALL_DURATION.name: _RPC_KEYS,
    sc.GEN_AI_CLIENT_OPERATION_DURATION.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_TOKEN_USAGE.name: _GENAI_KEYS | {sc.GEN_AI_TOKEN_TYPE},
    sc.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_INFERENCE_DURATION.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS.name: _GENAI_KEYS,
    sc.GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS.name: _GENAI_KEYS,
    **{spec.name: _GENAI_KEYS | {sc.GEN_AI_TOKEN_MODALITY} for spec in sc.GEN_AI_CLIENT_INFERENCE_USAGE},
    sc.GEN_AI_CLIENT_OPERATION_COST.name: _GENAI_KEYS
    | {sc.GEN_AI_USAGE_COST_CURRENCY, sc.GEN_AI_USAGE_COST_SOURCE},
    sc.GEN_AI_SERVER_REQUEST_DURATION.name: _GENAI_KEYS,
    sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.name: _GENAI_KEYS,
    sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.name: _GENAI_KEYS,
}


def default_views(
    exemplar_window_s: float = DEFAULT_EXEMPLAR_WINDOW_S, marked: MarkedSpans | None = None
) -> list[View]:
    """One view per metric in :data:`telemetry.semconv.METRICS`: its semconv buckets, its attribute
    allow-list, and a :class:`~telemetry.exemplars.MarkingReservoir` (exemplars chosen at record time,
    their spans marked), counting the marks in ``marked``."""
    reservoirs = marking_reservoir_factory(exemplar_window_s, marked or MarkedSpans())
    views = []
    for spec in sc.METRICS.values():
        aggregation = ExplicitBucketHistogramAggregation(list(spec.buckets)) if spec.buckets else None
        keys = ATTRIBUTE_ALLOW_LISTS.get(spec.name)
        views.append(
            View(
                instrument_name=spec.name,
                aggregation=aggregation,
                attribute_keys=set(keys) if keys is not None else None,
                exemplar_reservoir_factory=reservoirs,
            )
        )
    return views


DEFAULT_VIEWS: list[View] = default_views()
""":func:`default_views` with the default exemplar window, for a MeterProvider of your own: the library's
metrics. After ``telemetry.semconv.register_metrics(...)``, call :func:`default_views` to cover those too."""


_known: dict[str, frozenset[str]] = {}
_known_lock = threading.Lock()


def register_known_values(key: str, values: Iterable[str]) -> None:
    """Declare the legitimate values of a request-supplied attribute (e.g. the served model names)."""
    with _known_lock:
        _known[key] = _known.get(key, frozenset()) | frozenset(values)


def clear_known_values() -> None:
    """Forget every registration (tests)."""
    with _known_lock:
        _known.clear()


def bounded(key: str, value: str) -> str:
    """``value`` if registered for ``key`` (or nothing is registered for ``key``), else ``_OTHER``.

    With no registration a key is unbounded by design: keys whose values we control (stage names) need none.
    """
    allowed = _known.get(key)
    if allowed is None or value in allowed:
        return value
    return sc.OTHER
