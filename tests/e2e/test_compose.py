"""deploy/compose.yaml's mounted configs through the real binaries of scripts/build-backends.sh.

Each service's mounts are laid out in a temporary root as the container sees them: the real promtool
checks Prometheus's config there, the real Jaeger validates its config with compose's environment, and
the real Alertmanager starts from its compose command line. The file itself is checked by
tests/deploy/test_compose_file.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import yaml

from deploy.stack import Binaries, ProcessSpec, free_port, http_ready
from deploy.stack._process import start_process
from tests.support.backends import require
from tests.support.compose import DEPLOY, command_flags, compose_service, container_root, mounts, under


def test_promtool_accepts_prometheus_config_as_mounted(binaries: Binaries, tmp_path: Path) -> None:
    promtool = require(binaries, "promtool")["promtool"]
    root = container_root("prometheus", tmp_path)
    config = command_flags(compose_service("prometheus")["command"])["--config.file"]
    result = subprocess.run(
        [str(promtool), "check", "config", str(root / config.lstrip("/"))],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # The rule files are found where the container finds them, not silently skipped.
    rules = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert rules
    found = re.search(r"SUCCESS: (\d+) rule files found", output)
    assert found, output[-3000:]
    assert int(found.group(1)) == len(rules), output[-3000:]


def test_jaeger_accepts_its_config_as_mounted_with_composes_environment(
    binaries: Binaries, tmp_path: Path
) -> None:
    jaeger = require(binaries, "jaeger")["jaeger"]
    service = compose_service("jaeger")
    root = container_root("jaeger", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAEGER_")}
    env |= {k: str(v) for k, v in service["environment"].items()}
    result = subprocess.run(
        [str(jaeger), "validate", *under(root, [a.replace("file:", "") for a in service["command"]])],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_alertmanager_starts_from_its_compose_command_line(binaries: Binaries, tmp_path: Path) -> None:
    """``alertmanager`` has no check mode, so start it as compose would, on a free loopback port."""
    binary = require(binaries, "alertmanager")["alertmanager"]
    service = compose_service("alertmanager")
    root = container_root("alertmanager", tmp_path / "root")
    # What the user provides: one URL per file the config names, in the mounted directory.
    for mount in mounts("alertmanager", service):
        if mount.user_var:
            webhooks = root / mount.target.lstrip("/")
            webhooks.mkdir(parents=True, exist_ok=True)
            for name in ("oncall-webhook.url", "team-webhook.url"):
                (webhooks / name).write_text("http://127.0.0.1:9/never-sent\n")
    addr = f"127.0.0.1:{free_port()}"
    spec = ProcessSpec(
        "alertmanager",
        [str(binary), *under(root, service["command"]), f"--web.listen-address={addr}"],
        cwd=root / service["working_dir"].lstrip("/"),
        ready_check=http_ready(f"http://{addr}/-/ready"),
        ready_timeout=60,
    )
    process = start_process(spec, tmp_path / "logs")
    try:
        process.wait_ready()
        status = httpx.get(f"http://{addr}/api/v2/status", timeout=5).json()
        loaded = yaml.safe_load(status["config"]["original"])
        assert {r["name"] for r in loaded["receivers"]} == {"oncall-webhook", "team-webhook"}
        assert status["cluster"]["status"] == "disabled"
    finally:
        process.stop()


def test_alertmanager_exits_on_a_bad_config(binaries: Binaries, tmp_path: Path) -> None:
    """Guards the test above: a config Alertmanager cannot load must stop it, not leave it ready."""
    binary = require(binaries, "alertmanager")["alertmanager"]
    bad = tmp_path / "alertmanager.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    result = subprocess.run(
        [
            str(binary),
            f"--config.file={bad}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            "--cluster.listen-address=",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr
