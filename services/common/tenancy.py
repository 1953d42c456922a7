"""The tenant behind the gateway: read from the baggage the gateway sets, bounded for metric points.

The gateway admits only the tenants it is configured with and sends their ids as ``llm.tenant.id`` baggage
(the only baggage that crosses its trust boundary). The orchestrator and the inference server trust their
callers but still bound the label: the first ``LLM_TENANT_LABEL_LIMIT`` distinct ids they see keep their
name on metric points, any later one (or one no gateway would send: too long, odd characters) is ``_OTHER``.
"""

from __future__ import annotations

import re
import threading

from opentelemetry import baggage
from opentelemetry.context import Context

from telemetry import semconv as sc
from telemetry.settings import Setting, parse_int

MAX_TENANT_LABELS = Setting(
    "LLM_TENANT_LABEL_LIMIT",
    parse_int(minimum=1),
    1000,
    "distinct `llm.tenant.id` values (from the gateway's baggage) kept on metric points; later ones are"
    " `_OTHER`",
)

_PLAUSIBLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def tenant_of(context: Context | None = None) -> str | None:
    """The ``llm.tenant.id`` baggage entry of ``context`` (the current one by default), if any."""
    value = baggage.get_baggage(sc.LLM_TENANT_ID, context)
    return value if isinstance(value, str) else None


class TenantLabels:
    """``llm.tenant.id`` values for metric points: at most ``limit`` distinct ones, then ``_OTHER``."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, tenant: str | None) -> str | None:
        if tenant is None or tenant in self._seen:
            return tenant
        if not _PLAUSIBLE.match(tenant):
            return sc.OTHER
        with self._lock:
            if len(self._seen) >= self.limit:
                return sc.OTHER
            self._seen.add(tenant)
        return tenant
