"""A metrics store past one Prometheus, on loopback: Thanos Receive (a hashring of two nodes, every series
replicated to both) behind Thanos Query, as the Helm chart's ``prometheus.remoteWrite`` expects one.

Prometheus remote-writes to one receiver, which stores what the hashring gives it and forwards every
sample to the other (replication factor 2: a write succeeds once both have it). Each receiver labels what
it stores ``receive_replica``; Thanos Query reads both and deduplicates on that label, so a query sees
every sample once while either replica lives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deploy.stack import LOOPBACK, ProcessSpec, free_port, http_ready

REPLICA_LABEL = "receive_replica"
TENANT_LABEL = "tenant_id"


@dataclass(frozen=True)
class Receiver:
    name: str
    grpc: str
    http_url: str
    remote_write_url: str
    spec: ProcessSpec


@dataclass(frozen=True)
class ThanosStore:
    receivers: list[Receiver]
    query_url: str
    query: ProcessSpec

    @property
    def remote_write_url(self) -> str:
        """Where Prometheus writes: the first receiver, which replicates to the other."""
        return self.receivers[0].remote_write_url


def thanos_store(thanos: str, data_dir: Path, replicas: int = 2) -> ThanosStore:
    """The specs of ``replicas`` receivers in one hashring (replication factor ``replicas``) and a query
    node reading them; start the receivers first."""
    ports = [{k: free_port() for k in ("grpc", "http", "write", "capnproto")} for _ in range(replicas)]
    grpc = [f"{LOOPBACK}:{p['grpc']}" for p in ports]
    hashring = data_dir / "hashring.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    hashring.write_text(json.dumps([{"hashring": "default", "endpoints": grpc}]))
    receivers = []
    for i, p in enumerate(ports):
        name = f"thanos-receive-{i}"
        http_url = f"http://{LOOPBACK}:{p['http']}"
        argv = [
            thanos, "receive",
            f"--tsdb.path={data_dir / name}",
            f"--grpc-address={grpc[i]}",
            f"--http-address={LOOPBACK}:{p['http']}",
            f"--remote-write.address={LOOPBACK}:{p['write']}",
            # Its replication listener (Cap'n Proto; gRPC replication is the default): loopback too.
            f"--receive.capnproto-address={LOOPBACK}:{p['capnproto']}",
            f"--receive.local-endpoint={grpc[i]}",
            f"--receive.hashrings-file={hashring}",
            f"--receive.replication-factor={replicas}",
            f'--label={REPLICA_LABEL}="{i}"',
            # Exemplar storage is off unless given room; the same as Prometheus' max_exemplars.
            "--tsdb.max-exemplars=100000",
            # Out-of-order samples: Prometheus' own remote write retries after an outage.
            "--tsdb.out-of-order.time-window=10m",
            "--log.level=warn",
        ]  # fmt: skip
        spec = ProcessSpec(name, argv, ready_check=http_ready(f"{http_url}/-/ready"), ready_timeout=90)
        receivers.append(
            Receiver(name, grpc[i], http_url, f"http://{LOOPBACK}:{p['write']}/api/v1/receive", spec)
        )
    query_http = free_port()
    query_argv = [
        thanos, "query",
        f"--http-address={LOOPBACK}:{query_http}",
        f"--grpc-address={LOOPBACK}:{free_port()}",
        "--endpoint.sd-config=" + json.dumps({"endpoints": [{"address": address} for address in grpc]}),
        f"--query.replica-label={REPLICA_LABEL}",
        "--log.level=warn",
    ]  # fmt: skip
    query = ProcessSpec(
        "thanos-query",
        query_argv,
        ready_check=http_ready(f"http://{LOOPBACK}:{query_http}/-/ready"),
        ready_timeout=90,
    )
    return ThanosStore(receivers, f"http://{LOOPBACK}:{query_http}", query)
