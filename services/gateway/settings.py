"""The gateway's settings, from ``LLM_GATEWAY_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.env import SettingError, env_bool, env_float, env_int, env_list, env_str


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        settings = cls(
            host=env_str("LLM_GATEWAY_HOST", "127.0.0.1", env),
            port=env_int("LLM_GATEWAY_PORT", 8080, env),
            orchestrator_url=env_str("LLM_ORCHESTRATOR_URL", "http://127.0.0.1:8081", env),
            api_keys=env_list("LLM_GATEWAY_API_KEYS", env),
            insecure_no_auth=env_bool("LLM_GATEWAY_INSECURE_NO_AUTH", False, env),
            max_body_bytes=env_int("LLM_GATEWAY_MAX_BODY_BYTES", 1 << 20, env, minimum=1),
            max_in_flight=env_int("LLM_GATEWAY_MAX_IN_FLIGHT", 256, env, minimum=1),
            upstream_timeout=env_float("LLM_GATEWAY_UPSTREAM_TIMEOUT_SECONDS", 60.0, env),
            cache_entries=env_int("LLM_GATEWAY_CACHE_ENTRIES", 1024, env),
            cache_ttl=env_float("LLM_GATEWAY_CACHE_TTL_SECONDS", 300.0, env),
        )
        settings.check()
        return settings

    def check(self) -> None:
        # No key ships with the product: running open must be a deliberate, visible choice.
        if not self.api_keys and not self.insecure_no_auth:
            raise SettingError(
                "LLM_GATEWAY_API_KEYS is empty: set API keys, "
                "or LLM_GATEWAY_INSECURE_NO_AUTH=true for local development"
            )
