"""The gateway in front of real OpenAI-compatible servers (LiteLLM's proxy, tests/support/litellm.py) and
our own pipeline at once: pass-through answers and streams, usage, errors, a timeout, an upstream killed
mid-stream, and the per-provider series and the cost counter they leave.

The catalog is a YAML file read the way ``LLM_MODEL_CATALOG`` is, keys from a variable and from a file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam
from pydantic import BaseModel

from deploy.stack import free_port
from services.common.models import Catalog
from services.gateway.app import create_app
from services.gateway.tenants import anonymous_tenant_id, key_digest
from telemetry import testing
from tests.support.litellm import ANSWER, LiteLLMServer, mock_models, start_litellm
from tests.support.scripted_openai import ANSWER as SCRIPTED_ANSWER, ARGUMENTS, STRUCTURED, ScriptedModel
from tests.support.services import API_KEY, InProcessServices, gateway_settings
from tests.support.serving import poll_until, serve_uvicorn, stop_uvicorn

# The catalog's prices, in USD per million tokens.
OPENAI_PRICE = (0.15, 0.60)
SECOND_PRICE = (3.0, 15.0)
PIPELINE_PRICE = (0.05, 0.10)
CATALOG = """
providers:
  openai:
    type: openai_compatible
    base_url: {a}
    api_key_env: TEST_OPENAI_KEY
  openai-impatient:
    type: openai_compatible
    base_url: {a}
    api_key_env: TEST_OPENAI_KEY
    gen_ai_provider_name: openai
    timeout_seconds: 1
  second:
    type: openai_compatible
    base_url: {b}
    api_key_file: {key_file}
    gen_ai_provider_name: litellm
  doomed:
    type: openai_compatible
    base_url: {c}
    api_key_env: TEST_OPENAI_KEY
models:
  - {{name: gpt-4o-mini, provider: openai, upstream_model: mock-chat,
      usd_per_million_tokens: {{input: {op[0]}, output: {op[1]}}}}}
  - {{name: slow-mini, provider: openai-impatient, upstream_model: mock-slow}}
  - {{name: limited-mini, provider: openai, upstream_model: mock-rate-limited}}
  - {{name: failing-mini, provider: openai, upstream_model: mock-failing}}
  - {{name: unknown-upstream, provider: openai, upstream_model: no-such-model}}
  - {{name: second-chat, provider: second, upstream_model: b-mock-chat,
      usd_per_million_tokens: {{input: {sp[0]}, output: {sp[1]}}}}}
  - {{name: long-stream, provider: doomed, upstream_model: mock-long}}
  - {{name: gpt-tools, provider: openai, upstream_model: scripted,
      usd_per_million_tokens: {{input: {op[0]}, output: {op[1]}}}}}
  - {{name: fast-model, provider: self_hosted, prefill_seconds_per_token: 0.00002,
      decode_seconds_per_token: 0.001, usd_per_million_tokens: {{input: {pp[0]}, output: {pp[1]}}}}}
"""


@dataclass
class Upstreams:
    a: LiteLLMServer
    b: LiteLLMServer
    doomed: LiteLLMServer
    model: ScriptedModel
    """The model behind litellm-a's ``scripted`` group (tool calls, structured output)."""


@dataclass
class ProviderGateway:
    url: str
    capture: testing.Capture
    upstreams: Upstreams

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)

    def spans(self) -> list[dict[str, Any]]:
        return self.capture.spans()

    def value(self, name: str, attributes: dict[str, Any], of: Any = None) -> float:
        """The sum over the points whose attributes include ``attributes`` (a counter's value, a histogram's
        ``of``), 0 while there is none, so a test can take differences; a point may carry more, such as
        ``gen_ai.response.model`` once the call answered."""
        points = (self.capture.metrics().get(name) or {}).get("points", [])
        matching = [p for p in points if attributes.items() <= p["attributes"].items()]
        return float(sum(p[of] if of else p["value"] for p in matching))

    def chat_span(self, model: str, **attributes: Any) -> dict[str, Any]:
        """The newest ended ``chat <model>`` span with ``attributes`` (spans end after the response)."""

        def find() -> dict[str, Any] | None:
            return next(
                (
                    s
                    for s in reversed(self.spans())
                    if s["name"] == f"chat {model}"
                    and all(s["attributes"].get(k) == v for k, v in attributes.items())
                ),
                None,
            )

        return poll_until(find, f"a span 'chat {model}' with {attributes}", timeout=10)


