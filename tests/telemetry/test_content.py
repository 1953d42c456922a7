"""Captured content: redacted by the configured patterns and the code's hook, each text and each span
bounded, and nothing recorded unless capture is on."""

from __future__ import annotations

import json

import pytest

from telemetry import TelemetryConfigError, TracesOptions, capture_messages, testing
from telemetry.content import REDACTED, ContentPolicy

CARD = "4111111111111111"


def test_patterns_and_the_hook_redact_every_text_of_the_messages() -> None:
    policy = ContentPolicy(
        enabled=True,
        patterns=(r"sk-[A-Za-z0-9]{8,}", r"\b\d{16}\b"),
        redactor=lambda s: s.replace("alice", "[USER]"),
    )
    messages = [
        {"role": "user", "content": f"my key is sk-abcdefgh1234 and card {CARD}"},
        {"role": "user", "content": [{"type": "text", "text": "I am alice"}]},
        {"role": "assistant", "tool_calls": [{"function": {"arguments": json.dumps({"card": CARD})}}]},
    ]
    rendered, omitted = policy.render(messages)
    assert omitted == 0
    assert "sk-abcdefgh1234" not in rendered
    assert CARD not in rendered
    assert "alice" not in rendered
    recorded = json.loads(rendered)
    assert recorded[0]["content"] == f"my key is {REDACTED} and card {REDACTED}"
    assert recorded[1]["content"][0]["text"] == "I am [USER]"


def test_each_text_is_cut_and_the_span_keeps_the_newest_messages_under_its_cap() -> None:
    policy = ContentPolicy(enabled=True, max_message_chars=100, max_chars=1000)
    long = [{"role": "user", "content": f"{i}:" + "x" * 10_000} for i in range(50)]
    rendered, omitted = policy.render(long)
    assert len(rendered) <= 1000
    kept = json.loads(rendered)
    assert omitted == 50 - len(kept) > 0
    assert kept[-1]["content"].startswith("49:")  # the newest survive
    assert kept[-1]["content"].endswith("…[truncated 9903 chars]")


def test_a_one_mebibyte_prompt_makes_a_bounded_attribute_and_says_what_was_left_out() -> None:
    with testing.capture("content", capture_content=True) as c:
        span = c.telemetry.tracer_provider.get_tracer("t").start_span("chat m")
        prompt = [{"role": "user", "content": "x" * (1 << 20)}] + [{"role": "user", "content": "y"}] * 2000
        assert capture_messages(span, input_messages=prompt, policy=c.telemetry.content_policy)
        span.end()
        attributes = c.spans()[0]["attributes"]
    assert len(attributes["gen_ai.input.messages"]) <= 16384
    assert attributes["llm.content.omitted_messages"] > 0


def test_the_settings_come_from_the_environment_and_a_bad_pattern_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_TELEMETRY_CONTENT_REDACT", '["sk-[a-z]+", "\\\\d{4}"]')
    monkeypatch.setenv("LLM_TELEMETRY_CONTENT_MAX_MESSAGE_CHARS", "64")
    policy = TracesOptions(capture_content=True).content_policy()
    assert (policy.patterns, policy.max_message_chars, policy.max_chars) == (
        ("sk-[a-z]+", "\\d{4}"),
        64,
        16384,
    )
    assert policy.text("sk-abc 1234") == f"{REDACTED} {REDACTED}"
    for raw in ('["(unclosed"]', "sk-.*", "[1]"):
        monkeypatch.setenv("LLM_TELEMETRY_CONTENT_REDACT", raw)
        with pytest.raises(TelemetryConfigError, match="LLM_TELEMETRY_CONTENT_REDACT="):
            TracesOptions()


def test_nothing_is_recorded_with_capture_off_whatever_the_policy_says() -> None:
    with testing.capture("content") as c:
        span = c.telemetry.tracer_provider.get_tracer("t").start_span("chat m")
        assert not capture_messages(
            span, input_messages=[{"role": "user", "content": "hi"}], policy=c.telemetry.content_policy
        )
        span.end()
        assert "gen_ai.input.messages" not in c.spans()[0]["attributes"]
