"""The model catalog file: providers and models read from JSON or YAML, every mistake reported at start-up
with where it is, API keys read from a file or a variable and never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.env import SettingError
from services.common.models import (
    BUILTIN_CATALOG,
    SELF_HOSTED,
    Catalog,
    ModelSpec,
    Price,
    ProviderType,
    load_catalog,
)

SECRET = "sk-live-do-not-print-0123456789"

GOOD = """
providers:
  openai:
    type: openai_compatible
    base_url: https://api.openai.com/v1/
    api_key_env: OPENAI_API_KEY
    timeout_seconds: 30
  vllm-east:
    type: openai_compatible
    base_url: http://vllm-east.internal:8000/v1
    gen_ai_provider_name: vllm
models:
  - name: gpt-4o-mini
    provider: openai
    upstream_model: gpt-4o-mini-2024-07-18
    usd_per_million_tokens: {input: 0.15, output: 0.6}
  - name: llama-3.1-70b
    provider: vllm-east
  - name: llama-3.1-8b-instruct
    decode_seconds_per_token: 0.004
"""


def _load(tmp_path: Path, text: str, name: str = "catalog.yaml", **env: str) -> Catalog:
    path = tmp_path / name
    path.write_text(text)
    return Catalog.load({"LLM_MODEL_CATALOG": str(path), **env})


def _one_provider(fields: str) -> str:
    """A catalog with one openai_compatible provider ``p`` of ``fields`` and one model on it."""
    return f"providers: {{p: {{type: openai_compatible, {fields}}}}}\nmodels: [{{name: m, provider: p}}]"


def _problems(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(SettingError) as caught:
        _load(tmp_path, text, **env)
    message = str(caught.value)
    assert message.startswith(f"LLM_MODEL_CATALOG={str(tmp_path / 'catalog.yaml')!r} is invalid: ")
    assert SECRET not in message
    return message


def test_providers_and_models_are_read_with_prices_keys_and_defaults(tmp_path: Path) -> None:
    catalog = _load(tmp_path, GOOD, OPENAI_API_KEY=SECRET)

    assert list(catalog.models) == ["gpt-4o-mini", "llama-3.1-70b", "llama-3.1-8b-instruct"]
    openai = catalog.providers["openai"]
    assert (openai.type, openai.base_url, openai.api_key, openai.timeout) == (
        ProviderType.OPENAI_COMPATIBLE,
        "https://api.openai.com/v1",
        SECRET,
        30.0,
    )
    assert openai.semconv_name == "openai"
    assert catalog.providers["vllm-east"].semconv_name == "vllm"
    assert catalog.providers["vllm-east"].api_key is None
    assert catalog.providers[SELF_HOSTED].type is ProviderType.PIPELINE
    gpt = catalog.models["gpt-4o-mini"]
    assert gpt.upstream_model == "gpt-4o-mini-2024-07-18"
    assert gpt.price == Price(0.15e-6, 0.6e-6)
    input_cost, output_cost = gpt.price.cost(1000, None)
    assert input_cost == pytest.approx(0.15e-3)
    assert output_cost is None
    assert catalog.models["llama-3.1-8b-instruct"].provider == SELF_HOSTED
    assert list(catalog.pipeline_models()) == ["llama-3.1-8b-instruct"]
    assert SECRET not in repr(catalog)


def test_the_key_comes_from_a_file_too_and_json_works(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(SECRET + "\n")
    text = json.dumps(
        {
            "providers": {
                "p": {"type": "openai_compatible", "base_url": "https://h:1", "api_key_file": str(key)}
            },
            "models": [{"name": "m", "provider": "p"}],
        }
    )
    assert _load(tmp_path, text, "catalog.json").providers["p"].api_key == SECRET


def test_a_list_is_the_older_form_models_on_the_pipeline(tmp_path: Path) -> None:
    catalog = _load(tmp_path, json.dumps([{"name": "a", "max_output_tokens": 64}, {"name": "b"}]), "c.json")
    assert catalog.models["a"] == ModelSpec("a", max_output_tokens=64)
    assert set(catalog.pipeline_models()) == {"a", "b"}


def test_without_a_file_the_builtin_catalog_serves_on_the_pipeline() -> None:
    assert list(load_catalog({})) == [m.name for m in BUILTIN_CATALOG]
    assert all(m.price is not None for m in BUILTIN_CATALOG)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: []", "models: List should have at least 1 item"),
        (
            "models: [{name: m, provider: nope}]",
            "models[0].provider: unknown provider 'nope' (known: self_hosted)",
        ),
        ("models: [{name: m}, {name: m}]", "models[1].name: 'm' is already in the catalog"),
        ("models: [{name: m, colour: red}]", "models[0].colour: Extra inputs are not permitted"),
        (
            "models: [{name: m, upstream_model: x}]",
            "models[0].upstream_model: only for openai_compatible providers",
        ),
        (
            "models: [{name: m, usd_per_million_tokens: {input: -1, output: 1}}]",
            "models[0].usd_per_million_tokens.input: Input should be greater than or equal to 0",
        ),
        (
            "providers: {p: {type: openai_compatible}}\nmodels: [{name: m, provider: p}]",
            "providers.p.base_url: required for an openai_compatible provider",
        ),
        (
            "providers: {p: {type: openai_compatible, base_url: 'ftp://x'}}\nmodels: [{name: m}]",
            "providers.p.base_url: 'ftp://x' is not an http:// or https:// URL",
        ),
        (
            "providers: {p: {type: pipeline, base_url: 'http://x'}}\nmodels: [{name: m}]",
            "providers.p.base_url: not for a pipeline provider (it uses LLM_ORCHESTRATOR_URL)",
        ),
        (
            "providers: {P Q: {type: pipeline}}\nmodels: [{name: m}]",
            "providers.P Q: the id must be lowercase letters, digits, '.', '_' or '-' (64 at most)",
        ),
        (
            "providers: {p: {type: grpc}}\nmodels: [{name: m}]",
            "providers.p.type: Input should be 'pipeline' or 'openai_compatible'",
        ),
        (
            "providers: {p: {type: openai_compatible, base_url: 'http://x', api_key_env: NOT_SET}}\n"
            "models: [{name: m}]",
            "providers.p.api_key_env: the variable NOT_SET is unset or empty",
        ),
        (
            "providers: {p: {type: openai_compatible, base_url: 'http://x',\n"
            "                api_key_file: /nonexistent/key}}\n"
            "models: [{name: m}]",
            "providers.p.api_key_file: cannot read '/nonexistent/key': No such file or directory",
        ),
        (
            "providers: {p: {type: openai_compatible, base_url: 'http://x',\n"
            "                api_key_env: K, api_key_file: f}}\n"
            "models: [{name: m}]",
            "providers.p: api_key_file and api_key_env are exclusive",
        ),
    ],
)
def test_a_mistake_is_reported_with_where_it_is(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _problems(tmp_path, text)


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    message = _problems(tmp_path, "models: [{name: a, provider: x}, {name: a, provider: y}]")
    assert "models[0].provider: unknown provider 'x'" in message
    assert "models[1].provider: unknown provider 'y'" in message


def test_a_key_a_header_cannot_carry_is_refused_without_showing_it(tmp_path: Path) -> None:
    text = (
        "providers: {p: {type: openai_compatible, base_url: 'http://x', api_key_env: K}}\nmodels: [{name: m}]"
    )
    message = _problems(tmp_path, text, K=SECRET + " \u00e9")
    assert "providers.p: the API key has characters an HTTP header cannot carry" in message


@pytest.mark.parametrize(
    "base_url", ["http://api.example", "http://10.0.0.7:8000/v1", "http://vllm.internal/v1"]
)
def test_a_key_over_plain_http_is_refused_unless_allowed(tmp_path: Path, base_url: str) -> None:
    text = _one_provider(f"base_url: '{base_url}', api_key_env: K")
    message = _problems(tmp_path, text, K=SECRET)
    assert f"providers.p.base_url: {base_url!r} is plain http and the provider has an API key" in message
    allowed = text.replace("api_key_env: K", "api_key_env: K, allow_insecure_http: true")
    assert _load(tmp_path, allowed, K=SECRET).providers["p"].api_key == SECRET


@pytest.mark.parametrize(
    "base_url", ["https://api.example/v1", "http://127.0.0.1:8000/v1", "http://localhost:9"]
)
def test_a_key_over_https_or_to_loopback_is_accepted(tmp_path: Path, base_url: str) -> None:
    text = _one_provider(f"base_url: '{base_url}', api_key_env: K")
    assert _load(tmp_path, text, K=SECRET).providers["p"].api_key == SECRET


def test_trace_context_to_a_provider_is_traceparent_unless_none(tmp_path: Path) -> None:
    text = (
        "providers: {a: {type: openai_compatible, base_url: 'https://a'},"
        " b: {type: openai_compatible, base_url: 'https://b', trace_context: none}}\nmodels: [{name: m}]"
    )
    providers = _load(tmp_path, text).providers
    assert (providers["a"].trace_context, providers["b"].trace_context) == ("traceparent", "none")
    assert "trace_context" in _problems(tmp_path, text.replace("none}", "all}"))


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"LLM_MODEL_CATALOG='/nonexistent\.yaml' is invalid"):
        Catalog.load({"LLM_MODEL_CATALOG": "/nonexistent.yaml"})
    assert "is invalid" in _problems(tmp_path, "models: [unclosed")
