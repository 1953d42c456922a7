"""Hostile input at volume, against the real gateway (and the orchestrator and inference behind it): every
refusal is a 4xx in OpenAI's error shape that the OpenAPI document declares for the route, never a 5xx;
malformed trace context is dropped, not propagated; metric series stay bounded; the services keep serving.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
from services.gateway.app import create_app as create_gateway
from services.gateway.tenants import anonymous_tenant_id, key_digest
from services.orchestrator.app import create_app as create_orchestrator
from telemetry import testing
from tests.support.openapi import CHAT, assert_matches_contract, assert_refused, openapi_document, validator
from tests.support.services import (
    API_KEY,
    MODELS,
    AppServer,
    InProcessServices,
    gateway_settings,
    orchestrator_settings,
)
from tests.support.serving import poll_until

MESSAGES = [{"role": "user", "content": "hello"}]
LIMIT = 64 * 1024  # the test gateway's max_body_bytes (tests/support/services.py)
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID_TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
_probe = itertools.count()


@pytest.fixture(scope="module")
def document(services: InProcessServices) -> dict[str, Any]:
    return openapi_document(services.gateway_url)


def _fresh(**fields: Any) -> dict[str, Any]:
    """A valid request the response cache has never seen, with ``fields`` changed."""
    return {"model": "fast-model", "messages": [{"role": "user", "content": f"hi {next(_probe)}"}], **fields}


def _still_serving(url: str, document: dict[str, Any]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        response = client.post(CHAT, json=_fresh())
    assert response.status_code == 200, response.text
    assert_matches_contract(document, response)


def _post(url: str, content: bytes, headers: Mapping[str, str | bytes] | None = None) -> httpx.Response:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        sent = {b"content-type": b"application/json"}
        for name, value in (headers or {}).items():
            sent[name.encode()] = value if isinstance(value, bytes) else value.encode()
        return client.post(CHAT, content=content, headers=sent)


def _nested(depth: int, kind: str) -> bytes:
    opening, closing = ("[", "]") if kind == "array" else ('{"a":', "}")
    return (opening * depth + "1" + closing * depth).encode()


@pytest.mark.parametrize("depth", [5_000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("where", ["body", "field"])
def test_deeply_nested_json_is_400_not_a_recursion_error(
    extra_gateway: Callable[..., str],
    document: dict[str, Any],
    depth: int,
    kind: str,
    where: str,
) -> None:
    url = extra_gateway(max_body_bytes=1 << 20)  # 100,000 levels of objects take 600 kB
    nested = _nested(depth, kind)
    content = nested if where == "body" else b'{"model": "fast-model", "messages": ' + nested + b"}"
    error = assert_refused(document, _post(url, content), 400)
    assert error == {
        "message": "body is not valid JSON: nested too deeply",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
    _still_serving(url, document)


def _body(**fields: Any) -> bytes:
    return json.dumps(_fresh(**fields)).encode()


def _content(raw: bytes) -> bytes:
    """A body whose one message's content is ``raw``, spliced in as written."""
    return b'{"model": "fast-model", "messages": [{"role": "user", "content": ' + raw + b"}]}"


def _raw(fragment: str) -> bytes:
    """A body with ``fragment`` spliced in as written (JSON literals json.dumps would not write)."""
    return f'{{"model": "fast-model", "messages": [{{"role": "user", "content": "x"}}], {fragment}}}'.encode()


