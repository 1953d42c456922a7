"""The chart's Cassandra trace store, for real: the Jaeger config the chart renders for
``jaeger.storage.type=cassandra`` stores traces in a real Cassandra on loopback and reads them back.

Cassandra 5.0 (Apache-2.0) runs from its Maven Central jars (scripts/build-backends.sh cassandra); Jaeger
runs with exactly the ConfigMap, storage Secret and arguments the chart renders (ci/cassandra-values.yaml,
the servers pointed at loopback and the keyspace created by Jaeger). ``jaeger validate`` accepted the
chart's earlier rendering too, which kept Jaeger on Badger: only a real store shows where the spans went.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, format_trace_id

from deploy.stack import Binaries, ProcessSpec, Stack, http_ready, poll_until
from deploy.stack._binaries import REPO_ROOT
from tests.support.backends import require
from tests.support.cassandra import CassandraNode, cassandra_node

CHART = REPO_ROOT / "deploy" / "helm" / "llm-telemetry"
RELEASE = "llmtel"
SPANS_PER_TRACE = 3
TRACES = 20


@pytest.fixture(scope="module")
def stack(binaries: Binaries) -> Iterator[Stack]:
    """A stack used for its run directory, free ports and process handling; only what a test starts runs."""
    started = Stack(binaries=binaries)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def cassandra(binaries: Binaries, stack: Stack) -> CassandraNode:
    launcher = require(binaries, "cassandra")["cassandra"]
    node = cassandra_node(str(launcher), stack.run_dir / "cassandra")
    stack.start_process(node.spec)
    return node


def rendered_jaeger(helm: Path, jaeger_values: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The chart's Jaeger files by their mount path (the ConfigMap's jaeger.yaml, the storage Secret's
    storage.yaml) and container args, for ci/cassandra-values.yaml plus ``jaeger_values``."""
    command = [
        str(helm), "template", RELEASE, str(CHART),
        "--values", str(CHART / "ci" / "cassandra-values.yaml"),
        "--set-json", f"jaeger={json.dumps(jaeger_values)}",
    ]  # fmt: skip
    rendered = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    name = f"{RELEASE}-llm-telemetry-jaeger"

    def find(kind: str, object_name: str) -> dict[str, Any]:
        return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == object_name)

    files = {
        "/etc/jaeger/jaeger.yaml": find("ConfigMap", name)["data"]["jaeger.yaml"],
        "/etc/jaeger/storage/storage.yaml": find("Secret", f"{name}-storage")["stringData"]["storage.yaml"],
    }
    args: list[str] = find("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]
    return files, args


def _send_traces(endpoint: str, service: str) -> list[str]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("tests.e2e.cassandra")
    trace_ids = []
    for n in range(TRACES):
        with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as root:
            root.set_attribute("llm.e2e.request", n)
            with tracer.start_as_current_span("retrieve"), tracer.start_as_current_span("Generate"):
                pass
        trace_ids.append(format_trace_id(root.get_span_context().trace_id))
    provider.shutdown()
    return trace_ids


def test_jaeger_as_the_chart_configures_it_stores_and_reads_back_traces_in_cassandra(
    binaries: Binaries, stack: Stack, cassandra: CassandraNode
) -> None:
    paths = require(binaries, "helm", "jaeger")
    files, args = rendered_jaeger(
        paths["helm"],
        {
            "storage": {
                "type": "cassandra",
                "cassandra": {
                    "schema": {"keyspace": "llm_telemetry", "create": True},
                    "connection": {
                        "servers": ["127.0.0.1"],
                        "port": cassandra.native_port,
                        "tls": {"insecure": True},
                    },
                },
            }
        },
    )

    def main_store(path: str) -> Any:
        return yaml.safe_load(files[path])["extensions"]["jaeger_storage"]["backends"]["main_store"]

    # No Badger left to merge with: the store is the Secret's Cassandra block alone.
    assert not main_store("/etc/jaeger/jaeger.yaml"), files["/etc/jaeger/jaeger.yaml"]
    assert list(main_store("/etc/jaeger/storage/storage.yaml")) == ["cassandra"]
    etc = stack.run_dir / "etc"
    for path, text in files.items():
        (etc / path.removeprefix("/etc/")).parent.mkdir(parents=True, exist_ok=True)
        (etc / path.removeprefix("/etc/")).write_text(text)
    argv = [str(paths["jaeger"]), *(a.replace("file:/etc/", f"file:{etc}/") for a in args)]
    started = time.monotonic()
    stack.start_process(
        ProcessSpec(
            "jaeger-cassandra",
            argv,
            env=stack.jaeger_env(),
            # Creating the keyspace and its tables takes a while on a first start.
            ready_check=http_ready(stack.endpoints.jaeger_health_url),
            ready_timeout=180,
        )
    )
    service = f"cassandra-e2e-{int(time.time())}"
    trace_ids = _send_traces(stack.endpoints.jaeger_otlp_grpc, service)

    def whole(trace_id: str) -> bool:
        return len({s.span_id for s in stack.jaeger.get_trace(trace_id)}) == SPANS_PER_TRACE

    poll_until(lambda: all(whole(t) for t in trace_ids), f"{TRACES} traces read back from Cassandra", 60, 1)
    found = poll_until(
        lambda: stack.jaeger.trace_ids(service, time.time() - 600, time.time() + 60) >= set(trace_ids),
        f"a search by service {service} finding every trace",
        60,
        1,
    )
    assert found
    print(
        f"\n[cassandra] Jaeger on Cassandra (chart rendering) ready {time.monotonic() - started:.0f} s after "
        f"start; {TRACES} traces of {SPANS_PER_TRACE} spans stored and read back by id and by service"
    )
