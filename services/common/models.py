"""The model catalog: which models exist, which provider serves each, what they cost, and how the
simulated engine times the self-hosted ones.

The gateway (404 for unknown models, the cardinality allow-list for ``gen_ai.request.model``, where each
request goes, prices) and the inference server (its registry: the pipeline's models only) read the same
catalog: the built-in one, or the JSON or YAML file ``LLM_MODEL_CATALOG`` names::

    providers:                        # optional; "self_hosted" (our pipeline) always exists
      openai:                         # the provider's id; also its gen_ai.provider.name unless overridden
        type: openai_compatible       # an OpenAI-compatible HTTP API (or "pipeline": our orchestrator)
        base_url: https://api.openai.com/v1
        api_key_file: /run/secrets/openai-api-key   # or api_key_env: OPENAI_API_KEY; or neither
        timeout_seconds: 60           # per read: the first byte, then each streamed chunk
        trace_context: none           # what the gateway sends of the trace: traceparent (default) or none
      vllm-east:
        type: openai_compatible
        base_url: http://vllm-east.internal:8000/v1   # plain http: no key, or allow_insecure_http: true
        gen_ai_provider_name: vllm    # semconv's well-known value where one exists (openai, ...)
    models:
      - name: gpt-4o-mini             # what clients ask for
        provider: openai
        upstream_model: gpt-4o-mini-2024-07-18    # what the upstream is asked for (default: name)
        usd_per_million_tokens: {input: 0.15, output: 0.60}
      - name: llama-3.1-8b-instruct   # provider defaults to self_hosted
        decode_seconds_per_token: 0.004
        gpu_cost: {usd_per_hour: 2.0, usd_per_kwh: 0.15}   # priced per request from the GPU time it used

A top-level list is the older form: models only, all on ``self_hosted``. Mistakes stop start-up, each
with where it is (``models[2].provider: ...``): all those of the file's shape at once, or else all those
of its meaning (unknown providers, missing URLs, unreadable keys, a key over plain ``http://``). API keys
are read once, at start-up, and never appear in a message, a log line, a ``repr`` or a span. A key is
refused on an ``http://`` URL (it would cross the network in clear) unless the host is loopback or the
provider says ``allow_insecure_http: true``. A provider outside the platform gets our ``traceparent`` at
most, never baggage or tracestate; ``trace_context: none`` sends it nothing of the trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.env import SettingError, env_str, is_loopback

SELF_HOSTED = "self_hosted"
"""The built-in provider: our own pipeline (gateway → orchestrator → inference)."""


class ProviderType(StrEnum):
    PIPELINE = "pipeline"
    """Our orchestrator, at the gateway's ``LLM_ORCHESTRATOR_URL``."""
    OPENAI_COMPATIBLE = "openai_compatible"
    """Any server with OpenAI's ``/chat/completions`` (OpenAI itself, vLLM, LiteLLM, TGI, llama.cpp, ...)."""


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    type: ProviderType = ProviderType.PIPELINE
    gen_ai_provider_name: str = ""
    """``gen_ai.provider.name`` on spans and metric points; the id when empty."""
    base_url: str = ""
    api_key: str | None = field(default=None, repr=False)
    """The secret itself: sent as ``Authorization: Bearer``, nowhere else."""
    timeout: float = 60.0
    trace_context: Literal["traceparent", "none"] = "traceparent"
    """What the gateway's requests to it carry of the trace (``instrument_httpx``'s ``propagation``)."""

    @property
    def semconv_name(self) -> str:
        return self.gen_ai_provider_name or self.id


@dataclass(frozen=True)
class Price:
    """US dollars per token, from the catalog's per-million figures."""

    input: float
    output: float

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> tuple[float | None, float | None]:
        """Estimated spend of the tokens a call reported (None where it reported none)."""
        return (
            None if input_tokens is None else input_tokens * self.input,
            None if output_tokens is None else output_tokens * self.output,
        )


@dataclass(frozen=True)
class GpuPrice:
    """What serving a self-hosted model costs: its GPUs' time (all the GPUs one replica of it holds), and
    the energy they draw when NVML measures it. The inference server charges each request its share."""

    usd_per_hour: float
    usd_per_kwh: float = 0.0

    def cost(self, gpu_seconds: float, energy_joules: float | None) -> float:
        energy = 0.0 if energy_joules is None else energy_joules / 3.6e6 * self.usd_per_kwh
        return gpu_seconds * self.usd_per_hour / 3600 + energy


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str = SELF_HOSTED
    """The id of the provider that serves it (a key of :attr:`Catalog.providers`)."""
    max_output_tokens: int = 256
    prefill_seconds_per_token: float = 0.0002
    decode_seconds_per_token: float = 0.004
    upstream_model: str | None = None
    """The model name the provider is asked for, when it differs from ``name``."""
    price: Price | None = None
    kv_bytes_per_token: int = 131072
    """KV-cache bytes one token takes (2 × layers × KV heads × head size × bytes per value; 128 KiB is an
    8B-class model in fp16): with the memory given to the cache, it sizes the engine's block pool."""
    gpu_price: GpuPrice | None = None
    """A self-hosted model's GPU cost: the inference server prices each request from it (``local``)."""


