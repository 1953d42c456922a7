"""The gateway terminates TLS itself: ``python -m services.gateway`` with LLM_GATEWAY_TLS_CERT_FILE and
LLM_GATEWAY_TLS_KEY_FILE serves HTTPS on its public port, and plain HTTP on that port gets no answer.

The certificate is self-signed, made here for 127.0.0.1 (``cryptography``), and the client trusts only it.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy.stack import ManagedProcess, ProcessSpec, free_port
from deploy.stack._process import start_process
from services.common.env import SettingError
from services.gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]
API_KEY = "tls-test-key-not-secret"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TlsGateway:
    port: int
    ca: Path
    """The self-signed certificate, the only one the test's clients trust."""
    process: ManagedProcess

    @property
    def https_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 key and a one-day certificate for 127.0.0.1, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llm-gateway test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsGateway]:
    directory = tmp_path_factory.mktemp("gateway-tls")
    cert_file, key_file = _self_signed(directory)
    port = free_port()

    def ready() -> bool:
        return (
            httpx.get(
                f"https://{LOOPBACK}:{port}/health",
                verify=ssl.create_default_context(cafile=cert_file),
                timeout=2,
            ).status_code
            == 200
        )

    spec = ProcessSpec(
        "gateway-tls",
        [sys.executable, "-m", "services.gateway"],
        env={
            "LLM_GATEWAY_HOST": LOOPBACK,
            "LLM_GATEWAY_PORT": str(port),
            "LLM_GATEWAY_API_KEYS": API_KEY,
            "LLM_GATEWAY_TLS_CERT_FILE": str(cert_file),
            "LLM_GATEWAY_TLS_KEY_FILE": str(key_file),
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
        ready_check=ready,
        ready_timeout=30.0,
        cwd=REPO,
    )
    process = start_process(spec, directory / "logs")
    try:
        process.wait_ready()
        yield TlsGateway(port, cert_file, process)
    finally:
        process.stop()


def test_the_gateway_serves_its_api_over_https(gateway: TlsGateway) -> None:
    with httpx.Client(
        base_url=gateway.https_url, verify=ssl.create_default_context(cafile=gateway.ca), timeout=10
    ) as client:
        assert client.get("/health").status_code == 200
        models = client.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        assert models.status_code == 200, models.text
        assert client.get("/v1/models").status_code == 401
    # What the client negotiated: TLS 1.2 or newer (uvicorn's context with Python's defaults).
    context = ssl.create_default_context(cafile=str(gateway.ca))
    with (
        socket.create_connection((LOOPBACK, gateway.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_plain_http_on_the_tls_port_gets_no_answer(gateway: TlsGateway) -> None:
    with socket.create_connection((LOOPBACK, gateway.port), timeout=5) as plain:
        plain.sendall(f"GET /health HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode())
        received = b""
        try:
            while chunk := plain.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not received.startswith(b"HTTP/"), received[:200]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{LOOPBACK}:{gateway.port}/health", timeout=5)


def test_a_client_that_does_not_trust_the_certificate_is_refused(gateway: TlsGateway) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{gateway.https_url}/health", timeout=5)  # the system's CAs, not ours


def test_a_certificate_without_its_key_or_a_missing_file_stops_start_up(tmp_path: Path) -> None:
    cert_file, _ = _self_signed(tmp_path)
    base = {"LLM_GATEWAY_API_KEYS": API_KEY}
    with pytest.raises(
        SettingError, match="LLM_GATEWAY_TLS_CERT_FILE and LLM_GATEWAY_TLS_KEY_FILE go together"
    ):
        GatewaySettings.from_env({**base, "LLM_GATEWAY_TLS_CERT_FILE": str(cert_file)})
    missing = str(tmp_path / "absent.key")
    with pytest.raises(SettingError, match=r"LLM_GATEWAY_TLS_KEY_FILE=.*absent\.key.* is not a file"):
        GatewaySettings.from_env(
            {**base, "LLM_GATEWAY_TLS_CERT_FILE": str(cert_file), "LLM_GATEWAY_TLS_KEY_FILE": missing}
        )
