"""Every name we emit from OpenTelemetry's namespaces exists in the conventions we declare
(telemetry.semconv.SEMCONV_VERSION and GENAI_SEMCONV_REVISION); ours are all under ``llm.``.

The release's names are the constants the ``opentelemetry-semantic-conventions`` package generated from it
ships (we pin the package of that release); the GenAI revision has no package, so its names are the table
below, transcribed from the revision's docs/gen-ai/client-inference.md and gen-ai-token-metrics.md.
"""

from __future__ import annotations

import re

import pytest
from opentelemetry.semconv.schemas import Schemas

from services.common import semconv as service_sc
from telemetry import semconv
from tests.support.semconv_release import (
    GENAI_REVISION_ATTRIBUTES,
    GENAI_REVISION_METRICS,
    OURS,
    release_names,
)


def _declared_attribute_keys() -> dict[str, str]:
    """Our attribute-key constants (telemetry.semconv and the services'), by constant name."""
    keys = {}
    for module in (semconv, service_sc):
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", value):
                keys[f"{module.__name__}.{name}"] = value
    return keys


def test_the_declared_release_is_the_one_the_pinned_package_was_generated_from() -> None:
    newest = max(Schemas, key=lambda s: tuple(int(p) for p in s.name.removeprefix("V").split("_")))
    assert semconv.SCHEMA_URL == newest.value == f"https://opentelemetry.io/schemas/{semconv.SEMCONV_VERSION}"
    assert semconv.GENAI_SCHEMA_URL.startswith("https://opentelemetry.io/schemas/gen-ai-dev/")
    assert re.fullmatch(r"[0-9a-f]{40}", semconv.GENAI_SEMCONV_REVISION)


@pytest.mark.parametrize("spec", list(semconv.METRICS.values()), ids=lambda s: s.name)
def test_every_metric_outside_our_namespace_exists_in_the_declared_conventions(
    spec: semconv.MetricSpec,
) -> None:
    if spec.name.startswith(OURS):
        assert spec.proposal is None or not spec.proposal.startswith(OURS)
        return
    assert spec.proposal is None, "a proposal's name is for our own metrics only"
    assert spec.name in release_names() | GENAI_REVISION_METRICS | semconv.GENAI_PROPOSAL_NAMES, (
        f"{spec.name} is in neither semantic conventions {semconv.SEMCONV_VERSION} nor the GenAI revision"
    )


def test_every_attribute_key_outside_our_namespace_exists_in_the_declared_conventions() -> None:
    missing = {
        constant: key
        for constant, key in _declared_attribute_keys().items()
        if not key.startswith(OURS)
        and key not in release_names() | GENAI_REVISION_ATTRIBUTES | semconv.GENAI_PROPOSAL_NAMES
    }
    assert missing == {}


def test_the_proposal_names_we_emit_are_the_cost_proposals_and_in_no_declared_convention() -> None:
    """The one declared exception stays one: the cost names of semantic-conventions-genai#443, none of which
    the release or the revision defines yet (when one does, it leaves the exception for the real name)."""
    assert {name.rsplit(".", 1)[0] for name in semconv.GENAI_PROPOSAL_NAMES} == {
        "gen_ai.usage.cost",
        "gen_ai.client.operation",
    }
    assert not semconv.GENAI_PROPOSAL_NAMES & (release_names() | GENAI_REVISION_METRICS)


def test_the_pre_2026_rpc_status_attribute_is_gone() -> None:
    keys = set(_declared_attribute_keys().values())
    assert "rpc.status_code" not in keys
    assert "rpc.status_code" not in release_names()
    assert semconv.RPC_RESPONSE_STATUS_CODE in release_names()


def test_our_engine_metrics_name_the_open_proposal_they_follow() -> None:
    engine = [spec for spec in semconv.METRICS.values() if spec.name.startswith("llm.engine.")]
    proposed = {spec.name: spec.proposal for spec in engine if spec.proposal}
    assert set(proposed) >= {
        semconv.LLM_ENGINE_REQUESTS.name,
        semconv.LLM_ENGINE_KV_CACHE_USAGE.name,
        semconv.LLM_ENGINE_PREFIX_CACHE_HITS.name,
        semconv.LLM_ENGINE_PREEMPTIONS.name,
    }
    assert all(p.startswith("gen_ai.server.") for p in proposed.values())
    # ... and none of them is a name the release or the revision defines (then we would have to use it).
    assert not set(proposed.values()) & (release_names() | GENAI_REVISION_METRICS)