def _per_million(input_usd: float, output_usd: float) -> Price:
    return Price(input_usd / 1e6, output_usd / 1e6)


# Prefill costs are per prompt token of a step: in continuous batching a step that admits a prompt computes
# it whole while the batch's decoding waits, so they are a GPU's prefill rate (20k tokens/s for an 8B model),
# not a batch's padded one. Notional prices of our own GPUs' time (an internal charge-back, not a market
# price): they make the cost series and panels show the self-hosted models next to paid providers.
BUILTIN_CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        "llama-3.1-8b-instruct",
        prefill_seconds_per_token=0.00005,
        decode_seconds_per_token=0.004,
        price=_per_million(0.05, 0.10),
        gpu_price=GpuPrice(2.0, 0.15),
    ),
    ModelSpec(
        "mistral-7b-instruct",
        prefill_seconds_per_token=0.00004,
        decode_seconds_per_token=0.003,
        price=_per_million(0.04, 0.08),
        gpu_price=GpuPrice(2.0, 0.15),
    ),
    ModelSpec(
        "qwen2.5-72b-instruct",
        prefill_seconds_per_token=0.0002,
        decode_seconds_per_token=0.012,
        max_output_tokens=512,
        price=_per_million(0.40, 0.80),
        kv_bytes_per_token=327680,  # 80 layers × 8 KV heads × 128 × 2 × fp16
        gpu_price=GpuPrice(8.0, 0.15),  # four GPUs
    ),
)
BUILTIN_PROVIDER = ProviderSpec(SELF_HOSTED)


@dataclass(frozen=True)
class Catalog:
    providers: Mapping[str, ProviderSpec]
    models: Mapping[str, ModelSpec]
    """By name, in the catalog's order."""

    @classmethod
    def of(cls, models: Mapping[str, ModelSpec]) -> Catalog:
        """``models`` alone: each provider they name is a pipeline provider of that name."""
        providers = {m.provider: ProviderSpec(m.provider) for m in models.values()}
        return cls(providers, dict(models))

    def provider_of(self, model: ModelSpec) -> ProviderSpec:
        return self.providers[model.provider]

    def pipeline_models(self) -> dict[str, ModelSpec]:
        """The models our own pipeline serves (the inference server's registry)."""
        return {
            name: m for name, m in self.models.items() if self.provider_of(m).type is ProviderType.PIPELINE
        }

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Catalog:
        """The catalog ``LLM_MODEL_CATALOG`` names, or the built-in one; SettingError lists every mistake."""
        path = env_str("LLM_MODEL_CATALOG", "", env)
        if not path:
            return cls({SELF_HOSTED: BUILTIN_PROVIDER}, {m.name: m for m in BUILTIN_CATALOG})
        try:
            text = Path(path).read_text()
            data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise SettingError(f"LLM_MODEL_CATALOG={path!r} is invalid: {exc}") from None
        catalog, problems = _parse(data, env)
        if problems or catalog is None:
            raise SettingError(f"LLM_MODEL_CATALOG={path!r} is invalid: " + "; ".join(problems))
        return catalog


def load_catalog(env: Mapping[str, str] | None = None) -> dict[str, ModelSpec]:
    """The models our own pipeline serves, by name (what the inference server registers)."""
    return Catalog.load(env).pipeline_models()


# ---- the file's schema -----------------------------------------------------------------------------------

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""Provider ids and semconv names become label values: short, lowercase, no spaces."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PriceEntry(_Strict):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class _ProviderEntry(_Strict):
    type: Literal["pipeline", "openai_compatible"]
    base_url: str | None = None
    api_key_file: str | None = None
    api_key_env: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    gen_ai_provider_name: str | None = None
    trace_context: Literal["traceparent", "none"] = "traceparent"
    allow_insecure_http: bool = False


class _GpuCostEntry(_Strict):
    usd_per_hour: float = Field(ge=0)
    usd_per_kwh: float = Field(default=0.0, ge=0)


class _ModelEntry(_Strict):
    name: str = Field(min_length=1, max_length=256)
    provider: str = SELF_HOSTED
    max_output_tokens: int = Field(default=256, ge=1)
    prefill_seconds_per_token: float = Field(default=0.0002, ge=0)
    decode_seconds_per_token: float = Field(default=0.004, ge=0)
    kv_bytes_per_token: int = Field(default=131072, ge=1)
    upstream_model: str | None = Field(default=None, min_length=1, max_length=256)
    usd_per_million_tokens: _PriceEntry | None = None
    gpu_cost: _GpuCostEntry | None = None


class _CatalogFile(_Strict):
    providers: dict[str, _ProviderEntry] = Field(default_factory=dict)
    models: list[_ModelEntry] = Field(min_length=1)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "catalog"


