"""The pipeline health dashboard: is telemetry arriving? The Collector, reporting services, alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders.stat import Panel
from grafana_foundation_sdk.models.dashboard import Dashboard

from deploy import series_names as n
from deploy.grafana.generate._build import (
    OVERVIEW,
    PIPELINE_HEALTH,
    Query,
    agg,
    dashboard_model,
    dashed,
    grouped,
    rate,
    right_axis,
    series,
    stat,
    timeseries,
)
from telemetry import semconv as sc

SDK_PROCESSED = series(sc.OTEL_SDK_PROCESSOR_SPAN_PROCESSED)
SDK_SPANS_EXPORTED = series(sc.OTEL_SDK_EXPORTER_SPAN_EXPORTED)
SDK_POINTS_EXPORTED = series(sc.OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED)
SDK_QUEUE_SIZE = series(sc.OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE)
SDK_QUEUE_CAPACITY = series(sc.OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY)
MARKED_SPANS = series(sc.LLM_TELEMETRY_EXEMPLAR_MARKED_SPANS)
LOST = 'error_type!=""'


def _per(label: str, *metrics: tuple[str, str]) -> list[Query]:
    """One query per (legend prefix, metric): its rate summed per ``label``."""
    return [grouped("sum", label, rate(metric), prefix) for prefix, metric in metrics]


def _fill(title: str, description: str, fill: str, red: float) -> Panel:
    """The largest queue fill (size / capacity) as a stat: orange from half full, red from ``red``."""
    return stat(
        title,
        description,
        "percentunit",
        agg("max", "", fill),
        steps=[("green", None), ("orange", 0.5), ("red", red)],
    )


def build() -> Dashboard:
    queue_by = "exporter, data_type"
    queue_size = agg("max", queue_by, n.EXPORTER_QUEUE_SIZE)
    queue_capacity = agg("max", queue_by, n.EXPORTER_QUEUE_CAPACITY)
    collector = [
        stat(
            "Collector scrape up",
            "up of the Collector's own metrics endpoint (job otelcol). Alert OTelCollectorDown fires at 0.",
            "short",
            agg("min", "", f'{n.UP}{{job=~"{n.COLLECTOR_JOBS}"}}'),
            steps=[("red", None), ("green", 1)],
        ),
        stat(
            "Spans accepted / s",
            f"{n.RECEIVER_ACCEPTED_SPANS} over all receivers.",
            "short",
            agg("sum", "", rate(n.RECEIVER_ACCEPTED_SPANS)),
            steps=[("green", None)],
            decimals=1,
        ),
        stat(
            "Metric points accepted / s",
            f"{n.RECEIVER_ACCEPTED_POINTS} over all receivers.",
            "short",
            agg("sum", "", rate(n.RECEIVER_ACCEPTED_POINTS)),
            steps=[("green", None)],
            decimals=1,
        ),
        _fill(
            "Worst exporter queue fill",
            f"Largest {n.EXPORTER_QUEUE_SIZE} / capacity. Alert OTelCollectorExporterQueueNearlyFull fires "
            "above 80 %.",
            f"{queue_size} / {queue_capacity}",
            0.8,
        ),
        timeseries(
            "Accepted per receiver",
            "What the Collector took in, per receiver and signal.",
            "short",
            *_per(
                "receiver",
                ("spans", n.RECEIVER_ACCEPTED_SPANS),
                ("metric points", n.RECEIVER_ACCEPTED_POINTS),
            ),
        ),
        timeseries(
            "Refused and failed per receiver",
            "Refused: memory_limiter pushed back (senders retry, then drop). Failed: internal errors. "
            "Alert OTelCollectorRefusingData.",
            "short",
            *_per(
                "receiver",
                ("refused spans", n.RECEIVER_REFUSED_SPANS),
                ("refused metric points", n.RECEIVER_REFUSED_POINTS),
                ("failed spans", n.RECEIVER_FAILED_SPANS),
                ("failed metric points", n.RECEIVER_FAILED_POINTS),
            ),
        ),
        timeseries(
            "Dropped in processors",
            "Items in minus items out per processor and signal: what processors (memory_limiter, sampling) "
            "dropped.",
            "short",
            Query(
                f"{agg('sum', 'processor, otel_signal', rate(n.PROCESSOR_INCOMING))}"
                f" - {agg('sum', 'processor, otel_signal', rate(n.PROCESSOR_OUTGOING))}",
                "{{processor}} {{otel_signal}}",
            ),
            min_val=None,
        ),
        timeseries(
            "Sent per exporter",
            "What left the Collector, per exporter.",
            "short",
            *_per("exporter", ("spans", n.EXPORTER_SENT_SPANS), ("metric points", n.EXPORTER_SENT_POINTS)),
        ),
        timeseries(
            "Exporter queue size vs capacity",
            f"{n.EXPORTER_QUEUE_SIZE} against its capacity (dashed) per exporter.",
            "short",
            grouped("max", queue_by, n.EXPORTER_QUEUE_SIZE),
            grouped("max", queue_by, n.EXPORTER_QUEUE_CAPACITY, "capacity"),
            overrides=[dashed("^capacity .*")],
        ),
        timeseries(
            "Send and enqueue failures",
            "Lost after retries (send failed) or at a full queue (enqueue failed). Empty while nothing has "
            "failed. Alerts OTelCollectorExportFailing and OTelCollectorEnqueueFailing.",
            "short",
            *_per(
                "exporter",
                ("send failed spans", n.EXPORTER_SEND_FAILED_SPANS),
                ("send failed metric points", n.EXPORTER_SEND_FAILED_POINTS),
                ("enqueue failed spans", n.EXPORTER_ENQUEUE_FAILED_SPANS),
                ("enqueue failed metric points", n.EXPORTER_ENQUEUE_FAILED_POINTS),
            ),
        ),
        timeseries(
            "Collector memory and CPU",
            "Resident memory (left) and CPU seconds per second (right).",
            "bytes",
            grouped("max", "instance", n.PROCESS_MEMORY_RSS, "rss"),
            grouped("max", "instance", rate(n.PROCESS_CPU_SECONDS), "cpu"),
            overrides=[right_axis("^cpu .*", "short")],
        ),
    ]
    reporting = [
        timeseries(
            "Services reporting",
            "Services whose OTel SDK resource (target_info) arrived in the last 2 minutes. Alert "
            "LLMServiceNotReporting fires when one disappears.",
            "short",
            Query(
                agg("count", "job", f'last_over_time({n.TARGET_INFO}{{telemetry_sdk_name!=""}}[2m])'),
                "{{job}}",
            ),
        ),
        timeseries(
            "Firing alerts",
            "Alerts from deploy/prometheus/rules firing now, by name and severity. Empty while all is well.",
            "short",
            Query(
                agg("count", "alertname, severity", f'{n.ALERTS}{{alertstate="firing"}}'),
                "{{alertname}} ({{severity}})",
            ),
        ),
    ]
    sdk = [
        stat(
            "Lost in the services' SDKs",
            "Spans dropped at a full batching queue or after shutdown, and spans and metric points whose "
            "export failed after its retries, over the dashboard's time range, summed over the services. 0 "
            "while nothing is lost.",
            "short",
            " + ".join(
                f"(sum(increase({metric}{{{LOST}}}[$__range])) or vector(0))"
                for metric in (SDK_PROCESSED, SDK_SPANS_EXPORTED, SDK_POINTS_EXPORTED)
            ),
            steps=[("green", None), ("red", 1)],
            decimals=0,
        ),
        _fill(
            "Fullest SDK span queue",
            f"Largest {SDK_QUEUE_SIZE} / capacity over the services: at 100 % new spans are dropped "
            "(queue_full).",
            f"{SDK_QUEUE_SIZE} / {SDK_QUEUE_CAPACITY}",
            0.9,
        ),
        timeseries(
            "SDK outcomes per service",
            "What each service's OTel SDK did with its telemetry (semconv otel.sdk.* self-metrics): spans "
            "handed to the exporter or dropped (error_type queue_full, already_shutdown), and spans and "
            "metric points delivered or lost (error_type: why). The Collector counts its own losses above.",
            "short",
            grouped("sum", "job, error_type", rate(SDK_PROCESSED), "processed"),
            grouped("sum", "job, error_type", rate(SDK_SPANS_EXPORTED), "spans exported"),
            grouped("sum", "job, error_type", rate(SDK_POINTS_EXPORTED), "points exported"),
        ),
        timeseries(
            "SDK span queue per service",
            f"{SDK_QUEUE_SIZE} against its capacity (dashed): a queue that stays full drops spans.",
            "short",
            grouped("max", "job", SDK_QUEUE_SIZE),
            grouped("max", "job", SDK_QUEUE_CAPACITY, "capacity"),
            overrides=[dashed("^capacity .*")],
        ),
    ]
    kept = rate(n.TAIL_SAMPLED_TRACES, 'sampled="true"')
    guarantee = [
        stat(
            "Traces kept by sampling",
            "Share of the traces the Collector's tail sampling decided that it kept (every exemplar's trace, "
            "server errors, slow traces and the configured share of the rest). Empty without "
            "overlay-tail-sampling.yaml: then every trace is kept.",
            "percentunit",
            f"{agg('sum', '', kept)} / {agg('sum', '', rate(n.TAIL_SAMPLED_TRACES))}",
            steps=[("green", None)],
            decimals=1,
        ),
        stat(
            "Spans marked per second",
            f"{MARKED_SPANS} summed over the services: measurements that became exemplars mark their span "
            "for the sampler to keep; bounded by the series and buckets with data, not by traffic.",
            "short",
            agg("sum", "", rate(MARKED_SPANS)),
            steps=[("green", None)],
            decimals=1,
        ),
        timeseries(
            "Traces kept per sampling policy",
            "Traces each policy voted to keep per second; a trace two policies keep counts in both. "
            "keep-exemplars is what the exemplar guarantee costs beyond the others.",
            "short",
            grouped("sum", "policy", rate(n.TAIL_SAMPLED_TRACES_BY_POLICY, 'sampled="true"')),
            Query(agg("sum", "", rate(n.TAIL_SAMPLED_TRACES)), "decided"),
        ),
        timeseries(
            "Spans marked as exemplar carriers",
            f"{MARKED_SPANS} per service: spans whose measurement became an exemplar, marked "
            "llm.exemplar=true for the sampler to keep (at most one per series, bucket and exemplar window). "
            "Whether each exemplar resolves to a kept trace, and the buckets' coverage, need the trace "
            "store: the main job's drilldown and report measure them.",
            "short",
            grouped("sum", "job", rate(MARKED_SPANS)),
        ),
    ]
    return dashboard_model(
        PIPELINE_HEALTH,
        "Is telemetry arriving? The Collector's receivers, processors, exporters and queues, the services "
        "that report, and the alerts that fire.",
        ["llm", "opentelemetry", "collector"],
        OVERVIEW,
        sections=[
            ("Collector", collector),
            ("Services' SDK pipeline", sdk),
            ("Exemplar guarantee", guarantee),
            ("Alerts and reporting services", reporting),
        ],
    )
