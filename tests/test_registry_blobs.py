"""tools.registry reading a blob the way ECR serves it: a 307 redirect to a signed storage URL.

ECR answers a layer or config GET with a redirect to a pre-signed S3 URL
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetDownloadUrlForLayer.html), as
the OCI distribution spec allows (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-blobs).
The registry and the storage here are two loopback HTTP servers: the network edge, nothing of
the toolkit replaced. The registry's credentials must never reach the storage host.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.cloud import RegistryAuth
from tools.registry import Registry, RegistryError

CONFIG = b'{"architecture":"arm64","os":"linux","config":{}}'
DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/v2/") and not self.headers.get("Authorization"):
            self._answer(401, b"", {"WWW-Authenticate": 'Basic realm="ecr"'})
        elif self.path.startswith("/v2/"):
            self._answer(307, b"", {"Location": f"http://127.0.0.1:{server.storage_port}/layer?X-Amz-Signature=abc"})
        else:
            self._answer(200, server.content, {"Content-Type": "application/octet-stream"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str | None]] = []
        self.storage_port = self.server_address[1]  # one server plays registry and storage: paths tell them apart
        self.content = CONFIG


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def registry(server: Server) -> tuple[Registry, str]:
    host = f"127.0.0.1:{server.server_address[1]}"
    return Registry(host, RegistryAuth(host, "AWS", "ecr-password-never-sent-to-storage")), f"{host}/cmb-backend"


def test_a_redirected_blob_is_read_without_sending_the_credentials_to_storage(server: Server) -> None:
    client, repository = registry(server)
    assert client.blob(repository, DIGEST) == CONFIG
    storage = [auth for path, auth in server.seen if path.startswith("/layer")]
    assert storage == [None]
    assert [auth is not None for path, auth in server.seen if path.startswith("/v2/")] == [False, True]


def test_a_blob_with_other_content_is_refused(server: Server) -> None:
    server.content = CONFIG.replace(b"arm64", b"amd64")
    client, repository = registry(server)
    with pytest.raises(RegistryError, match=r"blob sha256:[0-9a-f]{12} of .* has other content: retry"):
        client.blob(repository, DIGEST)
