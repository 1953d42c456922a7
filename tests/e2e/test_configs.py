"""Every shipped backend config is accepted by the binary that will run it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import Binaries, Stack, StackConfig, render_prometheus_config
from deploy.stack._render import COLLECTOR_CONFIG_DIR, JAEGER_CONFIG, PROMETHEUS_CONFIG, MetricsPath
from tests.support.backends import require
from tests.support.ci import missing
from tests.support.licences import forbidden_references

OVERLAYS = sorted(p.name for p in COLLECTOR_CONFIG_DIR.glob("overlay-*.yaml"))
COMBINATIONS = [
    (),
    *((o,) for o in OVERLAYS),
    ("overlay-tail-sampling.yaml", "overlay-debug.yaml"),
]


def _run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{output[-3000:]}"
    return output


def test_every_overlay_opens_with_a_comment_on_what_it_adds() -> None:
    for path in COLLECTOR_CONFIG_DIR.glob("*.yaml"):
        assert path.read_text().startswith("# "), f"{path.name} must open with a header comment"
    assert {"overlay-tail-sampling.yaml", "overlay-debug.yaml", "overlay-scrape-only.yaml"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlays", COMBINATIONS, ids=lambda o: "+".join(["base", *o]))
def test_collector_config_validates(binaries: Binaries, overlays: tuple[str, ...]) -> None:
    otelcol = require(binaries, "otelcol")["otelcol"]
    stack = Stack(StackConfig(overlays=overlays), binaries)
    try:
        args = [f"--config=file:{COLLECTOR_CONFIG_DIR / 'base.yaml'}"]
        args += [f"--config=file:{COLLECTOR_CONFIG_DIR / o}" for o in overlays]
        # With the stack's environment, as it runs, and with none, as compose's defaults would fill in.
        _run([str(otelcol), "validate", *args], env={**os.environ, **stack.collector_env()})
        _run([str(otelcol), "validate", *args], env={"PATH": os.environ.get("PATH", "")})
    finally:
        stack.stop()


def test_collector_validate_rejects_an_unknown_key(binaries: Binaries, tmp_path: Path) -> None:
    """Guards the test above: validate must actually look inside component configs."""
    otelcol = require(binaries, "otelcol")["otelcol"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("connectors:\n  span_metrics:\n    no_such_option: 1\n")
    result = subprocess.run(
        [
            str(otelcol),
            "validate",
            f"--config=file:{COLLECTOR_CONFIG_DIR / 'base.yaml'}",
            f"--config=file:{bad}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no_such_option" in result.stderr + result.stdout


def test_repo_prometheus_config_passes_promtool(binaries: Binaries) -> None:
    promtool = require(binaries, "promtool")["promtool"]
    _run([str(promtool), "check", "config", PROMETHEUS_CONFIG.name], cwd=PROMETHEUS_CONFIG.parent)


def _render_prometheus(tmp_path: Path, *, metrics_path: MetricsPath = "remote_write", **options: Any) -> Path:
    """Prometheus' config rendered as the stack renders it, on fixed loopback addresses."""
    return render_prometheus_config(
        tmp_path / "prometheus.yml",
        prometheus_addr="127.0.0.1:19090",
        collector_telemetry_addr="127.0.0.1:18888",
        collector_exporter_addr="127.0.0.1:19464",
        metrics_path=metrics_path,
        scrape_interval="1s",
        **options,
    )


@pytest.mark.parametrize(
    "alertmanager_addr", [None, "127.0.0.1:19093"], ids=["no-alertmanager", "alertmanager"]
)
@pytest.mark.parametrize("metrics_path", ["remote_write", "scrape"])
def test_rendered_prometheus_config_passes_promtool(
    binaries: Binaries, tmp_path: Path, metrics_path: MetricsPath, alertmanager_addr: str | None
) -> None:
    promtool = require(binaries, "promtool")["promtool"]
    rendered = _render_prometheus(tmp_path, metrics_path=metrics_path, alertmanager_addr=alertmanager_addr)
    output = _run([str(promtool), "check", "config", str(rendered)])
    assert "SUCCESS" in output
    text = rendered.read_text()
    assert ("otelcol-exporter" in text) == (metrics_path == "scrape")
    for host in ("otelcol:", "alertmanager:9093"):
        assert host not in text, f"a compose hostname ({host}) survived rendering"
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    if alertmanager_addr is None:
        # The local stack runs no Alertmanager: nothing to send alerts to, nothing to scrape.
        assert "alerting" not in config
        assert "alertmanager" not in jobs
    else:
        managers = config["alerting"]["alertmanagers"]
        assert [m["static_configs"] for m in managers] == [[{"targets": [alertmanager_addr]}]]
        assert jobs["alertmanager"] == [{"targets": [alertmanager_addr]}]


def test_rendered_prometheus_config_with_a_store_past_it_passes_promtool(
    binaries: Binaries, tmp_path: Path
) -> None:
    promtool = require(binaries, "promtool")["promtool"]
    url = "http://127.0.0.1:19291/api/v1/receive"
    rendered = _render_prometheus(tmp_path, remote_write_url=url)
    assert "SUCCESS" in _run([str(promtool), "check", "config", str(rendered)])
    [remote] = yaml.safe_load(rendered.read_text())["remote_write"]
    assert remote["url"] == url
    assert remote["send_exemplars"] is True


def test_repo_prometheus_config_sends_alerts_to_and_scrapes_alertmanager() -> None:
    """What compose runs: the rendered copies above take these out or repoint them."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    managers = config["alerting"]["alertmanagers"]
    assert [m["static_configs"] for m in managers] == [[{"targets": ["alertmanager:9093"]}]]
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert jobs["alertmanager"] == [{"targets": ["alertmanager:9093"]}]


def test_rendered_prometheus_config_tolerates_an_empty_rules_dir(binaries: Binaries, tmp_path: Path) -> None:
    promtool = require(binaries, "promtool")["promtool"]
    (tmp_path / "rules").mkdir()
    rendered = _render_prometheus(tmp_path, rules_dir=tmp_path / "rules")
    _run([str(promtool), "check", "config", str(rendered)])


def test_jaeger_config_validates(binaries: Binaries, tmp_path: Path) -> None:
    jaeger = require(binaries, "jaeger")["jaeger"]
    stack = Stack(StackConfig(run_dir=tmp_path), binaries)
    env = {**os.environ, **stack.jaeger_env()}
    stack.stop()
    _run([str(jaeger), "validate", f"--config=file:{JAEGER_CONFIG}"], env=env)


def test_jaeger_config_defaults_validate_as_compose_runs_it(binaries: Binaries) -> None:
    # No variable set: the defaults in the file itself must make a valid config.
    jaeger = require(binaries, "jaeger")["jaeger"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAEGER_")}
    _run([str(jaeger), "validate", f"--config=file:{JAEGER_CONFIG}"], env=env)


@pytest.mark.parametrize("name", ["otelcol", "prometheus", "jaeger", "alertmanager", "sloth", "thanos"])
def test_no_agpl_module_is_compiled_into_a_binary_we_build(binaries: Binaries, name: str) -> None:
    # The module list Go embeds in every binary: what was really compiled in, whatever the scripts say.
    binary = require(binaries, name)[name]
    go = shutil.which("go")
    if go is None:
        missing("go is not on PATH (needed to read a binary's module list)")
    listing = _run([go, "version", "-m", str(binary)])
    modules = [line.split()[1] for line in listing.splitlines() if line.strip().startswith(("dep", "=>"))]
    assert len(modules) > 10, listing[:2000]
    assert not forbidden_references("\n".join(modules)), f"{name} compiles in AGPL code"
