"""Small typed HTTP clients for the two backends the tests and tools read from: Prometheus and Jaeger."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx


class BackendError(RuntimeError):
    """A backend answered with an error status or an unexpected body."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[float, float]]
    """(unix time, value) pairs."""


@dataclass(frozen=True)
class Exemplar:
    labels: dict[str, str]
    value: float
    timestamp: float

    @property
    def trace_id(self) -> str | None:
        """The trace id whichever way the writer spelled the label (OTel ``trace_id``; ``traceID`` as
        Tempo's metrics-generator writes it)."""
        return self.labels.get("trace_id") or self.labels.get("traceID")


@dataclass(frozen=True)
class ExemplarSeries:
    series_labels: dict[str, str]
    exemplars: list[Exemplar]


class PrometheusClient:
    """``/api/v1`` queries; every call raises :class:`BackendError` unless Prometheus says success."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        response = self._http.get(path, params=params)
        try:
            body = response.json()
        except ValueError:
            status, text = response.status_code, response.text[:200]
            raise BackendError(f"GET {path}: HTTP {status}, not JSON: {text!r}") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise BackendError(f"GET {path} {params}: HTTP {response.status_code}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query; only vector results (one sample per series) are supported."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] != "vector":
            raise BackendError(f"query {expr!r} gave a {data['resultType']}, not a vector")
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query: each series' samples at ``start``, ``start + step``, ... ``end``."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        data = self._get("/api/v1/query_range", params)
        if data["resultType"] != "matrix":
            raise BackendError(f"range query {expr!r} gave a {data['resultType']}, not a matrix")
        return [
            Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    def query_exemplars(self, expr: str, start: float, end: float) -> list[ExemplarSeries]:
        data = self._get(
            "/api/v1/query_exemplars", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )
        return [
            ExemplarSeries(
                dict(s["seriesLabels"]),
                [
                    Exemplar(dict(e["labels"]), float(e["value"]), float(e["timestamp"]))
                    for e in s["exemplars"]
                ],
            )
            for s in data or []
        ]

    def series(
        self, match: str, start: float | None = None, end: float | None = None
    ) -> list[dict[str, str]]:
        params = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        return [dict(s) for s in self._get("/api/v1/series", params)]


@dataclass(frozen=True)
class Span:
    """One span of a trace as the trace store returned it, ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    """``SPAN_KIND_SERVER``, ``SPAN_KIND_CLIENT``, ..."""
    service_name: str
    start_ns: int
    end_ns: int
    status_code: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()
    """(trace id, span id) of each span this one links to."""


class JaegerClient:
    """Jaeger v2's query API, through its OTLP-shaped ``/api/v3`` endpoints.

    Every call raises :class:`BackendError` on an unexpected status; "not stored (yet)" is ``None`` or
    an empty list, so callers can poll.
    """

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> str | None:
        response = self._http.get(path, params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise BackendError(
                f"GET {path} {params or ''}: HTTP {response.status_code} {response.text[:200]!r}"
            )
        return response.text

    def get_trace_json(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as OTLP JSON (``{"resourceSpans": [...]}``), or ``None`` while Jaeger lacks it."""
        path = f"/api/v3/traces/{trace_id}"
        text = self._get(path)
        return None if text is None else read_v3_traces(text, path)

    def get_trace(self, trace_id: str) -> list[Span]:
        """The trace's spans (empty while Jaeger does not have it), in the order Jaeger returned them."""
        body = self.get_trace_json(trace_id)
        return [] if body is None else spans_from_otlp_json(body)

    def trace_ids(self, service: str, start: float, end: float, limit: int = 20_000) -> set[str]:
        """Ids of the stored traces with a span of ``service`` starting between ``start`` and ``end``
        (unix seconds), at most ``limit`` of them."""
        params = {
            "query.service_name": service,
            "query.start_time_min": _rfc3339(start),
            "query.start_time_max": _rfc3339(end),
            "query.num_traces": str(limit),
        }
        text = self._get("/api/v3/traces", params)
        if text is None:
            return set()
        return {span.trace_id for span in spans_from_otlp_json(read_v3_traces(text, "/api/v3/traces"))}


def _rfc3339(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")


def read_v3_traces(text: str, what: str = "Jaeger response") -> dict[str, Any]:
    """A body of Jaeger's ``/api/v3/traces`` endpoints as one OTLP JSON ``{"resourceSpans": [...]}``.

    Jaeger streams a large answer as several ``{"result": {"resourceSpans": ...}}`` objects one after
    another, and reports a failure inside the body as ``{"error": ...}``.
    """
    resource_spans: list[Any] = []
    for chunk in _json_objects(text, what):
        resource_spans.extend((chunk.get("result") or {}).get("resourceSpans") or [])
    return {"resourceSpans": resource_spans}


def _json_objects(text: str, what: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    pos = 0
    try:
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                break
            obj, pos = decoder.raw_decode(text, pos)
            objects.append(obj)
    except ValueError as exc:
        raise BackendError(f"{what}: not JSON ({exc}): {text[:200]!r}") from None
    for obj in objects:
        if "error" in obj:
            raise BackendError(f"{what}: {obj['error']}")
    return objects


def spans_from_otlp_json(body: dict[str, Any]) -> list[Span]:
    """Flatten OTLP JSON (the standard ``resourceSpans``, or Tempo's ``batches``) into spans."""
    spans: list[Span] = []
    for batch in body.get("batches") or body.get("resourceSpans") or []:
        resource = _attributes((batch.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name", ""))
        for scope_spans in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
            for raw in scope_spans.get("spans") or []:
                spans.append(
                    Span(
                        trace_id=_hex_id(raw.get("traceId", "")),
                        span_id=_hex_id(raw.get("spanId", "")),
                        parent_span_id=_hex_id(raw.get("parentSpanId", "")),
                        name=raw.get("name", ""),
                        kind=_kind(raw.get("kind")),
                        service_name=service,
                        start_ns=int(raw.get("startTimeUnixNano", 0)),
                        end_ns=int(raw.get("endTimeUnixNano", 0)),
                        status_code=_status((raw.get("status") or {}).get("code")),
                        attributes=_attributes(raw.get("attributes")),
                        resource=resource,
                        links=tuple(
                            (_hex_id(link.get("traceId", "")), _hex_id(link.get("spanId", "")))
                            for link in raw.get("links") or []
                        ),
                    )
                )
    return spans


_KINDS = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
          "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"]  # fmt: skip


_STATUS_CODES = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]


def _status(raw: object) -> str:
    """OTLP JSON writes the status code as a number (Jaeger) or as the enum's name."""
    if isinstance(raw, int):
        return _STATUS_CODES[raw] if 0 <= raw < len(_STATUS_CODES) else str(raw)
    return str(raw or "STATUS_CODE_UNSET")


def _kind(raw: object) -> str:
    if isinstance(raw, int):
        return _KINDS[raw] if 0 <= raw < len(_KINDS) else str(raw)
    return str(raw or "SPAN_KIND_UNSPECIFIED")


def _hex_id(raw: str) -> str:
    """OTLP JSON spells ids as hex; protobuf's canonical JSON as base64 of the bytes. Accept both."""
    if not raw:
        return ""
    if len(raw) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in raw):
        return raw.lower()
    try:
        return base64.b64decode(raw, validate=True).hex()
    except (binascii.Error, ValueError):
        return raw


def _attributes(raw: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _any_value(item.get("value") or {}) for item in raw or []}


def _any_value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values"))
    return None
