"""The gateway's settings, from ``LLM_GATEWAY_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.env import SettingError, is_loopback, read_table
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
        "comma-separated API keys clients send as `Bearer <key>`, each its own tenant (`key-` and a hash"
        " prefix) without a budget; required unless `LLM_GATEWAY_KEY_FILE` is set or"
        " `LLM_GATEWAY_INSECURE_NO_AUTH` is true",
        shown_default="none",
    ),
    "key_file": Setting(
        "LLM_GATEWAY_KEY_FILE",
        parse_str,
        "",
        "YAML or JSON file of tenants, their budgets and their keys' SHA-256 digests"
        " (`services/gateway/tenants.py`; `python -m services.gateway.tenants hash` hashes a key), read at"
        " start-up",
        shown_default="none",
    ),
    "budget_replicas": Setting(
        "LLM_GATEWAY_BUDGET_REPLICAS",
        parse_int(minimum=1),
        1,
        "gateway replicas sharing the tenants' budgets: each enforces its `1/N` part of every budget (running"
        " totals are kept per process)",
    ),
    "insecure_no_auth": Setting(
        "LLM_GATEWAY_INSECURE_NO_AUTH",
        parse_bool,
        False,
        "serve without API keys (local development only: refused unless `LLM_GATEWAY_HOST` is loopback)",
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
    "max_in_flight_per_key": Setting(
        "LLM_GATEWAY_MAX_IN_FLIGHT_PER_KEY",
        parse_int(),
        0,
        "requests one API key may have in flight; more get 429 (`key_rate_limit_exceeded`). 0: half of"
        " `LLM_GATEWAY_MAX_IN_FLIGHT` with two keys or more, all of it with one",
    ),
    "max_connections": Setting(
        "LLM_GATEWAY_MAX_CONNECTIONS",
        parse_int(minimum=1),
        1024,
        "open client connections; one more is closed at once (`too_many_connections`)",
    ),
    "header_timeout": Setting(
        "LLM_GATEWAY_HEADER_TIMEOUT_SECONDS",
        parse_float(minimum=0.1),
        10.0,
        "time a client has to send a whole request head, from its connection or its previous answer;"
        " then 408 and the connection closed (`request_timeout`)",
    ),
    "body_timeout": Setting(
        "LLM_GATEWAY_BODY_TIMEOUT_SECONDS",
        parse_float(minimum=0.1),
        10.0,
        "time a client has to send a whole request body; then 408 (`request_timeout`)",
    ),
    "stream_write_timeout": Setting(
        "LLM_GATEWAY_STREAM_WRITE_TIMEOUT_SECONDS",
        parse_float(minimum=0.1),
        30.0,
        "time one streamed event may wait for a client that reads nothing; then the stream is ended",
    ),
    "upstream_timeout": Setting(
        "LLM_GATEWAY_UPSTREAM_TIMEOUT_SECONDS",
        parse_float(),
        60.0,
        "time allowed for each read of the upstream's answer (its first byte, then each streamed chunk)",
    ),
    "upstream_total_timeout": Setting(
        "LLM_GATEWAY_UPSTREAM_TOTAL_TIMEOUT_SECONDS",
        parse_float(minimum=1.0),
        300.0,
        "time allowed for the upstream's whole answer, streamed or not (504, or an in-band error event)",
    ),
    "max_upstream_bytes": Setting(
        "LLM_GATEWAY_MAX_UPSTREAM_BYTES",
        parse_int(minimum=1024),
        8 << 20,
        "largest upstream answer (a whole body, or one streamed event) accepted (502 above)",
    ),
    "cache_entries": Setting(
        "LLM_GATEWAY_CACHE_ENTRIES", parse_int(), 1024, "response-cache size (0: no cache)"
    ),
    "cache_max_bytes": Setting(
        "LLM_GATEWAY_CACHE_MAX_BYTES",
        parse_int(),
        64 << 20,
        "bytes of answers the response cache holds at most (the oldest go first)",
    ),
    "cache_ttl": Setting(
        "LLM_GATEWAY_CACHE_TTL_SECONDS", parse_float(), 300.0, "response-cache entry lifetime"
    ),
    "continue_traces": Setting(
        "LLM_GATEWAY_CONTINUE_TRACES",
        parse_bool,
        True,
        "continue the trace of a caller with a valid key (its `traceparent`), under the gateway's own"
        " sampling decision; `false`: every request starts a new trace, the caller's as a span link."
        " Requests without a valid key never join a caller's trace; inbound `baggage` and `tracestate`"
        " are always dropped",
    ),
    "tls_cert_file": Setting(
        "LLM_GATEWAY_TLS_CERT_FILE",
        parse_str,
        "",
        "PEM certificate (chain) the public port serves HTTPS with; with `LLM_GATEWAY_TLS_KEY_FILE`, the"
        " port speaks TLS only and refuses plain HTTP (empty: plain HTTP, for a TLS proxy or ingress in"
        " front)",
        shown_default="none",
    ),
    "tls_key_file": Setting(
        "LLM_GATEWAY_TLS_KEY_FILE",
        parse_str,
        "",
        "PEM private key of `LLM_GATEWAY_TLS_CERT_FILE` (unencrypted: mount it from a secret store)",
        shown_default="none",
    ),
    "ops_address": Setting(
        "LLM_GATEWAY_OPS_ADDRESS",
        parse_str,
        "",
        "host:port of a side port serving `/health`, `/ready` and `/metrics`; the public port then serves"
        " no `/metrics` (empty: no side port)",
        shown_default="none",
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
    max_in_flight_per_key: int = 0
    max_connections: int = 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    stream_write_timeout: float = 30.0
    upstream_total_timeout: float = 300.0
    max_upstream_bytes: int = 8 << 20
    cache_max_bytes: int = 64 << 20
    continue_traces: bool = True
    ops_address: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    key_file: str = ""
    budget_replicas: int = 1
    max_header_bytes: int = 16 * 1024
    """As h11's own limit on an incomplete request head: a head past it is refused however it arrives
    (uvicorn answers 400 itself when the head comes in pieces, the gateway 431 when it comes whole)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        settings = cls(**read_table(SETTINGS, env))
        settings.check()
        return settings

    def key_limit(self, keys: int) -> int:
        """In-flight requests one key may hold (``max_in_flight_per_key``, 0 resolved for ``keys`` keys)."""
        if self.max_in_flight_per_key:
            return self.max_in_flight_per_key
        return self.max_in_flight if keys < 2 else max(1, self.max_in_flight // 2)

    def check(self) -> None:
        # No key ships with the product: running open must be a deliberate, visible choice.
        if not self.api_keys and not self.key_file and not self.insecure_no_auth:
            raise SettingError(
                "LLM_GATEWAY_API_KEYS and LLM_GATEWAY_KEY_FILE are empty: set API keys or a key file, "
                "or LLM_GATEWAY_INSECURE_NO_AUTH=true for local development"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingError(
                "LLM_GATEWAY_TLS_CERT_FILE and LLM_GATEWAY_TLS_KEY_FILE go together: set both to serve HTTPS,"
                " or neither for plain HTTP"
            )
        for variable, path in (
            ("LLM_GATEWAY_TLS_CERT_FILE", self.tls_cert_file),
            ("LLM_GATEWAY_TLS_KEY_FILE", self.tls_key_file),
        ):
            if path and not Path(path).is_file():
                raise SettingError(f"{variable}={path!r} is not a file")
        if self.insecure_no_auth and not self.api_keys and not self.key_file and not is_loopback(self.host):
            raise SettingError(
                f"LLM_GATEWAY_INSECURE_NO_AUTH=true serves anyone who reaches LLM_GATEWAY_HOST={self.host!r}:"
                " it is for local development on a loopback address (127.0.0.1, ::1, localhost) only"
            )
