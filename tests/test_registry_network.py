"""tools.registry over a real network path: the test bed's registry behind a forward proxy that
injects the faults real networks have (a 429 with Retry-After, a dropped connection), as a
corporate proxy or a busy registry does. The proxy listens on loopback; the client finds it the
way Docker does, through HTTP_PROXY/HTTPS_PROXY and NO_PROXY."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.registry import Registry, RegistryError

pytestmark = pytest.mark.testbed


class FaultProxy(ThreadingHTTPServer):
    """A forward HTTP proxy; `faults` is consumed one per request: "429", "drop", or None to forward."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.faults: list[str] = []
        self.seen: list[tuple[str, str, str]] = []  # (method, url, what the proxy did)


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        fault = self.server.faults.pop(0) if self.server.faults else None
        self.server.seen.append((self.command, self.path, fault or "forwarded"))
        if fault == "drop":  # the connection dies without an answer
            self.close_connection = True
            self.connection.close()
            return
        if fault == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = urllib.parse.urlsplit(self.path)  # a proxy gets the absolute URL
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        upstream = http.client.HTTPConnection(target.netloc, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
        upstream.request(self.command, target.path + (f"?{target.query}" if target.query else ""), body, headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_HEAD = do_PUT = _handle


@pytest.fixture
def proxy(monkeypatch) -> Iterator[FaultProxy]:
    server = FaultProxy()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.shutdown()
    server.server_close()


def pushed(registry: str, repository: str, tag: str) -> str:
    """A tiny image (config blob, no layers) pushed straight to the registry; its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    blob = "sha256:" + hashlib.sha256(config.encode()).hexdigest()
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the set-up bypasses the proxy
    start = direct.open(urllib.request.Request(f"http://{registry}/v2/{repository}/blobs/uploads/", b"", method="POST"))
    location = start.headers["Location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    upload = f"{location}{'&' if '?' in location else '?'}digest={blob}"
    octets = {"Content-Type": "application/octet-stream"}
    direct.open(urllib.request.Request(upload, config.encode(), headers=octets, method="PUT"))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob, "size": len(config)},
        "layers": [],
    }
    put = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        json.dumps(manifest).encode(),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        method="PUT",
    )
    return direct.open(put).headers["Docker-Content-Digest"]


def test_the_proxy_is_used_and_429_and_a_dropped_connection_are_retried(registry: str, proxy: FaultProxy) -> None:
    digest = pushed(registry, "net/app", "c-000000000042")
    proxy.faults = ["429", "drop"]
    client = Registry(registry)
    try:
        assert client.digest(f"{registry}/net/app", "c-000000000042") == digest
        assert client.copy_tag(f"{registry}/net/app", "c-000000000042", "v1.0.0") == digest
    finally:
        client.close()
    url = f"http://{registry}/v2/net/app/manifests/c-000000000042"
    assert proxy.seen[:3] == [("HEAD", url, "429"), ("HEAD", url, "drop"), ("HEAD", url, "forwarded")]
    assert {what for _, _, what in proxy.seen[3:]} == {"forwarded"}  # the copy went through the proxy too


def test_no_proxy_bypasses_the_proxy(registry: str, proxy: FaultProxy, monkeypatch) -> None:
    digest = pushed(registry, "net/direct", "c-000000000043")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    proxy.faults = ["429"] * 10
    client = Registry(registry)
    try:
        assert client.digest(f"{registry}/net/direct", "c-000000000043") == digest
    finally:
        client.close()
    assert proxy.seen == []


def test_retries_are_bounded_and_the_last_answer_is_explained(registry: str, proxy: FaultProxy) -> None:
    pushed(registry, "net/busy", "c-000000000044")
    proxy.faults = ["429"] * 20
    client = Registry(registry)
    try:
        with pytest.raises(RegistryError, match=r"answered 429"):
            client.digest(f"{registry}/net/busy", "c-000000000044")
    finally:
        client.close()
    assert len(proxy.seen) == 5  # the first try and 4 retries
