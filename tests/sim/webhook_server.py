"""The HTTPS server of a simulated provider's Kubernetes webhooks: TokenReview and SubjectAccessReview.

One server on 127.0.0.1 (its own CA, made here) answering `/authenticate` for
`--authentication-token-webhook-config-file` and `/authorize` for the Webhook authorizer of
`--authorization-config`, as a managed control plane calls its provider's own
(https://kubernetes.io/docs/reference/access-authn-authz/webhook/,
https://kubernetes.io/docs/reference/access-authn-authz/authentication/#webhook-token-authentication).
A provider (EKS, GKE) subclasses it with its `authenticate` and `authorize`.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class WebhookServer:
    """A TokenReview and SubjectAccessReview endpoint over TLS; `authenticate`/`authorize` say the provider's rules."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log: list[str] = []  # one line per review, for a failing test's message
        self.ca = folder / "webhook-ca.crt"
        _self_signed(folder, "webhook")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "webhook.crt", folder / "webhook.key")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: str) -> Path:
        """A kubeconfig naming the webhook at `path` for the API server."""
        ca = base64.b64encode(self.ca.read_bytes()).decode()
        target = self.folder / f"webhook{path.replace('/', '-')}.kubeconfig"
        target.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "sim", "cluster": {"server": self.url + path, "certificate-authority-data": ca}}
                    ],
                    "users": [{"name": "apiserver", "user": {}}],
                    "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "apiserver"}}],
                    "current-context": "sim",
                }
            )
        )
        return target

    def authenticate(self, review: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def authorize(self, review: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def _handler(hooks: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            review = hooks.authenticate if self.path.split("?")[0] == "/authenticate" else hooks.authorize
            status = review(body)
            answer = json.dumps({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "status": status})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


def _self_signed(folder: Path, name: str) -> None:
    """A CA and a serving certificate for 127.0.0.1 (openssl, as the kit's mkpki.sh makes its own)."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt",
        "-days", "1", "-subj", f"/CN={name}-ca")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.crt", "-CAkey", f"{name}-ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt")  # fmt: skip
