"""The series names the dashboards read that telemetry/semconv.py does not define, each written once.

Our own metrics are named through their :class:`~telemetry.semconv.MetricSpec` (see ``_build.series``);
what is here comes from elsewhere: the Collector's connectors and self-metrics (otelcol-llm with
collector/config/base.yaml), Prometheus itself, and our recording rules. tests/support/promql.py's
``known_names`` checks every one against what really reaches Prometheus.
"""

from __future__ import annotations

from typing import Final

# ---- the Collector's span_metrics and servicegraph connectors (100 % of spans, before sampling) -------
SPAN_CALLS: Final = "traces_span_metrics_calls_total"
SPAN_DURATION_BUCKET: Final = "traces_span_metrics_duration_seconds_bucket"
SERVICE_GRAPH_REQUESTS: Final = "traces_service_graph_request_total"

# ---- the Collector's own telemetry (counters carry no _total suffix) ------------------------------------
RECEIVER_ACCEPTED_SPANS: Final = "otelcol_receiver_accepted_spans"
RECEIVER_ACCEPTED_POINTS: Final = "otelcol_receiver_accepted_metric_points"
RECEIVER_REFUSED_SPANS: Final = "otelcol_receiver_refused_spans"
RECEIVER_REFUSED_POINTS: Final = "otelcol_receiver_refused_metric_points"
RECEIVER_FAILED_SPANS: Final = "otelcol_receiver_failed_spans"
RECEIVER_FAILED_POINTS: Final = "otelcol_receiver_failed_metric_points"
PROCESSOR_INCOMING: Final = "otelcol_processor_incoming_items"
PROCESSOR_OUTGOING: Final = "otelcol_processor_outgoing_items"
EXPORTER_SENT_SPANS: Final = "otelcol_exporter_sent_spans"
EXPORTER_SENT_POINTS: Final = "otelcol_exporter_sent_metric_points"
EXPORTER_SEND_FAILED_SPANS: Final = "otelcol_exporter_send_failed_spans"
EXPORTER_SEND_FAILED_POINTS: Final = "otelcol_exporter_send_failed_metric_points"
EXPORTER_ENQUEUE_FAILED_SPANS: Final = "otelcol_exporter_enqueue_failed_spans"
EXPORTER_ENQUEUE_FAILED_POINTS: Final = "otelcol_exporter_enqueue_failed_metric_points"
EXPORTER_QUEUE_SIZE: Final = "otelcol_exporter_queue_size"
EXPORTER_QUEUE_CAPACITY: Final = "otelcol_exporter_queue_capacity"
PROCESS_MEMORY_RSS: Final = "otelcol_process_memory_rss"
PROCESS_CPU_SECONDS: Final = "otelcol_process_cpu_seconds"
# The tail_sampling processor (collector/config/overlay-tail-sampling.yaml; absent without it).
TAIL_SAMPLED_TRACES: Final = "otelcol_processor_tail_sampling_global_count_traces_sampled"
"""Traces decided, ``sampled="true"`` for kept."""
TAIL_SAMPLED_TRACES_BY_POLICY: Final = "otelcol_processor_tail_sampling_count_traces_sampled"
"""Per ``policy``: traces it voted to keep (``sampled="true"``); a trace kept by two policies counts twice."""
COLLECTOR_JOBS: Final = "otelcol|otelcol-exporter"
"""Prometheus jobs that scrape the Collector: its own metrics endpoint and its prometheus exporter."""

# ---- Prometheus ----------------------------------------------------------------------------------------
UP: Final = "up"
TARGET_INFO: Final = "target_info"
ALERTS: Final = "ALERTS"

# ---- recording rules (deploy/prometheus/rules/recording.yml) -------------------------------------------
HTTP_ERROR_RATIO: Final = "job:http_server_request_error_ratio:rate5m"
HTTP_P95: Final = "job:http_server_request_duration_seconds:p95_rate5m"
HTTP_ROUTE_P95: Final = "job_route:http_server_request_duration_seconds:p95_rate5m"
CACHE_HIT_RATIO: Final = "job:llm_gateway_cache_hit_ratio:rate5m"
PROVIDER_ERROR_RATIO: Final = "provider:gen_ai_client_operation_error_ratio:rate5m"
COST_RATE: Final = "provider_model:llm_gateway_cost_usd:rate5m"
"""Estimated spend, USD per second, per provider and model."""
QUEUE_SATURATION: Final = "stage:llm_orchestrator_queue:saturation"
SHED_RATIO: Final = "job:llm_orchestrator_shed_ratio:rate5m"
STAGE_ERRORS: Final = "stage:llm_orchestrator_errors:rate5m"
PREFIX_CACHE_HIT_RATIO: Final = "model:llm_engine_prefix_cache_hit_ratio:rate5m"
"""Prompt tokens served from the engine's prefix cache over those looked up, per model."""
SERVER_SPAN_ERROR_RATIO: Final = "service:traces_span_metrics_server_error_ratio:rate5m"