BAD_BODIES: dict[str, tuple[bytes, str | None]] = {
    "empty": (b"", None),
    "not-json": (b"{model: fast-model}", None),
    "truncated": (_body()[:-3], None),
    "invalid-utf8": (b'{"model": "fast-model", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
    "overlong-utf8": (
        b'{"model": "fast-model", "messages": [{"role": "user", "content": "\xc0\xaf"}]}',
        None,
    ),
    "utf16-body": ('{"model": "fast-model"}'.encode("utf-16"), None),
    "lone-surrogate-content": (_body(messages=[{"role": "user", "content": "\ud800"}]), None),
    "lone-surrogate-model": (_body(model="\udfff"), None),
    "nan-temperature": (_raw('"temperature": NaN'), "temperature"),
    "infinity-temperature": (_raw('"temperature": Infinity'), "temperature"),
    "minus-infinity-temperature": (_raw('"temperature": -Infinity'), "temperature"),
    "1e400-temperature": (_raw('"temperature": 1e400'), "temperature"),
    "nan-string-temperature": (_raw('"temperature": "NaN"'), "temperature"),
    "nan-max-tokens": (_raw('"max_tokens": NaN'), "max_tokens"),
    "1e400-max-tokens": (_raw('"max_tokens": 1e400'), "max_tokens"),
    "huge-max-tokens": (_raw(f'"max_tokens": {10**100}'), "max_tokens"),
    "5000-digit-integer": (_raw(f'"max_tokens": {"9" * 5000}'), None),
    "nan-as-content": (
        b'{"model": "fast-model", "messages": [{"role": "user", "content": NaN}]}',
        "messages[0].content",
    ),
    "model-as-number": (_body(model=5), "model"),
    "messages-as-object": (_body(messages={"role": "user"}), "messages"),
    "messages-as-string": (_body(messages="hello"), "messages"),
    "stream-as-string": (_body(stream="yes"), "stream"),
    "stream-as-number": (_body(stream=1), "stream"),
    "temperature-as-string": (_body(temperature="hot"), "temperature"),
    "max-tokens-as-float": (_body(max_tokens=5.5), "max_tokens"),
    "role-as-list": (_body(messages=[{"role": ["user"], "content": "x"}]), "messages[0].role"),
    "content-as-number": (_body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    "body-as-array": (b"[]", None),
    "body-as-null": (b"null", None),
    "body-as-string": (b'"hello"', None),
    "unknown-field": (_body(logit_bias={"50256": -100}), "logit_bias"),
    # the rules between fields, which the schema states too (if/then, not)
    "stream-options-without-stream": (_body(stream_options={"include_usage": True}), "stream_options"),
    "tool-message-without-id": (
        _body(messages=[{"role": "tool", "content": "21 C"}]),
        "messages[0].tool_call_id",
    ),
    "tool-call-id-on-a-user-message": (
        _body(messages=[{"role": "user", "content": "x", "tool_call_id": "c1"}]),
        "messages[0].tool_call_id",
    ),
    "null-content-on-a-user-message": (
        _body(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
    ),
    "both-token-limits": (_body(max_tokens=5, max_completion_tokens=5), "max_completion_tokens"),
}


@pytest.mark.parametrize(("content", "param"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_malformed_body_is_400_naming_its_param(
    services: InProcessServices, document: dict[str, Any], content: bytes, param: str | None
) -> None:
    error = assert_refused(document, _post(services.gateway_url, content), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    _still_serving(services.gateway_url, document)


def _not_json_schema(literal: str) -> Any:
    raise ValueError(f"{literal} has no JSON Schema value")


def test_the_request_schema_refuses_what_the_gateway_refuses(document: dict[str, Any]) -> None:
    """The document is no laxer than the gateway: every refused body that JSON Schema can judge (it is
    JSON, without NaN or Infinity) breaks the declared request schema."""
    schema = validator(document, "#/components/schemas/ChatCompletionRequest")
    judged = 0
    for name, (content, _) in BAD_BODIES.items():
        try:
            body = json.loads(content, parse_constant=_not_json_schema)
            json.dumps(
                body, allow_nan=False, ensure_ascii=False
            ).encode()  # no 1e400 (inf), no unpaired surrogate
        except ValueError:  # not JSON, or not JSON that a schema can judge
            continue
        assert not schema.is_valid(body), f"{name}: the schema accepts what the gateway refuses"
        judged += 1
    assert judged >= 15


def test_valid_oddities_are_answered(services: InProcessServices, document: dict[str, Any]) -> None:
    """Strings that look like the bad cases are only text: paired surrogates, 'NaN', a NUL, 'Infinity'."""
    schema = validator(document, "#/components/schemas/ChatCompletionRequest")
    for content in ["😀 \ud83d\ude00", "NaN", "Infinity", "-Infinity", "1e400", "nul \u0000 here", "\u2028"]:
        body = _fresh(messages=[{"role": "user", "content": content}], temperature=0)
        assert schema.is_valid(body)
        response = _post(services.gateway_url, json.dumps(body).encode())
        assert response.status_code == 200, (content, response.text)
        assert_matches_contract(document, response)


def test_the_body_limit_is_enforced_before_parsing(
    services: InProcessServices, document: dict[str, Any]
) -> None:
    def sized(n: int) -> bytes:
        head = _body(temperature=0).replace(b'"hi ', b'"hi ' + b"x" * 8, 1)
        return head.replace(b"x" * 8, b"x" * (8 + n - len(head)), 1)

    at_limit = sized(LIMIT)
    assert len(at_limit) == LIMIT
    response = _post(services.gateway_url, at_limit)
    assert response.status_code == 200, response.text
    assert_matches_contract(document, response)
    for content in (sized(LIMIT + 1), b"[" * (LIMIT + 1), b"\xff" * (10 * LIMIT)):
        declared = _post(services.gateway_url, content)
        assert assert_refused(document, declared, 413)["type"] == "request_too_large"
        with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
            chunks = iter([content[: LIMIT // 2], content[LIMIT // 2 :]])
            chunked = client.post(f"{services.gateway_url}{CHAT}", content=chunks)
        assert assert_refused(document, chunked, 413)["type"] == "request_too_large"
    _still_serving(services.gateway_url, document)


def test_headers_past_the_servers_limit_get_a_4xx_and_the_gateway_serves_on(
    services: InProcessServices, document: dict[str, Any]
) -> None:
    # h11's limit on a request head is 16 kB: under it, big headers are only headers.
    under = _post(services.gateway_url, _body(), {"x-padding": "p" * 12_000})
    assert under.status_code == 200, under.text
    many = _post(services.gateway_url, _body(), {f"x-h{i}": "v" * 40 for i in range(200)})
    assert many.status_code == 200, many.text
    # Past it: 431 from the gateway when the head arrives whole; when it comes in pieces, h11 refuses it
    # before the app sees it, and the gateway's protocol answers 400 (connection closed), as for 1 MB here.
    # Either way in OpenAI's shape.
    statuses = set()
    for headers in ({"x-padding": "p" * 20_000}, {f"x-h{i}": "v" * 100 for i in range(200)}):
        over = _post(services.gateway_url, _body(), headers)
        statuses.add(over.status_code)
        if over.status_code == 431:
            assert assert_refused(document, over, 431)["code"] == "request_header_fields_too_large"
        else:
            assert assert_refused(document, over, 400)["type"] == "invalid_request_error"
    assert 431 in statuses
    huge = _post(services.gateway_url, _body(), {"x-padding": "p" * 1_000_000})
    assert assert_refused(document, huge, 400)["type"] == "invalid_request_error"
    _still_serving(services.gateway_url, document)


def _server_spans(services: InProcessServices) -> dict[str, ReadableSpan]:
    """The SERVER span of each service, once all three have ended (just after the response: poll). A GET
    (the ``document`` fixture's, a ``_still_serving`` check) may end after the test cleared the exporter:
    it is not the request's."""

    def ended() -> dict[str, ReadableSpan] | None:
        spans = {
            str(s.resource.attributes["service.name"]): s
            for s in services.spans_exporter.get_finished_spans()
            if s.kind.name == "SERVER" and not s.name.startswith("GET")
        }
        return spans if len(spans) == 3 else None

    return poll_until(ended, "a SERVER span from each service", timeout=10)


MALFORMED_TRACEPARENTS = {
    "version-ff": f"ff-{TRACE_ID}-{SPAN_ID}-01",
    "bad-hex": f"00-{'zz' * 16}-{SPAN_ID}-01",
    "upper-case-hex": f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
    "zero-trace-id": f"00-{'0' * 32}-{SPAN_ID}-01",
    "zero-span-id": f"00-{TRACE_ID}-{'0' * 16}-01",
    "too-long": f"{VALID_TRACEPARENT}-00",
    "short-trace-id": f"00-{TRACE_ID[:30]}-{SPAN_ID}-01",
    "10kB": f"00-{TRACE_ID}-{SPAN_ID}-01" + "0" * 10_000,
    "10kB-garbage": "x" * 10_000,
    "empty": "",
}


@pytest.mark.parametrize(
    "traceparent",
    [*(v.encode() for v in MALFORMED_TRACEPARENTS.values()), f"00-{TRACE_ID[:-1]}é-{SPAN_ID}-01".encode()],
    ids=[*MALFORMED_TRACEPARENTS, "non-ascii"],
)
def test_a_malformed_traceparent_starts_a_new_trace(
    services: InProcessServices, document: dict[str, Any], traceparent: bytes
) -> None:
    services.spans_exporter.clear()
    response = _post(
        services.gateway_url,
        _body(),
        {"traceparent": traceparent, "tracestate": "vendor=abc", "baggage": "k=v"},
    )
    assert response.status_code == 200, response.text
    spans = _server_spans(services)
    gateway = spans["gateway"]
    assert gateway.parent is None
    assert f"{gateway.context.trace_id:032x}" != TRACE_ID
    assert {s.context.trace_id for s in spans.values()} == {gateway.context.trace_id}  # one new trace
    assert _states(spans) == {"gateway": "", "orchestrator": "", "inference": ""}  # dropped with it
    assert_matches_contract(document, response)


def _states(spans: dict[str, ReadableSpan]) -> dict[str, str]:
    """The trace state of each service's SERVER span: what it received and carries on."""
    return {service: span.context.trace_state.to_header() for service, span in spans.items()}


BAD_TRACESTATES = {
    "33-members": ",".join(f"k{i}=v{i}" for i in range(33)),
    "member-over-256": "k=" + "v" * 300,
    "over-8192-chars": ",".join(f"k{i}=" + "v" * 255 for i in range(33))[:9000],
    "bad-key": "UPPER=v",
    "duplicate-key": "k=1,k=2",
    "garbage": "%%%;;;===",
}


@pytest.mark.parametrize("tracestate", BAD_TRACESTATES.values(), ids=BAD_TRACESTATES.keys())
def test_an_invalid_tracestate_is_dropped_and_the_trace_continues(
    services: InProcessServices, tracestate: str
) -> None:
    services.spans_exporter.clear()
    response = _post(
        services.gateway_url, _body(), {"traceparent": VALID_TRACEPARENT, "tracestate": tracestate}
    )
    assert response.status_code == 200, response.text
    spans = _server_spans(services)
    parent = spans["gateway"].parent
    assert parent is not None
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (TRACE_ID, SPAN_ID)
    assert _states(spans) == {"gateway": "", "orchestrator": "", "inference": ""}


def test_an_authenticated_callers_trace_is_continued_without_its_tracestate(
    services: InProcessServices,
) -> None:
    services.spans_exporter.clear()
    state = ",".join(f"k{i}=" + "v" * 20 for i in range(32))  # 32 members, over 512 characters: valid
    response = _post(services.gateway_url, _body(), {"traceparent": VALID_TRACEPARENT, "tracestate": state})
    assert response.status_code == 200, response.text
    spans = _server_spans(services)
    parent = spans["gateway"].parent
    assert parent is not None
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (TRACE_ID, SPAN_ID)
    assert {f"{s.context.trace_id:032x}" for s in spans.values()} == {TRACE_ID}
    # The caller's tracestate is its vendors' business, not ours: dropped at the edge, never passed on.
    assert _states(spans) == {"gateway": "", "orchestrator": "", "inference": ""}


def _gateway_server_span(services: InProcessServices) -> ReadableSpan:
    def ended() -> ReadableSpan | None:
        found = [
            s
            for s in services.spans_exporter.get_finished_spans()
            if s.kind.name == "SERVER" and s.resource.attributes["service.name"] == "gateway"
        ]
        return found[-1] if found else None

    return poll_until(ended, "the gateway's SERVER span", timeout=10)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic dGVzdA=="])
def test_a_request_without_a_valid_key_never_joins_the_callers_trace(
    services: InProcessServices, document: dict[str, Any], authorization: str | None
) -> None:
    services.spans_exporter.clear()
    headers = {"traceparent": VALID_TRACEPARENT, "tracestate": "vendor=abc", "baggage": "user=alice"}
    sent = {"content-type": "application/json", **headers}
    if authorization is not None:
        sent["authorization"] = authorization
    response = httpx.post(f"{services.gateway_url}{CHAT}", content=_body(), headers=sent, timeout=30)
    assert assert_refused(document, response, 401)["type"] == "invalid_api_key"
    span = _gateway_server_span(services)
    assert span.parent is None
    assert f"{span.context.trace_id:032x}" != TRACE_ID
    assert span.links == ()  # not even a link: an anonymous caller's ids are not recorded
    assert span.context.trace_state.to_header() == ""
    assert span.status.status_code.name == "UNSET"  # a 4xx is the client's mistake (HTTP semconv)
    assert span.attributes is not None
    assert span.attributes["error.type"] == "invalid_api_key"


def test_a_callers_unsampled_flag_does_not_switch_our_telemetry_off(services: InProcessServices) -> None:
    """``sampled=00`` from an authenticated caller: its trace is continued, but whether we record is our
    own decision (the default sampler's root: always on), in every service, with the exemplars marked."""
    services.spans_exporter.clear()
    unsampled = f"00-{TRACE_ID}-{SPAN_ID}-00"
    response = _post(services.gateway_url, _body(), {"traceparent": unsampled})
    assert response.status_code == 200, response.text
    spans = _server_spans(services)
    assert {f"{s.context.trace_id:032x}" for s in spans.values()} == {TRACE_ID}
    assert all(s.context.trace_flags.sampled for s in spans.values())
    parent = spans["gateway"].parent
    assert parent is not None
    assert f"{parent.span_id:016x}" == SPAN_ID
    exemplars = {
        e["trace_id"]
        for p in services.metrics("gateway")["http.server.request.duration"]["points"]
        for e in p["exemplars"]
    }
    assert TRACE_ID in exemplars  # its measurements still carry exemplars that resolve


def test_with_continue_traces_off_every_request_starts_a_trace_linked_to_the_callers(
    services: InProcessServices, extra_gateway: Callable[..., str]
) -> None:
    url = extra_gateway(continue_traces=False)
    services.spans_exporter.clear()
    response = _post(url, _body(), {"traceparent": VALID_TRACEPARENT, "tracestate": "vendor=abc"})
    assert response.status_code == 200, response.text
    span = _gateway_server_span(services)
    assert span.parent is None
    assert f"{span.context.trace_id:032x}" != TRACE_ID
    (link,) = span.links
    assert (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") == (TRACE_ID, SPAN_ID)
    assert link.context.trace_state.to_header() == ""


def test_the_orchestrator_keeps_trusting_its_caller(services: InProcessServices) -> None:
    """Behind the edge a caller is one of ours: its trace, tracestate and baggage are continued as sent."""
    services.spans_exporter.clear()
    headers = {"traceparent": VALID_TRACEPARENT, "tracestate": "vendor=abc", "baggage": "llm.tenant.id=t1"}
    body = {"model": "fast-model", "messages": [{"role": "user", "content": f"direct {next(_probe)}"}]}
    response = httpx.post(f"{services.orchestrator_url}/v1/generate", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text

    def ended() -> dict[str, ReadableSpan] | None:
        found = {
            str(s.resource.attributes["service.name"]): s
            for s in services.spans_exporter.get_finished_spans()
            if s.kind.name == "SERVER"
        }
        return found if {"orchestrator", "inference"} <= set(found) else None

    spans = poll_until(ended, "the orchestrator's and inference's SERVER spans", timeout=10)
    parent = spans["orchestrator"].parent
    assert parent is not None
    assert f"{parent.span_id:016x}" == SPAN_ID
    assert {s.context.trace_state.to_header() for s in spans.values()} == {"vendor=abc"}


@pytest.fixture
def observed(
    services: InProcessServices, app_server: AppServer, extra_gateway: Callable[..., str]
) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A gateway in front of a second real orchestrator whose requests' headers are recorded: what the
    gateway propagates. Yields the gateway's URL and the headers of each request the orchestrator got."""
    seen: list[dict[str, str]] = []
    capture = testing.capture("orchestrator")
    inner = create_orchestrator(
        orchestrator_settings(f"127.0.0.1:{services.inference_port}"), capture.telemetry
    )

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in ("/health", "/ready"):
            seen.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        await inner(scope, receive, send)

    orchestrator = app_server.start(recording)
    yield extra_gateway(orchestrator_url=orchestrator), seen
    app_server.stop()
    capture.shutdown()


BAGGAGE = {
    "over-8192-bytes": ",".join(f"k{i}=" + "v" * 100 for i in range(90)),
    "over-180-members": ",".join(f"k{i}=v" for i in range(200)),
    "garbage": "%%%;;;===,,,",
    "one-member-over-4096": "k=" + "v" * 5000,
    "valid": "user=alice,tier=gold",
    "forged-tenant": "llm.tenant.id=someone-else",
}


@pytest.mark.parametrize("baggage", BAGGAGE.values(), ids=BAGGAGE.keys())
def test_a_callers_baggage_never_passes_the_edge_only_the_tenant_the_gateway_sets(
    observed: tuple[str, list[dict[str, str]]], document: dict[str, Any], baggage: str
) -> None:
    url, seen = observed
    response = _post(url, _body(), {"traceparent": VALID_TRACEPARENT, "baggage": baggage})
    assert response.status_code == 200, response.text
    (headers,) = seen
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    assert headers["baggage"] == f"llm.tenant.id={anonymous_tenant_id(key_digest(API_KEY))}"
    assert "tracestate" not in headers
    _still_serving(url, document)


async def _flood(url: str, requests: list[tuple[str, bytes]], concurrency: int = 16) -> set[int]:
    statuses: set[int] = set()
    queue = iter(requests)
    headers = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    # Idle connections dropped after 1 s, under uvicorn's 5 s keep-alive: a connection the server closes
    # as a request goes out on it is the keep-alive race, not the gateway failing.
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for path, content in queue:
                statuses.add((await client.post(path, content=content)).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def _series(url: str) -> set[str]:
    """Every sample line of the gateway's ``/metrics``, its value cut off: one per series (bucket)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.fixture
def scraped_gateway(services: InProcessServices, app_server: AppServer) -> Iterator[str]:
    """A real gateway whose telemetry has the pull reader, so ``/metrics`` serves what a Prometheus gets."""
    built = telemetry.build_telemetry(
        service_name="gateway",
        gpu=False,
        advanced=telemetry.AdvancedOptions(
            span_processors=[SimpleSpanProcessor(InMemorySpanExporter())],
            metric_readers=[telemetry.PrometheusMetricReader()],
        ),
    )
    url = app_server.start_gateway(create_gateway(gateway_settings(services.orchestrator_url), built, MODELS))
    yield url
    app_server.stop()
    built.shutdown(timeout_millis=1000)


def test_10000_unknown_models_and_paths_leave_the_series_count_bounded(
    scraped_gateway: str, document: dict[str, Any]
) -> None:
    url, n = scraped_gateway, 10_000
    models = [(CHAT, _body(model=f"no-such-model-{i}")) for i in range(n)]
    paths = [(f"/v1/no-such-path-{i}", _body()) for i in range(n)]
    # One of each first: the series a refusal makes exist before the count starts.
    assert asyncio.run(_flood(url, [models[0], paths[0], (CHAT, _body())], 1)) == {200, 404}
    before = _series(url)
    assert asyncio.run(_flood(url, models + paths)) == {404}
    after = _series(url)
    print(f"\ngateway /metrics series: {len(before)} before, {len(after)} after {n} models and {n} paths")
    assert len(after - before) <= 10, sorted(after - before)[:20]
    assert not [s for s in after if "no-such" in s]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        unknown_model = client.post(CHAT, json=_fresh(model="no-such-model"))
        assert assert_refused(document, unknown_model, 404)["param"] == "model"
        unknown_path = client.post("/v1/no-such-path", json=_fresh())
        assert assert_refused(document, unknown_path, 404, path=None)["message"] == (
            "Invalid URL (POST /v1/no-such-path)"
        )
        wrong_method = client.get(CHAT)
        assert assert_refused(document, wrong_method, 405, path=None)["type"] == "invalid_request_error"
    _still_serving(url, document)
