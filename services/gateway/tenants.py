"""Tenants: who a key belongs to, and what that tenant may spend.

The key file (``LLM_GATEWAY_KEY_FILE``, YAML or JSON) declares each tenant, its budget and its keys, the
keys as SHA-256 digests only, never in clear::

    tenants:
      - id: acme                          # the tenant: on spans, metric points and the baggage
        budget:                           # optional; either limit, or both
          window: 1d                      # fixed windows from the Unix epoch (UTC): 30m, 1h, 1d, 7d, 3600s
          tokens: 5000000                 # input + output tokens per window
          usd: 25.0                       # estimated spend per window (gen_ai.usage.cost.amount)
        keys:
          - sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
            team: search                  # optional: on the spans of this key's requests
          - sha256: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752

Hash a key with ``python -m services.gateway.tenants hash`` (reads it from standard input) or
``printf %s "$KEY" | sha256sum``. A mistake stops start-up naming the file and the entry
(``tenants[1].keys[0].sha256: ...``). Keys of ``LLM_GATEWAY_API_KEYS`` keep working, each its own
anonymous tenant ``key-`` + the first 16 hex digits of its digest, without a budget.

The configured tenants are the allow-list of ``llm.tenant.id`` on metric points: the gateway never sees
another value (every admitted request maps to one of them), and the services behind it map any value
they did not learn from the gateway to ``_OTHER`` past their own cap (:mod:`services.common.tenancy`).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.env import SettingError

ANONYMOUS = "anonymous"
"""The tenant of a gateway that runs without keys (``LLM_GATEWAY_INSECURE_NO_AUTH``)."""

_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Tenant ids become label values: short, no spaces, not ``_OTHER``."""


def key_digest(key: str) -> str:
    """The SHA-256 of a key, lowercase hex: how the key file stores it."""
    return hashlib.sha256(key.encode()).hexdigest()


def anonymous_tenant_id(digest: str) -> str:
    """The tenant of a key given in ``LLM_GATEWAY_API_KEYS``: stable across replicas, not secret."""
    return "key-" + digest[:16]


@dataclass(frozen=True)
class Budget:
    """Limits per fixed window of ``window_s`` seconds (windows start at multiples of it since the epoch,
    so every replica agrees on them)."""

    window_s: int
    tokens: int | None = None
    usd: float | None = None


@dataclass(frozen=True)
class Tenant:
    id: str
    budget: Budget | None = None


@dataclass(frozen=True)
class Caller:
    """The identity of an admitted request: its tenant, and the key's team if the file names one."""

    tenant: Tenant
    team: str | None = None

    @property
    def id(self) -> str:
        return self.tenant.id


@dataclass(frozen=True)
class KeyRing:
    """Every accepted key (by digest) and the caller it makes; every tenant by id."""

    callers: Mapping[str, Caller]
    tenants: Mapping[str, Tenant]

    @classmethod
    def build(cls, plain_keys: tuple[str, ...], key_file: str) -> KeyRing:
        callers: dict[str, Caller] = {}
        tenants: dict[str, Tenant] = {}
        if key_file:
            callers, tenants = load_key_file(key_file)
        for key in plain_keys:
            digest = key_digest(key)
            if digest in callers:
                raise SettingError(
                    f"LLM_GATEWAY_API_KEYS: a key is also in LLM_GATEWAY_KEY_FILE={key_file!r} (tenant "
                    f"{callers[digest].id!r}): give each key once"
                )
            tenant = Tenant(anonymous_tenant_id(digest))
            tenants[tenant.id] = tenant
            callers[digest] = Caller(tenant)
        return cls(callers, tenants)

    def __len__(self) -> int:
        return len(self.callers)

    def budgets(self) -> dict[str, Budget]:
        return {t.id: t.budget for t in self.tenants.values() if t.budget is not None}


# ---- the file --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _BudgetEntry(_Strict):
    window: str
    tokens: int | None = Field(default=None, ge=1)
    usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class _KeyEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    team: str | None = Field(default=None, min_length=1, max_length=64)


class _TenantEntry(_Strict):
    id: str
    budget: _BudgetEntry | None = None
    keys: list[_KeyEntry] = Field(min_length=1)


class _KeyFile(_Strict):
    tenants: list[_TenantEntry] = Field(min_length=1)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


def _window_seconds(text: str) -> int | None:
    match = _WINDOW.match(text)
    return int(match[1]) * _UNIT_SECONDS[match[2]] if match else None


def load_key_file(path: str) -> tuple[dict[str, Caller], dict[str, Tenant]]:
    """The callers (by key digest) and tenants (by id) of the key file, or SettingError naming the file
    and every entry at fault. Never echoes a digest: a reader of the logs learns no key's hash."""
    where = f"LLM_GATEWAY_KEY_FILE={path!r}"
    try:
        text = Path(path).read_text()
        data: Any = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except OSError as exc:
        raise SettingError(f"{where}: cannot read it: {exc.strerror}") from None
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.endswith(".json") else "YAML"
        raise SettingError(f"{where} is not valid {kind}: {exc}") from None
    try:
        parsed = _KeyFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            message = str(error["msg"])
            if error["loc"][-1:] == ("sha256",) and error["type"] == "string_pattern_mismatch":
                message = "expected 64 lowercase hex digits (a SHA-256 digest, never the key itself)"
            problems.append(f"{_where(error['loc'])}: {message}")
        raise SettingError(f"{where} is invalid: " + "; ".join(problems)) from None
    problems = []
    callers: dict[str, Caller] = {}
    tenants: dict[str, Tenant] = {}
    seen_at: dict[str, str] = {}
    for i, entry in enumerate(parsed.tenants):
        at = f"tenants[{i}]"
        if not _TENANT_ID.match(entry.id) or entry.id.startswith("key-") or entry.id == ANONYMOUS:
            problems.append(
                f"{at}.id: {entry.id!r} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a"
                f" letter or digit, and neither {ANONYMOUS!r} nor start with 'key-' (those name keys"
                " without a tenant)"
            )
        if entry.id in tenants:
            problems.append(f"{at}.id: {entry.id!r} is declared twice")
        budget = None
        if entry.budget is not None:
            seconds = _window_seconds(entry.budget.window)
            if seconds is None:
                problems.append(
                    f"{at}.budget.window: {entry.budget.window!r} is not a duration like 30m, 1h, 1d or 3600s"
                )
            if entry.budget.tokens is None and entry.budget.usd is None:
                problems.append(f"{at}.budget: set tokens, usd or both")
            budget = Budget(seconds or 1, entry.budget.tokens, entry.budget.usd)
        tenant = Tenant(entry.id, budget)
        tenants[entry.id] = tenant
        for j, key in enumerate(entry.keys):
            key_at = f"{at}.keys[{j}]"
            if key.sha256 in seen_at:
                problems.append(f"{key_at}.sha256: the same key as {seen_at[key.sha256]}")
            seen_at[key.sha256] = key_at
            callers[key.sha256] = Caller(tenant, key.team)
    if problems:
        raise SettingError(f"{where} is invalid: " + "; ".join(problems))
    return callers, tenants


def main(argv: list[str]) -> int:
    """``python -m services.gateway.tenants hash``: the digest of the key on standard input (one line; a
    trailing newline is not part of the key), for the key file."""
    if argv != ["hash"]:
        print("usage: python -m services.gateway.tenants hash  < key", file=sys.stderr)
        return 2
    key = sys.stdin.read().rstrip("\r\n")
    if not key:
        print("no key on standard input", file=sys.stderr)
        return 1
    print(key_digest(key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
