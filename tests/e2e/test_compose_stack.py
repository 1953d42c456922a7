"""deploy/compose.yaml run for real, with the README's commands: a Docker engine of our own, the images
built, every service but Grafana and Tempo up and healthy, requests through the published loopback ports,
then ``down`` and the host's networking as it was.

The engine is Debian's docker.io, started by PID and stopped by PID (scripts/docker-engine.sh). No registry
is reachable from our build machines, so the base images are local stand-ins tagged with deploy/versions.env's
names (scripts/docker-stand-ins.sh); compose builds the services' image from deploy/services.Dockerfile.
The Collector's image holds the binary scripts/build-backends.sh compiled, under deploy/collector/Dockerfile's
runtime stage as it is (scripts/stand-ins/compose.collector-from-binary.yaml): that Dockerfile's OCB compile
costs ~10 more minutes on 2 cores, which a cold CI run cannot spare. ``LLMTEL_COMPOSE_COLLECTOR=ocb`` builds
it from deploy/collector/Dockerfile as users do. Grafana and Tempo (AGPL) are never built here.

Traffic stays on loopback and on the bridge network compose creates: a few requests, no load.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.stack import Binaries, JaegerClient, PrometheusClient, Span, poll_until
from deploy.stack._binaries import REPO_ROOT
from tests.support.backends import require
from tests.support.ci import missing
from tests.support.compose import (
    APP_SERVICES,
    README_DOWN,
    README_UP,
    compose,
    env_file,
    readme_compose_block,
)
from tests.support.docker_engine import ENGINE, STAND_INS, ComposeStack, HostNetwork, run

RUNNING = {*APP_SERVICES, "otelcol", "prometheus", "jaeger", "alertmanager"}
"""Every service ``up`` starts: STARTED and what they depend on."""
SERVICES = set(APP_SERVICES)
GATEWAY = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"
JAEGER = "http://127.0.0.1:16686"
ALERTMANAGER = "http://127.0.0.1:9093"
COLLECTOR_HEALTH = "http://127.0.0.1:13133/"
COLLECTOR_METRICS = "http://127.0.0.1:8888/metrics"
WEBHOOK = "llm-telemetry-test-webhook"
FROM_BINARY = "scripts/stand-ins/compose.collector-from-binary.yaml"
MODEL = "mistral-7b-instruct"


def _say(config: pytest.Config) -> Any:
    """Print past pytest's capture: the scripts' progress lines show as they come, in CI's log too."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"[compose] {line}", flush=True)

    return say


def _published_ports() -> list[int]:
    services = compose()["services"]
    ports = []
    for name in RUNNING:
        for spec in services[name].get("ports", []):
            ports.append(int(str(spec).split(":")[1]))
    return sorted(ports)


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _webhook_dir(root: Path) -> Path:
    """What the user provides: one URL per file the Alertmanager config names, readable by its user nobody."""
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    for receiver in ("oncall", "team"):
        url_file = root / f"{receiver}-webhook.url"
        url_file.write_text(f"http://webhook:8080/{receiver}\n")
        url_file.chmod(0o644)
    return root


