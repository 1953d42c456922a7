"""Per-tenant budgets: tokens and estimated spend per fixed window, and the refusal of a request over them.

The running totals live in the gateway process (one :class:`Ledger`): exact for one replica. With ``N``
replicas behind a load balancer that spreads a tenant's requests evenly, ``LLM_GATEWAY_BUDGET_REPLICAS=N``
makes each replica hold ``1/N`` of every budget, so the tenant's total stays within it (a skewed balance
refuses early rather than overspends). Exact totals across replicas need a shared counter (an atomic
increment per request in Redis or a database, which this repository does not ship); docs/deployment.md says
how the metric shows the global use either way.

A request is checked before it is sent upstream and charged when it ends, with the tokens and the cost it
reported: requests already in flight when a budget runs out still finish, so a window can end slightly over
its limit (by at most what those requests use). Windows are fixed, from the Unix epoch, so every replica
and every restart agrees where a window ends; a restart forgets the window's totals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.common import semconv as service_sc
from services.common.semconv import ErrorType
from services.gateway.errors import ApiError
from services.gateway.tenants import Budget
from telemetry import instruments


@dataclass
class _Window:
    budget: Budget
    start: float = 0.0
    tokens: int = 0
    usd: float = 0.0
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    """The gauge's points' attributes, per limit, built once."""

    def roll(self, now: float) -> None:
        if now >= self.start + self.budget.window_s:
            self.start = now - now % self.budget.window_s
            self.tokens, self.usd = 0, 0.0

    @property
    def end(self) -> float:
        return self.start + self.budget.window_s


class Ledger:
    """The running totals of every tenant with a budget; ``share`` is this replica's part of each."""

    def __init__(
        self,
        budgets: Mapping[str, Budget],
        meter: Meter,
        share: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.share = share
        self.clock = clock
        self._windows = {tenant: _Window(budget) for tenant, budget in budgets.items()}
        for tenant, window in self._windows.items():
            window.attributes = {
                limit: {service_sc.LLM_TENANT_ID: tenant, service_sc.LLM_BUDGET_LIMIT: limit}
                for limit in ("tokens", "usd")
            }
        if self._windows:
            instruments.create(meter, service_sc.LLM_GATEWAY_BUDGET_UTILIZATION, callbacks=[self._observe])

    def __bool__(self) -> bool:
        return bool(self._windows)

    def check(self, tenant: str) -> None:
        """Raise 429 ``budget_exceeded`` if ``tenant`` has used its budget of the current window."""
        window = self._windows.get(tenant)
        if window is None:
            return
        now = self.clock()
        window.roll(now)
        budget, share = window.budget, self.share
        if budget.tokens is not None and window.tokens >= budget.tokens * share:
            used = f"{window.tokens:,} of its {_limit(budget.tokens * share):,} tokens"
        elif budget.usd is not None and window.usd >= budget.usd * share:
            used = f"USD {window.usd:.4f} of its USD {budget.usd * share:.4f}"
        else:
            return
        ends = datetime.fromtimestamp(window.end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise ApiError(
            429,
            ErrorType.BUDGET_EXCEEDED,
            f"tenant {tenant!r} has used {used} for the budget window that ends at {ends}; "
            "requests are refused until then",
            code="insufficient_quota",
            retry_after=max(1, math.ceil(window.end - now)),
        )

    def charge(self, tenant: str, tokens: int, usd: float | None) -> None:
        """Add what one request used (however it ended) to ``tenant``'s current window."""
        window = self._windows.get(tenant)
        if window is None:
            return
        window.roll(self.clock())
        window.tokens += tokens
        if usd is not None:
            window.usd += usd

    def utilization(self, tenant: str) -> dict[str, float]:
        """The used share (0..1 and past it) of each limit of ``tenant``'s current window, in this replica."""
        window = self._windows[tenant]
        window.roll(self.clock())
        budget, share = window.budget, self.share
        used: dict[str, float] = {}
        if budget.tokens is not None:
            used["tokens"] = window.tokens / (budget.tokens * share)
        if budget.usd is not None:
            used["usd"] = window.usd / (budget.usd * share)
        return used

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, self._windows[tenant].attributes[limit])
            for tenant in list(self._windows)
            for limit, value in self.utilization(tenant).items()
        ]


def _limit(value: float) -> int:
    return math.floor(value)
