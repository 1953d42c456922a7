"""The library ships on its own: the wheel holds ``telemetry`` alone and depends on the OpenTelemetry API,
SDK and exporters and prometheus-client only; installed into a clean venv with no extras it imports and
configures, and each integration without its extra names the extra to install."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
CORE = {
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "prometheus-client",
}
SERVICES_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "aiohttp",
    "yarl",
    "pydantic",
    "pyyaml",
    "httpx",
    "sniffio",
}


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of what the wheel may use (pyproject.toml, telemetry/): nothing else is needed, and
    the checkout gets no build/ or egg-info."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copytree(REPO / "telemetry", source / "telemetry", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    _run(UV, "build", "--wheel", "--quiet", "--out-dir", out, source)
    (built,) = out.glob("llm_telemetry-*.whl")
    return built


def _requirements(wheel: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The wheel's unconditional dependencies, and each extra's."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata).decode())
    core: set[str] = set()
    extras: dict[str, set[str]] = {}
    for requirement in message.get_all("Requires-Dist") or []:
        name = requirement.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
        if "extra ==" in requirement:
            extra = requirement.split("extra ==")[1].strip().strip("'\"")
            extras.setdefault(extra, set()).add(name.lower())
        else:
            core.add(name.lower())
    return core, extras


def test_the_wheel_holds_the_library_alone_with_its_type_marker_and_plugin(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"telemetry", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "telemetry/py.typed" in names
    assert "[pytest11]\ntelemetry = telemetry.pytest_plugin" in entry_points
    assert "[opentelemetry_distro]" in entry_points
    assert "[opentelemetry_configurator]" in entry_points


def test_the_wheel_depends_on_otel_and_prometheus_client_only(wheel: Path) -> None:
    core, extras = _requirements(wheel)
    assert core == CORE
    assert set(extras) == {"fastapi", "grpc", "httpx", "gpu", "instrument"}
    assert extras["fastapi"] == {"starlette"}
    assert not (core & SERVICES_ONLY)


def test_installed_alone_it_imports_and_configures_and_names_each_missing_extra(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "--quiet", "--python", python, wheel)
    installed = {
        p["name"].lower() for p in json.loads(_run(UV, "pip", "list", "--python", python, "--format", "json"))
    }
    assert not (installed & SERVICES_ONLY), installed & SERVICES_ONLY
    probe = REPO / "tests" / "support" / "wheel_probe.py"
    result = json.loads(_run(python, probe, cwd=tmp_path).splitlines()[-1])
    assert result["imported"] == []  # no integration is imported by `import telemetry` or configure()
    assert result["service"] == "alone"
    for extra in ("fastapi", "httpx", "gpu"):
        assert f"pip install 'llm-telemetry[{extra}]'" in result["hints"][extra], result["hints"]
