"""What the three services really emit conforms to the conventions we declare (docs/semantic-conventions.md):
every attribute on their spans and metric points outside our ``llm.`` namespace exists there, the Required
attributes are on every point, the Recommended ones where known, and every scope carries the schema URL.
"""

from __future__ import annotations

from typing import Any

from telemetry import semconv as sc
from tests.support.semconv_release import OURS, declared_names
from tests.support.services import InProcessServices

CHAT = {"model": "fast-model", "messages": [{"role": "user", "content": "conform"}], "max_tokens": 8}

GENAI_REQUIRED = {sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME}
REQUIRED = {
    sc.HTTP_SERVER_REQUEST_DURATION.name: {sc.HTTP_REQUEST_METHOD, sc.URL_SCHEME},
    sc.HTTP_CLIENT_REQUEST_DURATION.name: {sc.HTTP_REQUEST_METHOD, sc.SERVER_ADDRESS, sc.SERVER_PORT},
    sc.RPC_SERVER_CALL_DURATION.name: {sc.RPC_SYSTEM_NAME},
    sc.RPC_CLIENT_CALL_DURATION.name: {sc.RPC_SYSTEM_NAME},
    sc.GEN_AI_SERVER_REQUEST_DURATION.name: GENAI_REQUIRED,
    sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.name: GENAI_REQUIRED,
    sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.name: GENAI_REQUIRED,
    sc.GEN_AI_CLIENT_INFERENCE_DURATION.name: GENAI_REQUIRED,
    sc.GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK.name: GENAI_REQUIRED,
    sc.GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK.name: GENAI_REQUIRED,
    sc.GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS.name: GENAI_REQUIRED,
    sc.GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS.name: GENAI_REQUIRED,
    **{spec.name: GENAI_REQUIRED | {sc.GEN_AI_TOKEN_MODALITY} for spec in sc.GEN_AI_CLIENT_INFERENCE_USAGE},
}
"""Required attributes per metric, from semantic conventions 1.44.0 and the GenAI revision."""
GENAI_RECOMMENDED = {sc.GEN_AI_RESPONSE_MODEL, sc.SERVER_ADDRESS, sc.SERVER_PORT}
"""Recommended on GenAI metrics where known: on every point of a call that answered."""


def _exercise(services: InProcessServices) -> dict[str, dict[str, dict[str, Any]]]:
    with services.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert client.post("/v1/chat/completions", json={**CHAT, "stream": True}).status_code == 200
    return {name: services.metrics(name) for name in ("gateway", "orchestrator", "inference")}


def test_required_and_known_recommended_attributes_are_on_every_point(services: InProcessServices) -> None:
    by_service = _exercise(services)
    checked = set()
    for service, metrics in by_service.items():
        for name, metric in metrics.items():
            for point in metric["points"]:
                keys = set(point["attributes"])
                assert REQUIRED.get(name, set()) <= keys, (service, name, point["attributes"])
                if name.startswith("gen_ai.") and sc.ERROR_TYPE not in keys:
                    unknown = point["attributes"].get(sc.GEN_AI_TOKEN_MODALITY) == sc.TOKEN_MODALITY_UNKNOWN
                    if not unknown:
                        assert keys >= GENAI_RECOMMENDED, (service, name, point["attributes"])
                checked.add(name)
    assert set(REQUIRED) <= checked, set(REQUIRED) - checked


def test_every_attribute_outside_our_namespace_exists_in_the_declared_conventions(
    services: InProcessServices,
) -> None:
    by_service = _exercise(services)
    keys = {
        (f"metric {name}", key)
        for metrics in by_service.values()
        for name, metric in metrics.items()
        for point in metric["points"]
        for key in point["attributes"]
    }
    keys |= {(f"span {span['name']}", key) for span in services.spans() for key in span["attributes"]}
    foreign = {(where, key) for where, key in keys if not key.startswith(OURS)}
    assert foreign
    assert {(where, key) for where, key in foreign if key not in declared_names()} == set()


def test_the_resource_identifies_the_process_and_every_scope_declares_its_schema(
    services: InProcessServices,
) -> None:
    _exercise(services)
    for capture in services.captures.values():
        resource = capture.telemetry.resource.attributes
        assert isinstance(resource["process.pid"], int)
        assert str(resource["process.creation.time"]).endswith("Z")
    scopes = {}
    for span in services.spans_exporter.get_finished_spans():
        scope = span.instrumentation_scope
        assert scope is not None
        scopes[scope.name] = scope.schema_url
    assert scopes
    assert set(scopes.values()) == {sc.SCHEMA_URL}, scopes