@pytest.fixture(scope="module")
def upstreams(services: InProcessServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    work = tmp_path_factory.mktemp("litellm")
    key = "sk-litellm-master-not-secret"
    model = ScriptedModel()
    model_port = free_port()
    served_model = services.loop.run(serve_uvicorn(model.app(), model_port))
    scripted = {"scripted": {"api_base": f"http://127.0.0.1:{model_port}/v1"}}
    servers = [
        start_litellm("litellm-a", {**mock_models(), **scripted}, work, key),
        start_litellm("litellm-b", mock_models("b-"), work, key),
        start_litellm("litellm-doomed", mock_models(), work, key),
    ]
    try:
        for server in servers:  # they boot at once; waiting in turn costs nothing more
            server.process.wait_ready()
        yield Upstreams(servers[0], servers[1], servers[2], model)
    finally:
        for server in servers:
            server.process.stop()
        services.loop.run(stop_uvicorn([served_model]))


@pytest.fixture(scope="module")
def gateway(
    services: InProcessServices, upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProviderGateway]:
    work = tmp_path_factory.mktemp("catalog")
    key_file = work / "second.key"
    key_file.write_text(upstreams.b.master_key + "\n")
    catalog_file = work / "catalog.yaml"
    catalog_file.write_text(
        CATALOG.format(
            a=upstreams.a.base_url,
            b=upstreams.b.base_url,
            c=upstreams.doomed.base_url,
            key_file=key_file,
            op=OPENAI_PRICE,
            sp=SECOND_PRICE,
            pp=PIPELINE_PRICE,
        )
    )
    catalog = Catalog.load(
        {"LLM_MODEL_CATALOG": str(catalog_file), "TEST_OPENAI_KEY": upstreams.a.master_key}
    )
    capture = testing.capture("gateway")
    port = free_port()
    app = create_app(gateway_settings(services.orchestrator_url), capture.telemetry, catalog)
    served = services.loop.run(serve_uvicorn(app, port))
    yield ProviderGateway(f"http://127.0.0.1:{port}", capture, upstreams)
    services.loop.run(stop_uvicorn([served]))
    capture.shutdown()


def _ask(gateway: ProviderGateway, model: str, **body: Any) -> httpx.Response:
    with gateway.client() as client:
        return client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hello there"}], **body},
        )


def _events(response: httpx.Response) -> list[Any]:
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


TENANT = anonymous_tenant_id(key_digest(API_KEY))
"""The tenant of the test's key (given in LLM_GATEWAY_API_KEYS, so an anonymous one)."""


def _identity(provider: str, model: str, port: int | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "llm.tenant.id": TENANT,
    }
    if port is not None:
        attributes |= {"server.address": "127.0.0.1", "server.port": port}
    return attributes


def _cost(provider: str, model: str, port: int | None, source: str = "local") -> dict[str, Any]:
    """The cost histogram's point: the identity, USD, and where the figure came from."""
    return {
        **_identity(provider, model, port),
        "gen_ai.usage.cost.currency": "USD",
        "gen_ai.usage.cost.source": source,
    }


