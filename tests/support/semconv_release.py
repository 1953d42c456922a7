"""The names of the semantic conventions we declare (telemetry.semconv.SEMCONV_VERSION and
GENAI_SEMCONV_REVISION): the release's from the constants of the ``opentelemetry-semantic-conventions``
package generated from it (pinned), the GenAI revision's from a table transcribed from its
docs/gen-ai/client-inference.md and gen-ai-token-metrics.md (that repository ships no package)."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

import opentelemetry.semconv as package

from telemetry.semconv import GENAI_PROPOSAL_NAMES

OURS = "llm."

GENAI_REVISION_METRICS = frozenset(
    {
        "gen_ai.client.inference.duration",
        "gen_ai.client.inference.time_to_first_chunk",
        "gen_ai.client.inference.time_per_output_chunk",
        "gen_ai.client.inference.usage.input_tokens",
        "gen_ai.client.inference.usage.output_tokens",
        "gen_ai.client.inference.usage.cache_read.input_tokens",
        "gen_ai.client.inference.usage.cache_write.input_tokens",
        "gen_ai.client.inference.usage.reasoning.output_tokens",
        "gen_ai.client.inference.operation.input_tokens",
        "gen_ai.client.inference.operation.output_tokens",
    }
)
"""The revision's client-inference metrics (the server ones are unchanged from 1.44.0)."""
GENAI_REVISION_ATTRIBUTES = frozenset({"gen_ai.token.modality"})
"""Attributes the revision added that 1.44.0 lacks, among those we use."""


@cache
def release_names() -> frozenset[str]:
    """Every metric and attribute name the package generated from the release defines."""
    names: set[str] = set()
    root = Path(package.__file__).parent  # _incubating has no __init__.py: walk the files, not the packages
    for path in [*root.glob("attributes/*.py"), *root.glob("metrics/*.py"), *root.glob("_incubating/*/*.py")]:
        if path.name == "__init__.py":
            continue
        module = importlib.import_module(
            ".".join((package.__name__, *path.relative_to(root).with_suffix("").parts))
        )
        names.update(v for k, v in vars(module).items() if k.isupper() and isinstance(v, str) and "." in v)
    assert len(names) > 1000, f"only {len(names)} names found in {root}"
    return frozenset(names)


def declared_names() -> frozenset[str]:
    """Every name of the release and of the GenAI revision, and the open proposal's we declare
    (telemetry.semconv.GENAI_PROPOSAL_NAMES: the cost)."""
    return release_names() | GENAI_REVISION_METRICS | GENAI_REVISION_ATTRIBUTES | GENAI_PROPOSAL_NAMES
