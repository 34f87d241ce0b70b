"""The intercepting HTTPS proxy of the network edge, on 127.0.0.1.

A client sends `CONNECT HOST:443` (as every client the tools use does for an https URL when
HTTPS_PROXY is set); the proxy answers 200, terminates TLS with a leaf for HOST from the test CA
(tests/sim/edge_ca.py), and forwards each HTTP/1.1 request, Host header unchanged, to the part
tests/sim/edge_routes.py names for HOST. A host with no part is refused at CONNECT (403): nothing
leaves the machine. Where the part does not speak the provider's authentication, the edge does,
from the provider's documentation:

- ECR's registry: Basic auth with the user and password of GetAuthorizationToken's
  `authorizationToken` (base64 of `AWS:PASSWORD`; moto issues the password `ACCOUNT-auth-token`),
  challenged as ECR does (`WWW-Authenticate: Basic realm=...,service="ecr.amazonaws.com"`):
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html
- Google's token endpoint is forwarded to the test bed's one issuer of Google access tokens
  (tests/sim/gke_tokens.py GoogleTokenServer), whose tokens the simulated GKE accepts too
- Cloud Storage refuses a request without an access token that issuer issued (401), as GCS
  does: https://cloud.google.com/storage/docs/authentication
- Artifact Registry: `docker login -u oauth2accesstoken -p ACCESS_TOKEN`, the Docker token flow
  (`Bearer realm=https://HOST/v2/token`) exchanging it for a registry token:
  https://cloud.google.com/artifact-registry/docs/docker/authentication#token

Bodies are read whole (the test bed's images and objects are small). `seen` records (host, method,
path) of every request forwarded, so a test can tell that its traffic crossed the edge.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.sim.edge_ca import TestCa
from tests.sim.edge_routes import AR_REGISTRY, ECR_REGISTRY, GCS, part_for
from tests.sim.gke_tokens import GoogleTokenServer

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",  # answered here (100 Continue); the part gets the whole body
}
TOKEN_URI = "https://oauth2.googleapis.com/token"


class EdgeProxy:
    """The proxy: `parts` maps a part name of edge_routes to the base URL of the test bed part; `google` is
    the issuer of the Google access tokens the Google parts accept."""

    def __init__(self, ca: TestCa, parts: dict[str, str], google: GoogleTokenServer) -> None:
        self.ca, self.parts, self.google = ca, dict(parts), google
        self.seen: list[tuple[str, str, str]] = []
        self.registry_tokens: set[str] = set()  # Artifact Registry tokens issued for them
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _connect_handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answers(self, host: str) -> bool:
        return part_for(host) in self.parts

    def record(self, host: str, method: str, path: str) -> None:
        with self._lock:
            self.seen.append((host, method, path))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _connect_handler(edge: EdgeProxy) -> type[BaseHTTPRequestHandler]:
    class Connect(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            host, _, port = self.path.rpartition(":")
            if port != "443" or not edge.answers(host):
                self.send_error(403, f"the network edge has no part for {self.path}")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True
            try:
                tls = edge.ca.context(host).wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused the leaf (it does not trust the test CA)
            _Tunnel(tls, self.client_address, self.server, edge, host)

        def do_GET(self) -> None:
            self.send_error(405, "the network edge proxies https (CONNECT) only")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Connect


class _Tunnel(BaseHTTPRequestHandler):
    """The requests inside one CONNECT tunnel, for one host."""

    protocol_version = "HTTP/1.1"

    def __init__(self, sock: Any, address: Any, server: Any, edge: EdgeProxy, host: str) -> None:
        self.edge, self.host = edge, host
        self.part = part_for(host) or ""
        super().__init__(sock, address, server)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError):
            self.close_connection = True

    # -- one request -------------------------------------------------------------------------
    def _request(self) -> None:
        body = self._body()
        self.edge.record(self.host, self.command, self.path)
        if self.part == ECR_REGISTRY and not self._ecr_authorized():
            return self._send(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED","message":"Not Authorized"}]}',
                {"WWW-Authenticate": f'Basic realm="https://{self.host}/",service="ecr.amazonaws.com"'},
            )
        if self.part == AR_REGISTRY and not self._ar_authorized():
            if self.path.startswith("/v2/token"):
                return self._ar_token()
            realm = f'Bearer realm="https://{self.host}/v2/token",service="{self.host}"'
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": realm})
        if self.part == GCS and not self.edge.google.issued(self._bearer()):
            error = {"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}}
            return self._send(401, json.dumps(error).encode(), {"WWW-Authenticate": 'Bearer realm="Google"'})
        self._forward(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _request

    def _forward(self, body: bytes | None) -> None:
        upstream = urllib.parse.urlsplit(self.edge.parts[self.part])
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-Proto"] = "https"  # the registry writes https Location URLs for this host
        if body is not None:
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=300)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            return self._send(502, f"the network edge could not reach its {self.part} part: {exc}".encode(), {})
        finally:
            conn.close()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
        if self.command == "HEAD":
            kept += [(k, v) for k, v in response.getheaders() if k.lower() == "content-length"]
        self._send(response.status, data, dict(kept), reason=response.reason)

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _send(self, status: int, data: bytes, headers: dict[str, str], reason: str | None = None) -> None:
        self.send_response(status, reason)
        for key, value in headers.items():
            self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # -- the providers' authentication --------------------------------------------------------
    def _basic(self) -> tuple[str, str]:
        kind, _, value = self.headers.get("Authorization", "").partition(" ")
        if kind.lower() != "basic":
            return "", ""
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "", ""
        return user, password

    def _bearer(self) -> str:
        kind, _, value = self.headers.get("Authorization", "").partition(" ")
        return value.strip() if kind.lower() == "bearer" else ""

    def _ecr_authorized(self) -> bool:
        account = self.host.split(".", 1)[0]
        return self._basic() == ("AWS", f"{account}-auth-token")  # moto's token (ecr/responses.py)

    def _ar_authorized(self) -> bool:
        return self._bearer() in self.edge.registry_tokens

    def _ar_token(self) -> None:
        user, password = self._basic()
        if user != "oauth2accesstoken" or not self.edge.google.issued(password):
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"denied"}]}', {})
        token = f"edge-ar-{secrets.token_urlsafe(24)}"
        self.edge.registry_tokens.add(token)
        self._json(200, {"token": token, "access_token": token, "expires_in": 3600})

    def _json(self, status: int, document: dict[str, Any]) -> None:
        self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json"})