def test_an_answer_passes_through_with_its_usage_its_spans_and_its_cost(gateway: ProviderGateway) -> None:
    port = gateway.upstreams.a.port
    tokens = _identity("openai", "gpt-4o-mini", port)
    cost = _cost("openai", "gpt-4o-mini", port)
    spent_before = gateway.value("gen_ai.client.operation.cost", cost, of="sum")
    input_before = gateway.value("gen_ai.client.inference.usage.input_tokens", tokens)

    response = _ask(gateway, "gpt-4o-mini", temperature=0.2, stop="\n\n", user="u-1")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "mock-chat"  # the upstream's own name for what answered
    assert answer["choices"][0]["message"]["content"] == ANSWER
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0

    span = gateway.chat_span("gpt-4o-mini", **{"gen_ai.response.id": answer["id"]})
    attrs = span["attributes"]
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["llm.gateway.provider"] == "openai"
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", port)
    assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attrs["gen_ai.response.model"] == "mock-chat"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert span["status"] == "UNSET"
    # The upstream call is the chat span's child: the httpx instrumentation sent its traceparent.
    client = next(
        s for s in gateway.spans() if s["kind"] == "CLIENT" and s["parent_span_id"] == span["span_id"]
    )
    assert client["attributes"]["server.port"] == port
    assert client["trace_id"] == span["trace_id"]

    assert (
        gateway.value("gen_ai.client.inference.usage.input_tokens", tokens) - input_before
        == usage["prompt_tokens"]
    )
    spent = gateway.value("gen_ai.client.operation.cost", cost, of="sum") - spent_before
    expected = (usage["prompt_tokens"] * OPENAI_PRICE[0] + usage["completion_tokens"] * OPENAI_PRICE[1]) / 1e6
    assert spent == pytest.approx(expected)
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(expected)
    assert (attrs["gen_ai.usage.cost.currency"], attrs["gen_ai.usage.cost.source"]) == ("USD", "local")
    assert attrs["gen_ai.request.temperature"] == 0.2
    secret = gateway.upstreams.a.master_key
    assert not [s["name"] for s in gateway.spans() if secret in json.dumps(s["attributes"], default=str)]


def test_a_stream_is_relayed_with_the_usage_it_reports_ttft_and_time_per_chunk(
    gateway: ProviderGateway,
) -> None:
    port = gateway.upstreams.a.port
    identity = _identity("openai", "gpt-4o-mini", port)
    gaps_before = gateway.value("gen_ai.client.inference.time_per_output_chunk", identity, "count")
    cost = _cost("openai", "gpt-4o-mini", port)
    spent_before = gateway.value("gen_ai.client.operation.cost", cost, of="sum")

    plain = _ask(gateway, "gpt-4o-mini", stream=True)

    assert plain.status_code == 200, plain.text
    assert plain.headers["content-type"].startswith("text/event-stream")
    events = _events(plain)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)  # the gateway asked for it; this client did not
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == ANSWER
    content_chunks = sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content"))

    span = gateway.chat_span("gpt-4o-mini", **{"gen_ai.response.id": chunks[0]["id"]})
    attrs = span["attributes"]
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["llm.gateway.stream.chunks"] == content_chunks
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    output_tokens = attrs["gen_ai.usage.output_tokens"]
    assert output_tokens > 0  # from the usage chunk the upstream sent the gateway
    assert (
        gateway.value("gen_ai.client.inference.time_per_output_chunk", identity, "count") - gaps_before
        == content_chunks - 1
    )
    spent = gateway.value("gen_ai.client.operation.cost", cost, of="sum") - spent_before
    input_tokens = attrs["gen_ai.usage.input_tokens"]
    assert spent == pytest.approx((input_tokens * OPENAI_PRICE[0] + output_tokens * OPENAI_PRICE[1]) / 1e6)

    asked = _events(_ask(gateway, "gpt-4o-mini", stream=True, stream_options={"include_usage": True}))
    assert asked[-1] == "[DONE]"
    usage = asked[-2]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("model", "status", "error_type"),
    [
        ("limited-mini", 429, "upstream_rate_limited"),
        ("failing-mini", 502, "upstream_error"),
        ("unknown-upstream", 400, "invalid_request_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_error_is_answered_in_openai_shape_once(
    gateway: ProviderGateway, model: str, status: int, error_type: str, stream: bool
) -> None:
    started = time.monotonic()
    response = _ask(gateway, model, stream=stream)
    took = time.monotonic() - started

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (error_type, error_type)
    assert error["message"].startswith("provider 'openai' answered")
    assert gateway.upstreams.a.master_key not in response.text
    if status == 429:
        assert response.headers["retry-after"].isdigit()
    assert took < 5, f"{took:.1f} s: an upstream error must be answered at once, never retried"
    span = gateway.chat_span(model, **{"error.type": error_type})
    assert span["status"] == "ERROR"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_provider_past_its_timeout_gives_504(gateway: ProviderGateway, stream: bool) -> None:
    started = time.monotonic()
    response = _ask(gateway, "slow-mini", stream=stream)
    took = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"]["type"] == "upstream_timeout"
    assert took < 2.5, f"{took:.1f} s for a 1 s timeout (the mock answers after 3 s)"
    assert gateway.chat_span("slow-mini", **{"error.type": "upstream_timeout"})["status"] == "ERROR"


def test_an_upstream_killed_mid_stream_ends_the_clients_stream_with_an_error_then_done(
    gateway: ProviderGateway,
) -> None:
    data: list[str] = []
    with (
        gateway.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "long-stream", "stream": True, "messages": [{"role": "user", "content": "go on"}]},
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data.append(line[6:])
            if len(data) == 3:  # relayed as they come: the upstream is still streaming
                gateway.upstreams.doomed.kill()

    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])["error"]
    assert error["type"] == "upstream_stream_broken"
    relayed = [json.loads(d) for d in data[:-2]]
    assert len(relayed) >= 3
    assert all(c["object"] == "chat.completion.chunk" for c in relayed)
    assert not any(c["choices"] and c["choices"][0].get("finish_reason") for c in relayed)

    span = gateway.chat_span("long-stream", **{"error.type": "upstream_stream_broken"})
    assert span["status"] == "ERROR"
    assert span["attributes"]["llm.gateway.stream.chunks"] >= 3
    assert any(e["name"] == "exception" for e in span["events"])
    failed = _identity("doomed", "long-stream", gateway.upstreams.doomed.port)
    failed["error.type"] = "upstream_stream_broken"
    assert gateway.value("gen_ai.client.inference.duration", failed, "count") == 1

    # The gateway goes on: the dead provider is an error at once, the others still answer.
    gone = _ask(gateway, "long-stream", stream=True)
    assert gone.status_code == 502
    assert gone.json()["error"]["type"] == "upstream_unavailable"
    assert _ask(gateway, "gpt-4o-mini").status_code == 200


