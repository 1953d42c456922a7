"""The Collector's label bounds (deploy/collector/config/base.yaml, transform/bound_labels) stay wired
everywhere: every overlay that restates a pipeline's processors keeps them, and the allowed models'
defaults (the config's, the chart's, the local stack's) are the built-in catalog's, so none drifts from
the others.
The bounds' behaviour itself is tests/e2e/test_label_bounds.py."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from deploy.stack import Stack
from services.common.models import BUILTIN_CATALOG

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "deploy" / "collector" / "config"
BOUND = "transform/bound_labels"
CATALOG = [m.name for m in BUILTIN_CATALOG]


def test_every_pipeline_where_spans_or_pushed_metrics_enter_is_bounded() -> None:
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        pipelines = (yaml.safe_load(path.read_text()).get("service") or {}).get("pipelines") or {}
        for name, pipeline in pipelines.items():
            if "otlp" in pipeline.get("receivers", []) and "processors" in pipeline:
                assert BOUND in pipeline["processors"], f"{path.name}: {name} takes OTLP without {BOUND}"
    base = yaml.safe_load((CONFIG_DIR / "base.yaml").read_text())["service"]["pipelines"]
    assert BOUND in base["traces/in"]["processors"]
    assert BOUND in base["metrics"]["processors"]


def test_the_allowed_models_default_to_the_built_in_catalog_everywhere() -> None:
    text = (CONFIG_DIR / "base.yaml").read_text()
    defaults = set(re.findall(r"\$\{env:OTELCOL_ALLOWED_MODELS:-([^}]*)\}", text))
    assert defaults == {",".join(CATALOG)}
    values = yaml.safe_load((REPO / "deploy/helm/llm-telemetry/values.yaml").read_text())
    assert values["collector"]["allowedModels"] == CATALOG
    stack = Stack()
    try:
        assert stack.collector_env()["OTELCOL_ALLOWED_MODELS"] == ",".join(CATALOG)
    finally:
        stack.stop()
