"""deploy.stack's own behaviour, without backends: polling, teardown, rendering, the OTLP JSON reader."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.stack import PollTimeoutError, ProcessSpec, StackError, poll_until, render_prometheus_config
from deploy.stack._process import start_process
from deploy.stack.clients import BackendError, read_v3_traces, spans_from_otlp_json


def test_poll_until_times_out_with_the_last_error() -> None:
    calls = []

    def probe() -> str:
        calls.append(1)
        raise ConnectionError(f"refused #{len(calls)}")

    with pytest.raises(PollTimeoutError) as info:
        poll_until(probe, "the thing", timeout=0.3, interval=0.05)
    message = str(info.value)
    assert "waiting for the thing" in message
    assert f"ConnectionError: refused #{len(calls)}" in message


def test_poll_until_treats_falsy_results_as_not_yet() -> None:
    results = iter([None, [], 0, ["found"]])
    assert poll_until(lambda: next(results), "a list", timeout=5, interval=0.01) == ["found"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it holds nothing, so it counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # A parent that ignores SIGTERM and leaves a child behind: both must be gone after stop().
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    spec = ProcessSpec(
        "stubborn",
        [sys.executable, "-c", script],
        ready_check=pid_file.exists,
        ready_timeout=10,
        stop_timeout=0.5,
    )
    proc = start_process(spec, tmp_path / "logs")
    proc.wait_ready()
    child = int(pid_file.read_text())
    assert _alive(proc.pid)
    assert _alive(child)
    proc.stop()
    poll_until(lambda: not _alive(child) and not _alive(proc.pid), "parent and child gone", timeout=5)


def test_a_process_that_exits_before_ready_fails_at_once_with_its_log(tmp_path: Path) -> None:
    spec = ProcessSpec(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config: nope'); sys.exit(3)"],
        ready_check=lambda: False,
        ready_timeout=30,
    )
    started = time.monotonic()
    proc = start_process(spec, tmp_path)
    with pytest.raises(StackError) as info:
        proc.wait_ready()
    assert time.monotonic() - started < 10
    assert "exited with code 3" in str(info.value)
    assert "bad config: nope" in str(info.value)


def test_rendered_prometheus_config_points_at_the_run(tmp_path: Path) -> None:
    rendered = render_prometheus_config(
        tmp_path / "prometheus.yml",
        prometheus_addr="127.0.0.1:1001",
        collector_telemetry_addr="127.0.0.1:1002",
        collector_exporter_addr="127.0.0.1:1003",
        jaeger_metrics_addr="127.0.0.1:1004",
        metrics_path="scrape",
        scrape_interval="1s",
        rules_dir=tmp_path / "rules",
    )
    config = yaml.safe_load(rendered.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "otelcol": ["127.0.0.1:1002"],
        "prometheus": ["127.0.0.1:1001"],
        "jaeger": ["127.0.0.1:1004"],
        "otelcol-exporter": ["127.0.0.1:1003"],
    }
    assert config["rule_files"] == [str(tmp_path / "rules" / "*.yml")]
    assert config["global"]["scrape_interval"] == "1s"


def test_a_streamed_jaeger_trace_becomes_spans_with_hex_ids() -> None:
    # What /api/v3/traces/{id} sends: OTLP JSON with hex ids, kinds and status codes as numbers, and a
    # large trace split over several {"result": ...} objects back to back.
    def chunk(service: str, span_id: str, parent: str, kind: int, status: dict[str, object]) -> str:
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        span = {
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spanId": span_id,
            "parentSpanId": parent,
            "name": f"{service} span",
            "kind": kind,
            "startTimeUnixNano": "1000",
            "endTimeUnixNano": "2000",
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}}],
            "status": status,
        }
        return json.dumps(
            {"result": {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}}
        )

    text = (
        chunk("gateway", "00f067aa0ba902b7", "", 2, {})
        + "\n"
        + chunk("inference", "b7ad6b7169203331", "00f067aa0ba902b7", 3, {"code": 2})
    )
    gateway, inference = spans_from_otlp_json(read_v3_traces(text))
    assert (gateway.trace_id, gateway.span_id, gateway.parent_span_id) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "",
    )
    assert (gateway.service_name, gateway.kind, gateway.status_code) == (
        "gateway",
        "SPAN_KIND_SERVER",
        "STATUS_CODE_UNSET",
    )
    assert (inference.parent_span_id, inference.kind, inference.status_code) == (
        "00f067aa0ba902b7",
        "SPAN_KIND_CLIENT",
        "STATUS_CODE_ERROR",
    )
    assert gateway.attributes == {"http.response.status_code": 200}
    assert (gateway.start_ns, gateway.end_ns) == (1000, 2000)


def test_an_error_inside_a_jaeger_body_is_raised() -> None:
    with pytest.raises(BackendError, match="No traces found"):
        read_v3_traces('{"error": {"httpCode": 500, "message": "No traces found"}}')
    with pytest.raises(BackendError, match="not JSON"):
        read_v3_traces("<html>")


def test_base64_ids_of_protobuf_json_are_read_too() -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": base64.b64encode(
                                    bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
                                ).decode()
                            }
                        ]
                    }
                ]
            }
        ]
    }
    [span] = spans_from_otlp_json(body)
    assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