async def _concurrently(gateway: ProviderGateway, models: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions",
                    json={
                        "model": model,
                        "stream": i % 2 == 1,
                        "messages": [{"role": "user", "content": f"at once {i}"}],
                    },
                )
                for i, model in enumerate(models)
            )
        )


def test_two_providers_and_the_pipeline_at_once_each_get_their_series_and_cost(
    gateway: ProviderGateway,
) -> None:
    a, b = gateway.upstreams.a.port, gateway.upstreams.b.port
    who = {
        "gpt-4o-mini": ("openai", a, OPENAI_PRICE),
        "second-chat": ("litellm", b, SECOND_PRICE),
        "fast-model": ("self_hosted", None, PIPELINE_PRICE),
    }

    def snapshot(model: str) -> dict[str, float]:
        """Calls, tokens and spend of ``model`` so far."""
        provider, port, _ = who[model]
        identity = _identity(provider, model, port)
        values = {"calls": gateway.value("gen_ai.client.inference.duration", identity, "count")}
        for token_type in ("input", "output"):
            values[f"{token_type} tokens"] = gateway.value(
                f"gen_ai.client.inference.usage.{token_type}_tokens", identity
            )
        # Our pipeline prices its requests itself, from the GPU time each used: its figure is the provider's.
        source = "provider" if port is None else "local"
        values["cost"] = gateway.value(
            "gen_ai.client.operation.cost", _cost(provider, model, port, source), "sum"
        )
        return values

    before = {m: snapshot(m) for m in who}
    responses = asyncio.run(_concurrently(gateway, [m for m in who for _ in range(4)]))
    assert [r.status_code for r in responses] == [200] * 12, [
        r.text for r in responses if r.status_code != 200
    ]

    for model, (_, _, (input_price, output_price)) in who.items():
        now = snapshot(model)
        new = {k: now[k] - before[model][k] for k in now}
        assert new["calls"] == 4, model
        assert new["input tokens"] > 0, model
        assert new["output tokens"] > 0, model
        if model == "fast-model":
            assert new["cost"] > 0  # its GPU time, priced (tests/support/services.py)
        else:
            by_tokens = new["input tokens"] * input_price + new["output tokens"] * output_price
            assert new["cost"] == pytest.approx(by_tokens / 1e6), model

    with gateway.client() as client:
        listed = client.get("/v1/models").json()["data"]
    owners = {m["id"]: m["owned_by"] for m in listed}
    assert (owners["gpt-4o-mini"], owners["second-chat"], owners["fast-model"]) == (
        "openai",
        "second",
        "self_hosted",
    )


