"""tools.registry against registries that demand authentication, over HTTPS.

The test bed's registry has no authentication, so these tests serve the two challenge
schemes real registries use from a small HTTPS server on loopback (a self-signed
certificate the client is told to trust through SSL_CERT_FILE):
  Bearer (Artifact Registry, Docker Hub): 401 + realm, a token for the scope, then the call;
  Basic (ECR): 401, then the call with user:password.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.testbed import free_port
from tools.cloud import RegistryAuth
from tools.registry import Registry, RegistryError

MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}
).encode()
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
GOOD = RegistryAuth("x", "oauth2accesstoken", "ya29.good-token")


class FakeRegistry(ThreadingHTTPServer):
    """Holds one repository `proj/repo/img` with tag `c-000000000001`; records what it was asked."""

    scheme = "bearer"

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.port = port
        self.tags = {"c-000000000001": (MANIFEST, MANIFEST_TYPE)}
        self.token_requests: list[dict[str, str]] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, authorization scheme
        self.connections: set[int] = set()
        self.revoked: set[str] = set()  # tokens it no longer takes (they expired)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real registries
    server: FakeRegistry

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, chunked=False) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 7):
                piece = body[start : start + 7]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self, scope: str) -> bool:
        auth = self.headers.get("Authorization", "")
        self.server.requests.append((self.command, self.path, auth.split(" ")[0]))
        self.server.connections.add(self.client_address[1])
        if self.server.scheme == "basic":
            if auth == "Basic " + base64.b64encode(b"AWS:ecr-password").decode():
                return True
            self._send(401, b"{}", {"WWW-Authenticate": 'Basic realm="https://fake/",service="ecr.amazonaws.com"'})
            return False
        if auth.startswith("Bearer token-for ") and auth.removeprefix("Bearer ") not in self.server.revoked:
            granted = auth.removeprefix("Bearer token-for ").split(" #")[0]
            if scope == "" or granted == scope:
                return True
            resource, _, actions = scope.rpartition(":")
            granted_resource, _, granted_actions = granted.rpartition(":")
            if resource == granted_resource and set(actions.split(",")) <= set(granted_actions.split(",")):
                return True  # a pull,push token also pulls
        realm = f"https://127.0.0.1:{self.server.port}/token"
        challenge = f'Bearer realm="{realm}",service="fake-ar",scope="{scope}"'
        self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
        return False

    def _token(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        self.server.token_requests.append(query)
        expected = "Basic " + base64.b64encode(f"{GOOD.username}:{GOOD.password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(401, b'{"errors":[{"code":"DENIED"}]}')
            return
        issued = f"token-for {query.get('scope', '')} #{len(self.server.token_requests)}"
        body = json.dumps({"token": issued, "expires_in": 300}).encode()
        self._send(200, body, {"Content-Type": "application/json"}, chunked=True)

    def _manifest(self) -> None:
        name, _, reference = self.path.removeprefix("/v2/").partition("/manifests/")
        push = self.command == "PUT"
        if not self._authorized(f"repository:{name}:{'pull,push' if push else 'pull'}"):
            return
        if push:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.server.tags[reference] = (body, self.headers["Content-Type"])
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self._send(201, b"", {"Docker-Content-Digest": digest, "Location": self.path})
            return
        if name != "proj/repo/img" or reference not in self.server.tags:
            self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return
        body, media_type = self.server.tags[reference]
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest})

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self._token()
        elif self.path == "/v2/":
            if self._authorized(""):
                self._send(200, b"{}")
        else:
            self._manifest()

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        self._manifest()


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake registry")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    cert_file, key_file = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the client trusts this certificate only
    server = FakeRegistry(free_port())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(fake: FakeRegistry, auth: RegistryAuth | None = GOOD) -> Registry:
    return Registry(f"127.0.0.1:{fake.port}/proj/repo", auth, secure=True)


def test_bearer_token_flow_over_https(fake: FakeRegistry) -> None:
    registry = client(fake)
    repository = f"127.0.0.1:{fake.port}/proj/repo/img"
    registry.ping()
    assert registry.digest(repository, "c-000000000001") == DIGEST
    assert registry.digest(repository, "c-00000000000f") is None
    assert fake.token_requests == [
        {"service": "fake-ar"},
        {"service": "fake-ar", "scope": "repository:proj/repo/img:pull"},
    ], "one token per scope, asked once"
    assert len(fake.connections) == 1, "every request went over one kept-alive connection"
    registry.close()


def test_copy_tag_puts_the_same_manifest(fake: FakeRegistry) -> None:
    registry = client(fake)
    repository = f"127.0.0.1:{fake.port}/proj/repo/img"
    assert registry.copy_tag(repository, "c-000000000001", "v1.2.3") == DIGEST
    assert fake.tags["v1.2.3"] == (MANIFEST, MANIFEST_TYPE)
    assert fake.token_requests[-1]["scope"] == "repository:proj/repo/img:pull,push"
    assert registry.digest(repository, "v1.2.3") == DIGEST


@pytest.mark.parametrize("auth", [None, RegistryAuth("x", "oauth2accesstoken", "ya29.expired")])
def test_refused_credentials_are_one_clear_error(fake: FakeRegistry, auth: RegistryAuth | None) -> None:
    with pytest.raises(RegistryError, match=r"refused the credentials \(token service answered 401\)") as err:
        client(fake, auth).digest(f"127.0.0.1:{fake.port}/proj/repo/img", "c-000000000001")
    assert "ya29" not in str(err.value)


def test_basic_auth_like_ecr(fake: FakeRegistry) -> None:
    fake.scheme = "basic"
    repository = f"127.0.0.1:{fake.port}/proj/repo/img"
    registry = client(fake, RegistryAuth("x", "AWS", "ecr-password"))
    assert registry.digest(repository, "c-000000000001") == DIGEST
    assert registry.digest(repository, "c-000000000001") == DIGEST
    assert [scheme for _, _, scheme in fake.requests] == ["", "Basic", "Basic"], "Basic is sent once it was asked for"
    with pytest.raises(RegistryError, match=r"unauthorized.*credentials were refused"):
        client(fake, RegistryAuth("x", "AWS", "wrong")).digest(repository, "c-000000000001")
    with pytest.raises(RegistryError, match=r"unauthorized.*this cloud gives none"):
        client(fake, None).digest(repository, "c-000000000001")


def test_untrusted_certificate_is_refused(fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    with pytest.raises(RegistryError, match=f"cannot reach registry 127.0.0.1:{fake.port}.*CERTIFICATE_VERIFY_FAILED"):
        client(fake).ping()


def test_image_of_another_registry_is_refused(fake: FakeRegistry) -> None:
    with pytest.raises(RegistryError, match="is not an image of registry"):
        client(fake).digest("elsewhere.example/proj/img", "v1")


def test_an_expired_bearer_token_is_fetched_again_once(fake: FakeRegistry) -> None:
    """After a long build the registry stops taking the token it gave: ask for a new one, go on."""
    registry = client(fake)
    repository = f"127.0.0.1:{fake.port}/proj/repo/img"
    assert registry.digest(repository, "c-000000000001") == DIGEST
    fake.revoked |= {f"token-for repository:proj/repo/img:pull #{len(fake.token_requests)}"}
    assert registry.digest(repository, "c-000000000001") == DIGEST
    assert [q.get("scope") for q in fake.token_requests] == ["repository:proj/repo/img:pull"] * 2
    fake.revoked |= {f"token-for repository:proj/repo/img:pull #{n}" for n in range(1, 10)}  # every token
    with pytest.raises(RegistryError, match="answered 401"):
        registry.digest(repository, "c-000000000001")
    assert len(fake.token_requests) == 3, "one new token per refusal, not a loop"
