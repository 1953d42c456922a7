"""The model catalog: which models exist, who provides them, and how the simulated engine times them.

The gateway (404 for unknown models, the cardinality allow-list for ``gen_ai.request.model``) and the
inference server (its registry) read the same catalog: the built-in one, or a JSON file named by
``LLM_MODEL_CATALOG`` holding a list of objects with the fields of :class:`ModelSpec`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from services.common.env import SettingError, env_str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str = "self_hosted"
    max_output_tokens: int = 256
    prefill_seconds_per_token: float = 0.0002
    decode_seconds_per_token: float = 0.004


BUILTIN_CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec("llama-3.1-8b-instruct", prefill_seconds_per_token=0.0002, decode_seconds_per_token=0.004),
    ModelSpec("mistral-7b-instruct", prefill_seconds_per_token=0.00015, decode_seconds_per_token=0.003),
    ModelSpec(
        "qwen2.5-72b-instruct",
        prefill_seconds_per_token=0.0008,
        decode_seconds_per_token=0.012,
        max_output_tokens=512,
    ),
)


def load_catalog(env: Mapping[str, str] | None = None) -> dict[str, ModelSpec]:
    path = env_str("LLM_MODEL_CATALOG", "", env)
    if not path:
        return {m.name: m for m in BUILTIN_CATALOG}
    try:
        entries = json.loads(Path(path).read_text())
        allowed = {f.name for f in fields(ModelSpec)}
        models = [ModelSpec(**{k: v for k, v in e.items() if k in allowed}) for e in entries]
    except (OSError, ValueError, TypeError) as exc:
        raise SettingError(f"LLM_MODEL_CATALOG={path!r} is invalid: {exc}") from None
    if not models:
        raise SettingError(f"LLM_MODEL_CATALOG={path!r} is invalid: no models")
    return {m.name: m for m in models}