def _parse(data: Any, env: Mapping[str, str] | None) -> tuple[Catalog | None, list[str]]:
    if isinstance(data, list):
        data = {"models": data}
    try:
        parsed = _CatalogFile.model_validate(data)
    except ValidationError as exc:
        return None, [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
    problems: list[str] = []
    providers = {SELF_HOSTED: BUILTIN_PROVIDER}
    for pid, entry in parsed.providers.items():
        provider = _provider(pid, entry, env, problems)
        if provider is not None:
            providers[pid] = provider
    models: dict[str, ModelSpec] = {}
    for i, m in enumerate(parsed.models):
        where = f"models[{i}]"
        if m.name in models:
            problems.append(f"{where}.name: {m.name!r} is already in the catalog")
        if m.provider not in providers:
            if m.provider not in parsed.providers:  # a provider with its own mistakes was reported already
                known = ", ".join(sorted(providers))
                problems.append(f"{where}.provider: unknown provider {m.provider!r} (known: {known})")
            continue
        if m.upstream_model is not None and providers[m.provider].type is ProviderType.PIPELINE:
            problems.append(f"{where}.upstream_model: only for openai_compatible providers")
        if m.gpu_cost is not None and providers[m.provider].type is not ProviderType.PIPELINE:
            problems.append(f"{where}.gpu_cost: only for models our pipeline serves")
        price = m.usd_per_million_tokens
        models[m.name] = ModelSpec(
            m.name,
            m.provider,
            m.max_output_tokens,
            m.prefill_seconds_per_token,
            m.decode_seconds_per_token,
            m.upstream_model,
            _per_million(price.input, price.output) if price else None,
            m.kv_bytes_per_token,
            GpuPrice(m.gpu_cost.usd_per_hour, m.gpu_cost.usd_per_kwh) if m.gpu_cost else None,
        )
    return Catalog(providers, models), problems


def _provider(
    pid: str, entry: _ProviderEntry, env: Mapping[str, str] | None, problems: list[str]
) -> ProviderSpec | None:
    where = f"providers.{pid}"
    before = len(problems)
    if not _ID.match(pid):
        problems.append(f"{where}: the id must be lowercase letters, digits, '.', '_' or '-' (64 at most)")
    if entry.gen_ai_provider_name is not None and not _ID.match(entry.gen_ai_provider_name):
        problems.append(f"{where}.gen_ai_provider_name: lowercase letters, digits, '.', '_' or '-' only")
    if entry.type == "pipeline":
        for key in ("base_url", "api_key_file", "api_key_env"):
            if getattr(entry, key) is not None:
                problems.append(f"{where}.{key}: not for a pipeline provider (it uses LLM_ORCHESTRATOR_URL)")
        if len(problems) > before:
            return None
        return ProviderSpec(pid, ProviderType.PIPELINE, entry.gen_ai_provider_name or "")
    if not entry.base_url:
        problems.append(f"{where}.base_url: required for an openai_compatible provider")
    elif not re.match(r"^https?://[^/\s]+", entry.base_url):
        problems.append(f"{where}.base_url: {entry.base_url!r} is not an http:// or https:// URL")
    api_key = _api_key(where, entry, env, problems)
    if api_key is not None and entry.base_url and _in_clear(entry.base_url) and not entry.allow_insecure_http:
        problems.append(
            f"{where}.base_url: {entry.base_url!r} is plain http and the provider has an API key, which would"
            " cross the network in clear: use https://, or set allow_insecure_http: true"
        )
    if len(problems) > before:
        return None
    return ProviderSpec(
        pid,
        ProviderType.OPENAI_COMPATIBLE,
        entry.gen_ai_provider_name or "",
        str(entry.base_url).rstrip("/"),
        api_key,
        entry.timeout_seconds,
        entry.trace_context,
    )


def _in_clear(base_url: str) -> bool:
    """An ``http://`` URL to a host other than loopback."""
    url = urlsplit(base_url)
    if url.scheme != "http":
        return False
    return not is_loopback(url.hostname or "")


def _api_key(
    where: str, entry: _ProviderEntry, env: Mapping[str, str] | None, problems: list[str]
) -> str | None:
    """The key from its file or variable; a problem names the file or the variable, never the value."""
    key = _read_api_key(where, entry, env, problems)
    if key is not None and not re.fullmatch(r"[\x21-\x7e]+", key):
        problems.append(f"{where}: the API key has characters an HTTP header cannot carry")
        return None
    return key


def _read_api_key(
    where: str, entry: _ProviderEntry, env: Mapping[str, str] | None, problems: list[str]
) -> str | None:
    if entry.api_key_file is not None and entry.api_key_env is not None:
        problems.append(f"{where}: api_key_file and api_key_env are exclusive")
        return None
    if entry.api_key_file is not None:
        try:
            key = Path(entry.api_key_file).read_text().strip()
        except OSError as exc:
            problems.append(f"{where}.api_key_file: cannot read {entry.api_key_file!r}: {exc.strerror}")
            return None
        if not key:
            problems.append(f"{where}.api_key_file: {entry.api_key_file!r} is empty")
        return key or None
    if entry.api_key_env is not None:
        key = env_str(entry.api_key_env, "", env)
        if not key:
            problems.append(f"{where}.api_key_env: the variable {entry.api_key_env} is unset or empty")
        return key or None
    return None
