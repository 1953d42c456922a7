"""The gateway's settings, from ``LLM_GATEWAY_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.env import SettingError, read_table
from telemetry.settings import Setting, parse_bool, parse_float, parse_int, parse_list, parse_str

SETTINGS: dict[str, Setting[Any]] = {
    "host": Setting("LLM_GATEWAY_HOST", parse_str, "127.0.0.1", "address to listen on"),
    "port": Setting("LLM_GATEWAY_PORT", parse_int(), 8080, "port to listen on"),
    "orchestrator_url": Setting(
        "LLM_ORCHESTRATOR_URL", parse_str, "http://127.0.0.1:8081", "the orchestrator's base URL"
    ),
    "api_keys": Setting(
        "LLM_GATEWAY_API_KEYS",
        parse_list,
        (),
        "comma-separated API keys clients send as `Bearer <key>`; required unless the next is true",
        shown_default="none",
    ),
    "insecure_no_auth": Setting(
        "LLM_GATEWAY_INSECURE_NO_AUTH", parse_bool, False, "serve without API keys (local development only)"
    ),
    "max_body_bytes": Setting(
        "LLM_GATEWAY_MAX_BODY_BYTES",
        parse_int(minimum=1),
        1 << 20,
        "largest request body accepted (413 above)",
    ),
    "max_header_bytes": Setting(
        "LLM_GATEWAY_MAX_HEADER_BYTES",
        parse_int(minimum=1024),
        16 * 1024,
        "largest request head accepted, header names and values (431 above)",
    ),
    "max_in_flight": Setting(
        "LLM_GATEWAY_MAX_IN_FLIGHT", parse_int(minimum=1), 256, "requests served at once; more get 429"
    ),
    "upstream_timeout": Setting(
        "LLM_GATEWAY_UPSTREAM_TIMEOUT_SECONDS", parse_float(), 60.0, "time allowed for the upstream's answer"
    ),
    "cache_entries": Setting(
        "LLM_GATEWAY_CACHE_ENTRIES", parse_int(), 1024, "response-cache size (0: no cache)"
    ),
    "cache_ttl": Setting(
        "LLM_GATEWAY_CACHE_TTL_SECONDS", parse_float(), 300.0, "response-cache entry lifetime"
    ),
}


@dataclass(frozen=True)
class GatewaySettings:
    host: str
    port: int
    orchestrator_url: str
    api_keys: tuple[str, ...]
    insecure_no_auth: bool
    max_body_bytes: int
    max_in_flight: int
    upstream_timeout: float
    cache_entries: int
    cache_ttl: float
    max_header_bytes: int = 16 * 1024
    """As h11's own limit on an incomplete request head: a head past it is refused however it arrives
    (uvicorn answers 400 itself when the head comes in pieces, the gateway 431 when it comes whole)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        settings = cls(**read_table(SETTINGS, env))
        settings.check()
        return settings

    def check(self) -> None:
        # No key ships with the product: running open must be a deliberate, visible choice.
        if not self.api_keys and not self.insecure_no_auth:
            raise SettingError(
                "LLM_GATEWAY_API_KEYS is empty: set API keys, "
                "or LLM_GATEWAY_INSECURE_NO_AUTH=true for local development"
            )
