"""http_probe's trust: a CA given as PEM text, before any file is written on the host.

A real HTTPS server on loopback with a certificate made here; the check that
runs before an ACME change trusts a private ACME server's CA this way.
"""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import load_plugin
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

http_probe = load_plugin("modules", "http_probe")


def self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class _Directory(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"newOrder": "https://localhost/order"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[int, str]]:
    cert, key = self_signed("localhost")
    workdir: Path = tmp_path_factory.mktemp("tls")
    (workdir / "cert.pem").write_bytes(cert)
    (workdir / "key.pem").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Directory)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], cert.decode()
    httpd.shutdown()


def test_a_ca_given_as_pem_text_is_trusted(server):
    port, ca = server
    answer = http_probe.probe(f"https://localhost:{port}/dir", connect_to="127.0.0.1", ca_data=ca)
    assert answer["status"] == 200, answer
    assert answer["json"] == {"newOrder": "https://localhost/order"}


def test_without_it_the_same_server_is_not_trusted(server):
    port, _ = server
    answer = http_probe.probe(f"https://localhost:{port}/dir", connect_to="127.0.0.1")
    assert answer["status"] == -1
    assert "CERTIFICATE_VERIFY_FAILED" in answer["error"]


def test_another_ca_is_not_trusted_either(server):
    port, _ = server
    other, _ = self_signed("localhost")
    answer = http_probe.probe(
        f"https://localhost:{port}/dir", connect_to="127.0.0.1", ca_data=other.decode()
    )
    assert answer["status"] == -1
    assert "CERTIFICATE_VERIFY_FAILED" in answer["error"]


def test_text_that_holds_no_certificate_is_refused_by_name():
    with pytest.raises(ValueError, match="ca_data: no PEM certificate"):
        http_probe.probe("https://localhost:1/dir", ca_data="not a certificate")