@pytest.fixture(scope="module")
def compose_stack(
    request: pytest.FixtureRequest, binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    say = _say(request.config)
    if os.geteuid() != 0:
        missing("the compose stack runs a Docker engine of its own (dockerd, iptables): it needs root")
    require(binaries, "prometheus", "promtool", "alertmanager", "jaeger", "otelcol")
    built = run(["scripts/build-backends.sh", "--print"], 60).check().output
    compose_binary = Path(dict(line.split("=", 1) for line in built.splitlines())["DOCKER_COMPOSE"])
    if not compose_binary.is_file():
        missing(f"docker compose not built ({compose_binary}): run `scripts/build-backends.sh compose`")
    block = readme_compose_block()
    for command in (README_UP, README_DOWN):
        assert command in block, f"the README's compose section no longer says `{command}`"

    started = time.monotonic()
    timings: dict[str, float] = {}
    timings["install"] = run([str(ENGINE), "install"], 900, say).check().seconds
    # An engine an interrupted run left: stopped and its changes undone, so "before" is the host's own.
    run([str(ENGINE), "stop"], 180, say).check()
    before = HostNetwork.now()
    engine = run([str(ENGINE), "start"], 120, say).check()
    env = dict(os.environ)
    env |= dict(line.split("=", 1) for line in engine.output.splitlines() if re.match(r"^DOCKER_\w+=", line))
    api_key = secrets.token_urlsafe(24)
    env |= {
        "LLM_GATEWAY_API_KEYS": api_key,
        # Required by the file even though Grafana is not started: compose interpolates every service.
        "GF_SECURITY_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "ALERTMANAGER_WEBHOOK_DIR": str(_webhook_dir(tmp_path_factory.mktemp("compose") / "webhooks")),
    }
    ocb = os.environ.get("LLMTEL_COMPOSE_COLLECTOR") == "ocb"
    if not ocb:
        env["COMPOSE_FILE"] = f"deploy/compose.yaml:{FROM_BINARY}"
    stack = ComposeStack(env, api_key, before, say, timings)
    try:
        stand_ins = [str(STAND_INS), *(["--collector-ocb"] if ocb else [])]
        timings["stand-in images"] = run(stand_ins, 1200, say, env).check().seconds
        taken = [port for port in _published_ports() if _port_taken(port)]
        assert not taken, f"loopback ports compose publishes are in use: {taken}"
        say(f"{README_UP}  (Collector {'compiled by OCB' if ocb else 'from the cached binary'})")
        up = run(README_UP.split(), 2400 if ocb else 900, None, env)
        if up.returncode != 0:  # why a container is unhealthy is in its log
            logs = stack.docker("compose", "logs", "--no-color", "--tail", "30").output
            raise AssertionError(
                f"`{README_UP}` exited {up.returncode} after {up.seconds:.0f} s:\n{up.output[-4000:]}\n\n"
                f"the containers' logs end:\n{logs[-8000:]}"
            )
        timings["up --build --wait"] = up.seconds
        network = f"{compose()['name']}_backends"  # Alertmanager's network: the webhook receives its alerts
        receiver = REPO_ROOT / "tests" / "support" / "compose_webhook.py"
        python = env_file(REPO_ROOT / "deploy" / "versions.env")["PYTHON_IMAGE"]
        stack.containers.append(WEBHOOK)
        stack.docker(
            "run", "--detach", "--name", WEBHOOK, "--network", network, "--network-alias", "webhook",
            "--volume", f"{receiver}:/webhook.py:ro", python, "python", "/webhook.py", "8080",
        ).check()  # fmt: skip
        timings["setup"] = time.monotonic() - started
        say("stack up: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items()))
    except BaseException:
        stack.shutdown()
        raise
    yield stack
    stack.shutdown()
    say("timings: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items()))


def _compose_ps(stack: ComposeStack) -> dict[str, dict[str, Any]]:
    output = stack.docker("compose", "ps", "--all", "--format", "json").check().output
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {row["Service"]: row for row in rows}


def test_every_service_is_healthy_and_answers_health_from_its_container(compose_stack: ComposeStack) -> None:
    ps = _compose_ps(compose_stack)
    assert set(ps) == RUNNING, "Grafana and Tempo are not started; every other service is"
    unhealthy = {name: row["Status"] for name, row in ps.items() if row["Health"] != "healthy"}
    assert not unhealthy, unhealthy
    for service, port in APP_SERVICES.items():
        url = f"http://127.0.0.1:{port}/health"
        probe = f"import urllib.request as u; print(u.urlopen('{url}', timeout=5).status)"
        answer = compose_stack.docker("compose", "exec", "-T", service, "python", "-c", probe).check()
        assert answer.output.strip().splitlines()[-1] == "200", answer.output
        uid = compose_stack.docker("compose", "exec", "-T", service, "id", "-u").check().output.strip()
        assert uid == "10001", f"{service} runs as uid {uid}"


def _chat(stack: ComposeStack, trace_id: str, **extra: Any) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {stack.api_key}",
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }
    body = {
        "model": MODEL,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": f"compose stack {trace_id}"}],
        **extra,
    }
    return httpx.post(f"{GATEWAY}/v1/chat/completions", json=body, headers=headers, timeout=30)


def _trace(trace_id: str) -> list[Span]:
    jaeger = JaegerClient(JAEGER)

    def whole() -> list[Span] | None:
        # Each service's server span ends last and may come in a later batch than its children.
        spans = jaeger.get_trace(trace_id)
        servers = {s.service_name for s in spans if s.kind == "SPAN_KIND_SERVER"}
        return spans if servers >= SERVICES else None

    try:
        return poll_until(
            whole, f"trace {trace_id} with a server span of each of {sorted(SERVICES)}", 60, interval=1
        )
    finally:
        jaeger.close()


@pytest.fixture(scope="module")
def chats(compose_stack: ComposeStack) -> dict[str, str]:
    """Trace id → kind of the chat requests sent through the gateway: two JSON, one SSE."""
    sent = {}
    for kind in ("json", "json", "sse"):
        trace_id = secrets.token_hex(16)
        response = _chat(compose_stack, trace_id, **({"stream": True} if kind == "sse" else {}))
        assert response.status_code == 200, response.text
        if kind == "sse":
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            assert json.loads(events[0])["object"] == "chat.completion.chunk"
        else:
            assert response.json()["choices"][0]["message"]["content"]
        sent[trace_id] = kind
    return sent


def test_chat_requests_through_the_gateway_are_traced_across_all_three_services(
    compose_stack: ComposeStack, chats: dict[str, str]
) -> None:
    no_key = httpx.post(f"{GATEWAY}/v1/chat/completions", json={"model": MODEL, "messages": []}, timeout=30)
    assert no_key.status_code == 401
    for trace_id, kind in chats.items():
        spans = _trace(trace_id)
        assert {s.trace_id for s in spans} == {trace_id}, kind
        server = {s.service_name: s for s in spans if s.kind == "SPAN_KIND_SERVER"}
        assert server["gateway"].attributes["http.response.status_code"] == 200, kind
        assert server["inference"].attributes["gen_ai.request.model"] == MODEL, kind
        # One chain: each hop's server span is a descendant of the one before it.
        by_id = {s.span_id: s for s in spans}
        for caller, callee in (("gateway", "orchestrator"), ("orchestrator", "inference")):
            ancestors, span = set(), server[callee]
            while span.parent_span_id in by_id:
                span = by_id[span.parent_span_id]
                ancestors.add(span.span_id)
            assert server[caller].span_id in ancestors, f"{kind}: {callee} is not under {caller}"


def test_an_exemplar_in_prometheus_resolves_to_the_requests_trace(
    compose_stack: ComposeStack, chats: dict[str, str]
) -> None:
    prometheus = PrometheusClient(PROMETHEUS)
    selector = 'http_server_request_duration_seconds_bucket{job="gateway"}'

    def ours() -> list[str]:
        series = prometheus.query_exemplars(selector, time.time() - 600, time.time())
        return [e.trace_id for s in series for e in s.exemplars if e.trace_id in chats]

    try:
        trace_ids = poll_until(ours, f"an exemplar of one of our requests on {selector}", 120, interval=1)
    finally:
        prometheus.close()
    spans = _trace(trace_ids[0])
    assert {s.trace_id for s in spans} == {trace_ids[0]}
    assert {s.service_name for s in spans} >= SERVICES


def test_the_collector_reports_its_own_health_and_is_scraped(compose_stack: ComposeStack) -> None:
    health = httpx.get(COLLECTOR_HEALTH, timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "Server available"
    metrics = httpx.get(COLLECTOR_METRICS, timeout=10).text
    accepted = [line for line in metrics.splitlines() if line.startswith("otelcol_receiver_accepted_spans")]
    assert accepted, "the Collector's own metrics have no accepted spans"
    prometheus = PrometheusClient(PROMETHEUS)
    try:
        up = poll_until(
            lambda: [s for s in prometheus.query('up{job="otelcol"}') if s.value == 1],
            "Prometheus scraping the Collector's own metrics (up{job='otelcol'} == 1)",
            timeout=60,
            interval=1,
        )
    finally:
        prometheus.close()
    assert up


def test_an_alert_reaches_the_webhook_through_alertmanager(compose_stack: ComposeStack) -> None:
    # Prometheus sends its alerts to the compose Alertmanager...
    def active() -> list[str]:
        body = httpx.get(f"{PROMETHEUS}/api/v1/alertmanagers", timeout=10).json()
        return [manager["url"] for manager in body["data"]["activeAlertmanagers"]]

    managers = poll_until(active, "an active Alertmanager in Prometheus", timeout=60, interval=1)
    assert managers == ["http://alertmanager:9093/api/v2/alerts"]
    # ...which routes a critical one, as Prometheus would post it, to the on-call webhook of the user's
    # mounted URL file, on the compose network.
    name = f"ComposeStackTest{secrets.token_hex(4)}"
    alert = {
        "labels": {"alertname": name, "severity": "critical", "job": "compose-stack-test"},
        "annotations": {"summary": "tests/e2e/test_compose_stack.py"},
    }
    posted = httpx.post(f"{ALERTMANAGER}/api/v2/alerts", json=[alert], timeout=10)
    assert posted.status_code == 200, posted.text

    def delivered() -> list[dict[str, Any]]:
        logs = compose_stack.docker("logs", WEBHOOK).check().output
        received = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        return [r for r in received if any(a["labels"]["alertname"] == name for a in r["body"]["alerts"])]

    # The critical route's group_wait is 10 s.
    notifications = poll_until(delivered, f"{name} at the webhook", timeout=90, interval=1)
    assert {n["path"] for n in notifications} == {"/oncall"}
    assert notifications[0]["body"]["status"] == "firing"


def test_down_and_the_engines_stop_leave_the_host_as_it_was(compose_stack: ComposeStack) -> None:
    """Runs last: the README's ``down -v``, then dockerd stopped by PID and what it changed put back."""
    end = compose_stack.shutdown()
    end.down.check()
    end.stop.check()
    before, after = compose_stack.host_before, end.host
    assert after.forward_policy() == before.forward_policy()
    assert not after.docker_chains(), after.docker_chains()
    assert "docker0" not in after.links
    assert after.sysctls["/proc/sys/net/ipv4/ip_forward"] == before.sysctls["/proc/sys/net/ipv4/ip_forward"]
    assert after.rules == before.rules
    assert after.links == before.links
    assert after.sysctls == before.sysctls
    assert run(["docker", "info"], 30, None, compose_stack.env).returncode != 0, "the engine still answers"
