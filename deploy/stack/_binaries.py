"""Where the backend binaries are: ``scripts/build-backends.sh --print``, or an explicit override."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = "scripts/build-backends.sh"

# Environment variables that point at a binary directly, for machines that build or install the
# backends some other way. They win over the build script's cache paths.
OVERRIDE_VARS = {
    "otelcol": "LLMTEL_OTELCOL",
    "prometheus": "LLMTEL_PROMETHEUS",
    "promtool": "LLMTEL_PROMTOOL",
    "jaeger": "LLMTEL_JAEGER",
    "alertmanager": "LLMTEL_ALERTMANAGER",
    # The SLO rules' generator (python -m deploy.slo) and its tests.
    "sloth": "LLMTEL_SLOTH",
    # The Helm chart's checks (tests/e2e/test_helm.py): a throwaway API server and the Helm CLI.
    "etcd": "LLMTEL_ETCD",
    "kube-apiserver": "LLMTEL_KUBE_APISERVER",
    "kubectl": "LLMTEL_KUBECTL",
    "helm": "LLMTEL_HELM",
    # The metrics store past one Prometheus (tests/e2e/test_metrics_store.py) and the Collector's load
    # generator (tests/benchmarks/bench_collector_capacity.py).
    "thanos": "LLMTEL_THANOS",
    "telemetrygen": "LLMTEL_TELEMETRYGEN",
    # The chart's Cassandra trace store (tests/e2e/test_trace_store_cassandra.py): a launcher script.
    "cassandra": "LLMTEL_CASSANDRA",
}
_PRINT_KEYS = {
    "OTELCOL": "otelcol",
    "PROMETHEUS": "prometheus",
    "PROMTOOL": "promtool",
    "JAEGER": "jaeger",
    "ALERTMANAGER": "alertmanager",
    "SLOTH": "sloth",
    "ETCD": "etcd",
    "KUBE_APISERVER": "kube-apiserver",
    "KUBECTL": "kubectl",
    "HELM": "helm",
    "THANOS": "thanos",
    "TELEMETRYGEN": "telemetrygen",
    "CASSANDRA": "cassandra",
}


class BinaryMissingError(FileNotFoundError):
    """A backend binary is not built; the message says how to build it."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the backend binaries (they may not exist: see :meth:`require`)."""

    paths: dict[str, Path]

    def require(self, *names: str) -> dict[str, Path]:
        """The paths of ``names``, or :class:`BinaryMissingError` listing every missing one."""
        missing = [n for n in names if not _is_executable(self.paths.get(n))]
        if missing:
            lines = [f"  {n}: {self.paths.get(n, '(unknown)')}" for n in missing]
            raise BinaryMissingError(
                "backend binaries not built:\n"
                + "\n".join(lines)
                + f"\nBuild them with `{BUILD_SCRIPT} all` (cached after the first run), or point "
                + ", ".join(OVERRIDE_VARS[n] for n in missing if n in OVERRIDE_VARS)
                + " at existing binaries."
            )
        return {n: self.paths[n] for n in names}


def _is_executable(path: Path | None) -> bool:
    return path is not None and path.is_file() and os.access(path, os.X_OK)


def locate_binaries() -> Binaries:
    """Ask the build script where it caches each binary (it builds nothing with ``--print``)."""
    script = REPO_ROOT / BUILD_SCRIPT
    paths: dict[str, Path] = {}
    try:
        out = subprocess.run(
            ["bash", str(script), "--print"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BinaryMissingError(f"cannot run `{BUILD_SCRIPT} --print`: {exc}") from exc
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in _PRINT_KEYS:
            paths[_PRINT_KEYS[key]] = Path(value)
    for name, var in OVERRIDE_VARS.items():
        override = os.environ.get(var)
        if override:
            paths[name] = Path(override)
    return Binaries(paths)
