"""docs/reference/ is the generator's output (scripts/reference_docs.py), and the generator misses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.gateway.settings import SETTINGS as GATEWAY
from services.inference.server import SETTINGS as INFERENCE
from services.orchestrator.app import SETTINGS as ORCHESTRATOR
from telemetry import semconv
from telemetry.options import MetricsOptions, TelemetrySettings, TracesOptions
from telemetry.settings import declared_settings, nested_options

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "scripts" / "reference_docs.py"
REFERENCE = REPO / "docs" / "reference"


def _check(folder: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(GENERATOR), "--check", "--out", str(folder)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_committed_reference_is_the_generators_output() -> None:
    checked = _check(REFERENCE)
    assert checked.returncode == 0, f"{checked.stderr}run scripts/reference_docs.py and commit the result"


def test_check_fails_on_a_hand_edited_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, timeout=60)
    assert _check(tmp_path).returncode == 0
    edited = tmp_path / "metrics.md"
    edited.write_text(edited.read_text().replace("| `hw.power` |", "| `hw.power.watts` |"))
    checked = _check(tmp_path)
    assert checked.returncode == 1
    assert "metrics.md" in checked.stderr


def test_every_metric_is_documented_with_its_unit_kind_and_prometheus_name() -> None:
    metrics = (REFERENCE / "metrics.md").read_text()
    assert len(semconv.METRICS) > 50  # the library's and the services' (registered on import)
    for spec in semconv.METRICS.values():
        kind = spec.kind.value.replace("_", " ")
        assert f"| `{spec.name}` | `{spec.unit}` | {kind} | `{spec.prometheus_name}" in metrics, spec.name


def test_every_setting_is_documented_with_its_keyword() -> None:
    settings = (REFERENCE / "settings.md").read_text()
    groups = [
        TelemetrySettings,
        TracesOptions,
        MetricsOptions,
        *(options for _, options in nested_options(TelemetrySettings)),
    ]
    declared = [setting for group in groups for _, setting in declared_settings(group) if setting.in_table]
    assert len(declared) >= 14
    for setting in declared:
        assert f"`{setting.env}`" in settings, setting.env
    for table in (GATEWAY, ORCHESTRATOR, INFERENCE):
        for setting in table.values():
            assert f"| `{setting.env}` |" in settings, setting.env
