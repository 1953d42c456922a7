"""LiteLLM's proxy as a real OpenAI-compatible upstream, started on loopback with mock responses (offline).

Not written here, not a fake of ours: the ``litellm[proxy]`` server (pinned in the dev extra), configured
with ``mock_response`` models, answers ``/v1/chat/completions`` with OpenAI's JSON and SSE, its usage,
its errors and its status codes. Its start costs about 20 s of CPU (its imports), so a module starts all
it needs at once and waits for them together.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.stack import ManagedProcess, ProcessSpec, free_port, http_ready
from deploy.stack._process import start_process

READY_TIMEOUT = 180.0
"""Three proxies booting at once on two cores take about a minute; past three, something is wrong."""

# What the mock models say. LiteLLM streams a mock answer three characters per chunk.
ANSWER = "Hello from a real OpenAI-compatible server."
LONG_ANSWER = "".join(f"word{i} " for i in range(4000))
"""About 10,000 chunks: seconds of streaming, long enough to kill the server in the middle."""


def mock_models(prefix: str = "") -> dict[str, dict[str, Any]]:
    """Model group → litellm_params: a plain answer, a slow one, a rate limit, a failure, a long stream."""
    return {
        f"{prefix}mock-chat": {"mock_response": ANSWER},
        f"{prefix}mock-slow": {"mock_response": "late", "mock_delay": 3},
        f"{prefix}mock-rate-limited": {"mock_response": "litellm.RateLimitError"},
        f"{prefix}mock-failing": {"mock_response": "litellm.InternalServerError"},
        f"{prefix}mock-long": {"mock_response": LONG_ANSWER},
    }


@dataclass
class LiteLLMServer:
    name: str
    process: ManagedProcess
    port: int
    master_key: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """SIGKILL, the whole process group: the server dies mid-answer, as a crashed upstream does."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=10)


def start_litellm(
    name: str, models: Mapping[str, Mapping[str, Any]], work_dir: Path, master_key: str
) -> LiteLLMServer:
    """Start one proxy (not waiting for it: :func:`wait_ready`) serving ``models`` on a free port."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model_list": [
            {
                "model_name": group,
                "litellm_params": {"model": f"openai/{group}", "api_key": "unused", **params},
            }
            for group, params in models.items()
        ],
        "general_settings": {"master_key": master_key},
        # One attempt per request: a retry with back-off would hide the upstream's own status and timing.
        "litellm_settings": {"num_retries": 0, "telemetry": False},
        "router_settings": {"num_retries": 0},
    }
    config_path = work_dir / f"{name}.json"
    config_path.write_text(json.dumps(config))
    port = free_port()
    litellm = Path(sys.executable).with_name("litellm")
    spec = ProcessSpec(
        name,
        [str(litellm), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
        # Offline: the bundled model-price map, no usage telemetry; nothing of ours (no OTEL_*) leaks in.
        env={
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "OTEL_SDK_DISABLED": "true",
            "HOME": str(work_dir),
        },
        ready_check=http_ready(f"http://127.0.0.1:{port}/health/liveliness"),
        ready_timeout=READY_TIMEOUT,
        cwd=work_dir,
        stop_timeout=5.0,
    )
    return LiteLLMServer(name, start_process(spec, work_dir / "logs"), port, master_key)