# ---- the official SDK through the gateway to LiteLLM: tools, structured output, streamed tool calls -----

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


def _sdk(gateway: ProviderGateway) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_the_official_sdk_calls_a_tool_and_sends_its_result_back_through_the_gateway(
    gateway: ProviderGateway,
) -> None:
    client = _sdk(gateway)
    asked = client.chat.completions.create(
        model="gpt-tools",
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        top_p=0.9,
        seed=42,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        parallel_tool_calls=False,
    )
    choice = asked.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    # What reached the model behind LiteLLM: the parameters, as the client set them.
    sent = gateway.upstreams.model.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert (sent["top_p"], sent["seed"], sent["presence_penalty"], sent["frequency_penalty"]) == (
        0.9,
        42,
        0.1,
        0.2,
    )
    span = gateway.chat_span("gpt-tools", **{"gen_ai.response.finish_reasons": ("tool_calls",)})
    attrs = span["attributes"]
    assert (attrs["gen_ai.request.top_p"], attrs["gen_ai.request.seed"]) == (0.9, 42)
    assert (attrs["gen_ai.request.presence_penalty"], attrs["gen_ai.request.frequency_penalty"]) == (0.1, 0.2)

    answered = client.chat.completions.create(
        model="gpt-tools",
        messages=[
            *QUESTION,
            cast(ChatCompletionMessageParam, choice.message.model_dump(exclude_none=True)),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'},
        ],
        tools=[WEATHER_TOOL],
    )
    assert answered.choices[0].message.content == SCRIPTED_ANSWER
    assert gateway.upstreams.model.requests[-1]["messages"][-1]["tool_call_id"] == call.id


def test_the_official_sdk_streams_a_tool_call_through_the_gateway(gateway: ProviderGateway) -> None:
    client = _sdk(gateway)
    stream = client.chat.completions.create(
        model="gpt-tools",
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    names, arguments, finishes, usage = [], "", [], None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                if delta.function and delta.function.name:
                    names.append(delta.function.name)
                if delta.function and delta.function.arguments:
                    arguments += delta.function.arguments
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert names == ["get_weather"]
    assert json.loads(arguments) == json.loads("".join(ARGUMENTS))
    assert finishes == ["tool_calls"]
    assert usage is not None
    assert usage.completion_tokens > 0
    span = gateway.chat_span("gpt-tools", **{"gen_ai.request.stream": True})
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert span["attributes"]["llm.gateway.stream.chunks"] >= 2  # the tool-call deltas count as output


def test_the_official_sdk_parses_structured_output_through_the_gateway(gateway: ProviderGateway) -> None:
    class Weather(BaseModel):
        city: str
        temperature_c: int

    client = _sdk(gateway)
    parsed = client.chat.completions.parse(
        model="gpt-tools",
        messages=QUESTION,
        response_format=Weather,
    )
    assert parsed.choices[0].message.parsed == Weather.model_validate(STRUCTURED)
    sent = gateway.upstreams.model.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Weather"
    span = gateway.chat_span("gpt-tools", **{"gen_ai.output.type": "json"})
    assert span["status"] == "UNSET"


def test_n_choices_and_logprobs_pass_through_to_an_upstream(gateway: ProviderGateway) -> None:
    response = _ask(gateway, "gpt-tools", n=2, logprobs=True, top_logprobs=2)
    assert response.status_code == 200, response.text
    sent = gateway.upstreams.model.requests[-1]
    assert (sent["n"], sent["logprobs"], sent["top_logprobs"]) == (2, True, 2)
    span = gateway.chat_span("gpt-tools", **{"gen_ai.request.choice.count": 2})
    assert span["status"] == "UNSET"
