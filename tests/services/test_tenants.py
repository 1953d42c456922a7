"""Tenants from the key file: hashed keys, loud mistakes, the tenant on spans, metric points and baggage down
to the inference server, and budgets that refuse with 429 in OpenAI's shape."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics

from services.common.env import SettingError
from services.gateway.budgets import Ledger
from services.gateway.errors import ApiError
from services.gateway.tenants import Budget, KeyRing, key_digest, load_key_file, main as tenants_main
from tests.support.services import API_KEY, InProcessServices

ACME_KEY = "acme-key-not-secret"
BETA_KEY = "beta-key-not-secret"
CHAT = {"model": "fast-model", "messages": [{"role": "user", "content": "hello tenants"}]}


def _key_file(tmp_path: Path, tenants: list[dict[str, Any]], name: str = "keys.yaml") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"tenants": tenants}))  # JSON is YAML too
    return str(path)


def _tenants(budget_tokens: int | None = None) -> list[dict[str, Any]]:
    acme: dict[str, Any] = {"id": "acme", "keys": [{"sha256": key_digest(ACME_KEY), "team": "search"}]}
    if budget_tokens is not None:
        acme["budget"] = {"window": "1d", "tokens": budget_tokens}
    return [acme, {"id": "beta", "keys": [{"sha256": key_digest(BETA_KEY)}]}]


def test_the_hash_helper_prints_the_digest_the_key_file_holds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ACME_KEY + "\n"))
    assert tenants_main(["hash"]) == 0
    assert capsys.readouterr().out.strip() == key_digest(ACME_KEY)
    assert len(key_digest(ACME_KEY)) == 64


def test_keys_map_to_their_tenant_and_team_and_plain_keys_stay_anonymous_tenants(tmp_path: Path) -> None:
    ring = KeyRing.build((API_KEY,), _key_file(tmp_path, _tenants(1000)))
    acme = ring.callers[key_digest(ACME_KEY)]
    assert (acme.id, acme.team, acme.tenant.budget) == ("acme", "search", Budget(86400, 1000, None))
    assert ring.callers[key_digest(BETA_KEY)].id == "beta"
    assert ring.callers[key_digest(API_KEY)].id == "key-" + key_digest(API_KEY)[:16]
    assert set(ring.tenants) == {"acme", "beta", "key-" + key_digest(API_KEY)[:16]}
    assert ring.budgets() == {"acme": Budget(86400, 1000, None)}


@pytest.mark.parametrize(
    ("tenants", "expected"),
    [
        (
            [{"id": "acme", "keys": [{"sha256": ACME_KEY}]}],
            "tenants[0].keys[0].sha256: expected 64 lowercase hex digits (a SHA-256 digest, never the key",
        ),
        (
            [
                {"id": "acme", "keys": [{"sha256": key_digest("a")}]},
                {"id": "acme", "keys": [{"sha256": key_digest("b")}]},
            ],
            "tenants[1].id: 'acme' is declared twice",
        ),
        (
            [
                {"id": "a", "keys": [{"sha256": key_digest("a")}]},
                {"id": "b", "keys": [{"sha256": key_digest("a")}]},
            ],
            "tenants[1].keys[0].sha256: the same key as tenants[0].keys[0]",
        ),
        (
            [
                {
                    "id": "acme",
                    "budget": {"window": "1 day", "tokens": 5},
                    "keys": [{"sha256": key_digest("a")}],
                }
            ],
            "tenants[0].budget.window: '1 day' is not a duration like 30m, 1h, 1d or 3600s",
        ),
        (
            [{"id": "acme", "budget": {"window": "1h"}, "keys": [{"sha256": key_digest("a")}]}],
            "tenants[0].budget: set tokens, usd or both",
        ),
        ([{"id": "_OTHER", "keys": [{"sha256": key_digest("a")}]}], "tenants[0].id: '_OTHER' must be"),
        ([{"id": "acme", "keys": []}], "tenants[0].keys: List should have at least 1 item"),
        (
            [{"id": "acme", "key": [{"sha256": key_digest("a")}]}],
            "tenants[0].key: Extra inputs are not permitted",
        ),
    ],
)
def test_a_wrong_key_file_stops_start_up_naming_the_file_and_the_entry(
    tmp_path: Path, tenants: list[dict[str, Any]], expected: str
) -> None:
    path = _key_file(tmp_path, tenants)
    with pytest.raises(SettingError) as raised:
        load_key_file(path)
    message = str(raised.value)
    assert message.startswith(f"LLM_GATEWAY_KEY_FILE={path!r} is invalid: ")
    assert expected in message
    assert ACME_KEY not in message or "sha256" in expected  # a plaintext key given as a digest is not echoed


def test_an_unreadable_or_malformed_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"LLM_GATEWAY_KEY_FILE='/no/such/keys.yaml': cannot read it"):
        load_key_file("/no/such/keys.yaml")
    broken = tmp_path / "keys.json"
    broken.write_text("{not json")
    with pytest.raises(SettingError, match=r"keys.json' is not valid JSON"):
        load_key_file(str(broken))


def test_a_key_in_both_the_variable_and_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"a key is also in LLM_GATEWAY_KEY_FILE.*tenant 'acme'"):
        KeyRing.build((ACME_KEY,), _key_file(tmp_path, _tenants()))


def test_the_ledger_refuses_past_a_limit_until_the_window_ends() -> None:
    now = [1_000_000.0]
    ledger = Ledger({"acme": Budget(3600, tokens=100, usd=1.0)}, metrics.get_meter("t"), clock=lambda: now[0])
    ledger.check("acme")
    ledger.charge("acme", 60, 0.25)
    assert ledger.utilization("acme") == {"tokens": 0.6, "usd": 0.25}
    ledger.charge("acme", 45, None)
    with pytest.raises(ApiError) as raised:
        ledger.check("acme")
    error = raised.value
    assert (error.status, error.error_type, error.code) == (429, "budget_exceeded", "insufficient_quota")
    assert "tenant 'acme' has used 105 of its 100 tokens" in str(error)
    assert error.retry_after == 3600 - 1_000_000 % 3600
    ledger.check("beta")  # no budget: never refused
    now[0] += 3600  # the next window
    ledger.check("acme")
    assert ledger.utilization("acme") == {"tokens": 0.0, "usd": 0.0}


def test_each_replica_holds_its_part_of_a_budget() -> None:
    ledger = Ledger({"acme": Budget(3600, tokens=100)}, metrics.get_meter("t"), share=0.5)
    ledger.charge("acme", 50, None)
    assert ledger.utilization("acme") == {"tokens": 1.0}
    with pytest.raises(ApiError, match="50 of its 50 tokens"):
        ledger.check("acme")


def test_a_tenant_is_on_the_spans_the_metric_points_and_the_baggage_down_to_inference(
    services: InProcessServices, extra_gateway: Callable[..., str], tmp_path: Path
) -> None:
    url = extra_gateway(key_file=_key_file(tmp_path, _tenants()), api_keys=())
    with services.client(base_url=url, headers={"Authorization": f"Bearer {ACME_KEY}"}) as client:
        answer = client.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    trace_spans = [s for s in services.spans() if s["attributes"].get("llm.tenant.id") == "acme"]
    names = {s["name"] for s in trace_spans}
    assert "chat fast-model" in names  # the gateway's GenAI span
    chat = next(s for s in trace_spans if s["name"] == "chat fast-model")
    assert chat["attributes"]["llm.tenant.team"] == "search"
    gateway = services.metrics("gateway")
    duration = gateway["gen_ai.client.inference.duration"]["points"]
    assert any(p["attributes"].get("llm.tenant.id") == "acme" for p in duration)
    inference = services.metrics("inference")
    ttft = inference["gen_ai.server.time_to_first_token"]["points"]
    assert any(p["attributes"].get("llm.tenant.id") == "acme" for p in ttft)
    tokens = inference["llm.inference.tokens"]["points"]
    assert any(p["attributes"].get("llm.tenant.id") == "acme" for p in tokens)
    queued = inference["llm.inference.queue.duration"]["points"]
    assert any(p["attributes"].get("llm.tenant.id") == "acme" for p in queued)


def test_a_tenant_over_budget_gets_429_in_openais_shape_and_the_refusal_is_counted(
    services: InProcessServices, extra_gateway: Callable[..., str], tmp_path: Path
) -> None:
    url = extra_gateway(key_file=_key_file(tmp_path, _tenants(budget_tokens=5)), api_keys=())
    with services.client(base_url=url, headers={"Authorization": f"Bearer {ACME_KEY}"}) as client:
        first = client.post("/v1/chat/completions", json=CHAT)  # within budget: uses more than 5 tokens
        refused = client.post("/v1/chat/completions", json=CHAT)
    with services.client(base_url=url, headers={"Authorization": f"Bearer {BETA_KEY}"}) as client:
        other = client.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == 200
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert error["code"] == "insufficient_quota"
    assert error["message"].startswith("tenant 'acme' has used ")
    assert "tokens for the budget window that ends at " in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert other.status_code == 200  # another tenant is not affected
    gateway = services.metrics("gateway")
    rejected = gateway["llm.gateway.rejected_requests"]["points"]
    assert any(
        p["attributes"] == {"error.type": "budget_exceeded", "llm.tenant.id": "acme"} and p["value"] >= 1
        for p in rejected
    )
    used = gateway["llm.gateway.budget.utilization"]["points"]
    assert any(
        p["attributes"] == {"llm.tenant.id": "acme", "llm.budget.limit": "tokens"} and p["value"] > 1
        for p in used
    )
