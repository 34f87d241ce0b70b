"""smoke_test's HTTPS checks: `responses` for the answers, a real TLS server for SNI, Host and trust."""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.smoke.endpoints import check_url, resolved_names, served_certificate

URL = "https://api.cmb.example.org/health"


def soon(seconds: float) -> float:
    return time.monotonic() + seconds


# -- answers (responses) ------------------------------------------------------------------------------
@responses.activate
def test_healthy_json_passes() -> None:
    responses.get(URL, json={"status": "healthy", "timestamp": "now", "version": "1", "uptime": 5})
    check = check_url(URL, expect_status="healthy", deadline_at=soon(5), request_timeout=1)
    assert (check.status, check.detail) == ("ok", "HTTP 200, status healthy")


@responses.activate
def test_a_transient_error_is_retried() -> None:
    responses.get(URL, status=503, body="no healthy upstream")
    responses.get(URL, json={"status": "healthy"})
    check = check_url(URL, expect_status="healthy", deadline_at=soon(5), request_timeout=1)
    assert check.status == "ok"
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"status": 500, "body": "Internal Server Error"}, "answered HTTP 500 Internal Server Error: Internal Server"),
        ({"status": 404, "body": "default backend - 404"}, "answered HTTP 404 Not Found: default backend - 404"),
        (
            {"status": 302, "headers": {"Location": "https://login.example.org/"}},
            "answered HTTP 302 Found to https://login",
        ),
        ({"json": {"status": "degraded"}}, "answered JSON with status 'degraded', expected 'healthy'"),
        ({"json": ["healthy"]}, "answered JSON with status None, expected 'healthy'"),
        ({"body": "OK"}, "answered 200 but not with JSON: OK"),
        ({"body": requests.exceptions.ReadTimeout("read timed out")}, "no answer within the request timeout ("),
        ({"body": requests.exceptions.ConnectionError("connection refused")}, "cannot connect: connection refused"),
    ],
)
@responses.activate
def test_an_unhealthy_answer_fails_with_a_clear_message(answer: dict, message: str) -> None:
    responses.get(URL, **answer)
    start = time.monotonic()
    check = check_url(URL, expect_status="healthy", deadline_at=soon(1.2), request_timeout=0.3)
    took = time.monotonic() - start
    assert check.status == "failed"
    assert check.detail.startswith(message), check.detail
    assert took >= 1.0, "gave up before the deadline"
    attempts = int(check.detail.rpartition("(")[2].split()[0])
    assert attempts == len(responses.calls) >= 2


@responses.activate
def test_frontend_needs_only_200() -> None:
    responses.get("https://cmb.example.org/api/health", body="ok")
    check = check_url("https://cmb.example.org/api/health", expect_status=None, deadline_at=soon(2), request_timeout=1)
    assert check.status == "ok" and check.detail == "HTTP 200"


# -- a real TLS server: certificate, SNI and Host --------------------------------------------------------
def _certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for cmb.example.org and api.cmb.example.org."""
    now = datetime.datetime.now(tz=datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smoke test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cmb.example.org")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("cmb.example.org"), x509.DNSName("api.cmb.example.org")]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


class Server:
    """An HTTPS server on 127.0.0.1 that records the SNI and Host it was given."""

    def __init__(self, tmp: Path, delay: float = 0.0) -> None:
        self.ca, cert, key = _certificate(tmp)
        self.sni: list[str | None] = []
        self.hosts: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hosts.append(self.headers.get("Host"))
                time.sleep(delay)
                body = json.dumps({"status": "healthy"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as running:
        yield running


def test_address_gets_the_real_sni_and_host_and_verifies_the_certificate(server: Server) -> None:
    check = check_url(
        URL,
        expect_status="healthy",
        deadline_at=soon(5),
        request_timeout=2,
        address=server.address,
        ca_bundle=str(server.ca),
    )
    assert check.status == "ok", check.detail
    assert check.detail == f"HTTP 200, status healthy via {server.address}"
    assert server.sni == ["api.cmb.example.org"]
    assert server.hosts == ["api.cmb.example.org"]


def test_an_untrusted_certificate_fails(server: Server) -> None:
    check = check_url(URL, expect_status="healthy", deadline_at=soon(0.8), request_timeout=0.5, address=server.address)
    assert check.status == "failed"
    assert check.detail.startswith("TLS verification failed: certificate verify failed"), check.detail


def test_a_certificate_for_another_name_fails(server: Server) -> None:
    check = check_url(
        "https://other.example.org/health",
        expect_status="healthy",
        deadline_at=soon(0.8),
        request_timeout=0.5,
        address=server.address,
        ca_bundle=str(server.ca),
    )
    assert check.status == "failed"
    assert "TLS verification failed" in check.detail and "other.example.org" in check.detail, check.detail


def test_a_slow_server_times_out(tmp_path: Path) -> None:
    with Server(tmp_path, delay=1.0) as slow:
        check = check_url(
            URL,
            expect_status="healthy",
            deadline_at=soon(0.9),
            request_timeout=0.4,
            address=slow.address,
            ca_bundle=str(slow.ca),
        )
    assert check.status == "failed"
    assert check.detail.startswith("no answer within the request timeout ("), check.detail


def test_nothing_listening_is_a_connection_error(tmp_path: Path) -> None:
    check = check_url(URL, expect_status="healthy", deadline_at=soon(0.6), request_timeout=0.3, address="127.0.0.1:9")
    assert check.status == "failed"
    assert check.detail.startswith("cannot connect:"), check.detail
    assert "via 127.0.0.1:9" in check.detail


# -- what the summary shows: the records and the certificate -----------------------------------------
def test_the_served_certificate_is_read_verified_with_its_issuer_names_and_expiry(server: Server) -> None:
    check = served_certificate(URL, address=server.address, ca_bundle=str(server.ca), timeout=2)
    assert check.status == "ok", check.detail
    assert check.detail.startswith(
        "api.cmb.example.org: issued by smoke test CA for cmb.example.org, api.cmb.example.org"
    )
    assert " valid until " in check.detail and check.detail.endswith(" GMT")
    untrusted = served_certificate(URL, address=server.address, ca_bundle=None, timeout=2)
    assert untrusted.status == "warning" and "not read: certificate verify failed" in untrusted.detail


def test_the_names_are_resolved_and_compared_with_the_ingress_address() -> None:
    here = resolved_names(["https://localhost/health"], ["127.0.0.1"])
    assert here.status == "ok" and here.detail.startswith("localhost -> ") and "127.0.0.1" in here.detail
    elsewhere = resolved_names(["https://localhost/health", "https://nothing.invalid/"], ["127.0.0.2"])
    assert elsewhere.status == "warning"
    assert "nothing.invalid -> does not resolve" in elsewhere.detail
    assert elsewhere.detail.endswith("(the Ingress is at 127.0.0.2: localhost, nothing.invalid not; run make dns)")
