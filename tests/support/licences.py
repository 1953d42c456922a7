"""The AGPL-licensed Grafana modules we never build, fetch or vendor: Tempo, Grafana and Loki."""

from __future__ import annotations

import re

FORBIDDEN_MODULE = re.compile(r"github\.com/grafana/(tempo|grafana|loki)\b", re.IGNORECASE)


def forbidden_references(text: str) -> list[str]:
    """Each forbidden module path ``text`` names, once (its packages and major versions included)."""
    return sorted({m.group(0) for m in FORBIDDEN_MODULE.finditer(text)})
