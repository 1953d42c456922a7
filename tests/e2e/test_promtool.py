"""The Prometheus rules through the real promtool: every rule file checks, every unit test passes (each
alert firing and silent), and a wrong expectation fails.

promtool comes from ``scripts/build-backends.sh`` (or ``LLMTEL_PROMTOOL``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.stack import BinaryMissingError, locate_binaries
from tests.support.ci import missing
from tests.support.grafana import all_queries
from tests.support.promql import REPO_ROOT, RULES_DIR

TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"


def _rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def _test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.test.yml"))


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return locate_binaries().require("promtool")["promtool"]
    except BinaryMissingError as exc:
        missing(exc)


def _run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, check=False
    )


def test_rule_files_pass_promtool_check(promtool: Path) -> None:
    files = _rule_files()
    assert files, f"no rule files in {RULES_DIR}"
    result = _run(promtool, "check", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_rule_unit_tests_pass_promtool(promtool: Path) -> None:
    files = _test_files()
    assert files, f"no promtool tests in {TESTS_DIR}"
    result = _run(promtool, "test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_promtool_reports_a_wrong_expectation(promtool: Path, tmp_path: Path) -> None:
    # The control for the test above: the same runner, one alert expected where none can fire.
    wrong = {
        "rule_files": [str(RULES_DIR / "alerts-collector.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": 'up{job="otelcol", instance="c1"}', "values": "1x10"}],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "OTelCollectorDown",
                        "exp_alerts": [{"exp_labels": {"severity": "critical", "job": "otelcol"}}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump(wrong))
    result = _run(promtool, "test", "rules", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(promtool: Path, tmp_path: Path) -> None:
    # promtool parses rule expressions without a server: each query becomes a recording rule.
    exprs = all_queries()
    rules = [{"record": f"grafana:query:{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    result = _run(promtool, "check", "rules", str(path))
    output = result.stdout + result.stderr
    # promtool names the failing rule by its index: map it back to the panel.
    bad = sorted({exprs[int(i)][0] for i in re.findall(r"grafana:query:(\d+)", output)})
    assert result.returncode == 0, f"{bad}\n{output}"
