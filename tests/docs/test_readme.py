"""The README cannot drift from the code: commands, settings and metric names are checked here."""

from __future__ import annotations

from pathlib import Path

from telemetry._config import SETTINGS

from telemetry import semconv

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    first_block = README.split("```")[1]
    commands = [
        line.split("#")[0].strip() for line in first_block.splitlines() if line.strip() and "#" in line
    ]
    assert commands == ["scripts/run-stack.sh", "scripts/test.sh"]
    ci = (REPO / ".ci/run").read_text()
    assert "exec scripts/test.sh" in ci
    for script in ("scripts/run-stack.sh", "scripts/test.sh", ".ci/run"):
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_every_metric_is_documented_with_its_prometheus_name() -> None:
    for spec in semconv.METRICS.values():
        kind = spec.kind.value.replace("_", " ")
        assert f"| `{spec.name}` | `{spec.unit}` | {kind} |" in README, spec.name
        assert f"`{spec.prometheus_name}`" in README, spec.prometheus_name


def test_every_setting_is_documented() -> None:
    for setting in SETTINGS.values():
        if setting.env != "OTEL_SDK_DISABLED":  # standard, listed among the OTEL_* variables
            assert f"`{setting.env}`" in README, setting.env


def test_each_services_settings_table_is_the_generated_one() -> None:
    from services.gateway.settings import SETTINGS as gateway
    from services.inference.server import SETTINGS as inference
    from services.orchestrator.app import SETTINGS as orchestrator
    from telemetry.settings import markdown_table

    for name, table in (("Gateway", gateway), ("Orchestrator", orchestrator), ("Inference", inference)):
        expected = f"**{name}**\n\n{markdown_table(table.values())}\n"
        assert expected in README, f"{name} settings table is stale"
