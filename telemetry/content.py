"""What content capture records: prompt and completion text, redacted and bounded.

Capture is off by default (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``). When an operator turns
it on, every string of the messages (their text, parts, tool-call arguments) goes through, in order:

1. the redaction patterns (``LLM_TELEMETRY_CONTENT_REDACT``: a JSON array of regular expressions, Python
   ``re`` syntax), each match replaced by ``[REDACTED]``, then the code's own hook
   (``TracesOptions(content_redactor=...)``, a ``str -> str`` callable), for what a pattern cannot say;
2. the per-message cap (``LLM_TELEMETRY_CONTENT_MAX_MESSAGE_CHARS``): a longer string keeps its start and
   ends with ``…[truncated N chars]``;
3. the per-span cap (``LLM_TELEMETRY_CONTENT_MAX_CHARS``) on each attribute's JSON: the oldest messages
   are left out, the most recent kept, and ``llm.content.omitted_messages`` says how many.

So one request can never put more than the per-span cap into a span (a 1 MiB prompt would otherwise make
a 1 MiB attribute, and an export batch of such spans can pass the Collector's 4 MiB gRPC message limit
and be refused whole, losing other requests' spans).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

REDACTED = "[REDACTED]"
OMITTED_MESSAGES = "llm.content.omitted_messages"
"""Span attribute: messages left out of a content attribute to keep it under the per-span cap."""


def parse_patterns(raw: str) -> tuple[str, ...]:
    """``LLM_TELEMETRY_CONTENT_REDACT``: a JSON array of regular expressions, each of which must compile."""
    try:
        patterns = json.loads(raw)
    except ValueError:
        raise ValueError('expected a JSON array of regular expressions, e.g. ["sk-[A-Za-z0-9]+"]') from None
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError("expected a JSON array of non-empty strings")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return tuple(patterns)


@dataclass(frozen=True)
class ContentPolicy:
    """Capture on or off, and how captured text is redacted and bounded (module docstring)."""

    enabled: bool = False
    patterns: Sequence[str] = ()
    redactor: Callable[[str], str] | None = field(default=None, compare=False)
    max_message_chars: int = 4096
    max_chars: int = 16384

    @cached_property
    def _compiled(self) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in self.patterns)) if self.patterns else None

    def text(self, value: str) -> str:
        """One string as it may be recorded: redacted, then capped."""
        if self._compiled is not None:
            value = self._compiled.sub(REDACTED, value)
        if self.redactor is not None:
            value = self.redactor(value)
        if len(value) > self.max_message_chars:
            cut = len(value) - self.max_message_chars
            value = f"{value[: self.max_message_chars]}…[truncated {cut} chars]"
        return value

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value

    def render(self, messages: object) -> tuple[str, int]:
        """The attribute's JSON and how many of the oldest messages were left out to fit the per-span cap."""
        cleaned = self._walk(messages)
        if not isinstance(cleaned, list):
            cleaned = [cleaned]
        parts = [json.dumps(message, ensure_ascii=False) for message in cleaned]
        # Newest first, while they fit: json.dumps(list) is "[" + ", ".join(items) + "]".
        size, kept = 2, 0
        for part in reversed(parts):
            if size + len(part) + (2 if kept else 0) > self.max_chars:
                break
            size += len(part) + (2 if kept else 0)
            kept += 1
        omitted = len(parts) - kept
        rendered = "[" + ", ".join(parts[omitted:]) + "]"
        return rendered, omitted
