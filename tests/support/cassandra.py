"""One Apache Cassandra node on loopback (scripts/build-backends.sh cassandra: the Maven Central jars on the
machine's Java), for the chart's Cassandra trace store."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from deploy.stack import LOOPBACK, ProcessSpec, free_port


@dataclass(frozen=True)
class CassandraNode:
    native_port: int
    spec: ProcessSpec


def _native_port_open(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=1):
        return True


def cassandra_node(launcher: str, data_dir: Path) -> CassandraNode:
    """A single node with its data, commit log and caches under ``data_dir``; ready once its native
    (CQL) port accepts connections, which it opens last."""
    native, storage, jmx = free_port(), free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "cluster_name": "llm-telemetry-e2e",
        "num_tokens": 16,
        "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
        "commitlog_sync": "periodic",
        "commitlog_sync_period": "10000ms",
        "commitlog_directory": str(data_dir / "commitlog"),
        "data_file_directories": [str(data_dir / "data")],
        "saved_caches_directory": str(data_dir / "saved_caches"),
        "hints_directory": str(data_dir / "hints"),
        "cdc_raw_directory": str(data_dir / "cdc_raw"),
        "seed_provider": [
            {
                "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                "parameters": [{"seeds": f"{LOOPBACK}:{storage}"}],
            }
        ],
        "listen_address": LOOPBACK,
        "rpc_address": LOOPBACK,
        "storage_port": storage,
        "native_transport_port": native,
        "start_native_transport": True,
        "endpoint_snitch": "SimpleSnitch",
    }
    conf = data_dir / "cassandra.yaml"
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    spec = ProcessSpec(
        "cassandra",
        [launcher],
        env={
            "CASSANDRA_CONF": str(conf),
            "CASSANDRA_HEAP": "512m",
            "CASSANDRA_JVM_OPTS": f"-Dcassandra.jmx.local.port={jmx} -Dcassandra.storagedir={data_dir}",
        },
        ready_check=lambda: _native_port_open(native),
        ready_timeout=180,
        stop_timeout=30,
    )
    return CassandraNode(native, spec)
