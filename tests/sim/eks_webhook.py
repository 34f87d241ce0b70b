"""EKS's webhooks for a Kubernetes API server: TokenReview (authentication) and SubjectAccessReview (access policies).

One HTTPS server on 127.0.0.1 (its own CA, made here) answering `/authenticate` for
`--authentication-token-webhook-config-file` and `/authorize` for the Webhook authorizer of
`--authorization-config`. The API server calls it as EKS's control plane calls its own
(https://kubernetes.io/docs/reference/access-authn-authz/webhook/,
https://kubernetes.io/docs/reference/access-authn-authz/authentication/#webhook-token-authentication).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.sim.eks_access import AccessEntries
from tests.sim.eks_token_review import Caller, EksTokenReviewer, TokenRejected


class EksWebhooks:
    """The authenticator and the authorizer of one simulated EKS cluster, served over TLS."""

    def __init__(self, folder: Path, reviewer: EksTokenReviewer, entries: AccessEntries) -> None:
        self.folder, self.reviewer, self.entries = folder, reviewer, entries
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
        import base64

        ca = base64.b64encode(self.ca.read_bytes()).decode()
        target = self.folder / f"webhook{path.replace('/', '-')}.kubeconfig"
        target.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "eks", "cluster": {"server": self.url + path, "certificate-authority-data": ca}}
                    ],
                    "users": [{"name": "apiserver", "user": {}}],
                    "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "apiserver"}}],
                    "current-context": "eks",
                }
            )
        )
        return target

    # -- the reviews ------------------------------------------------------------------------
    def authenticate(self, review: dict[str, Any]) -> dict[str, Any]:
        token = (review.get("spec") or {}).get("token", "")
        try:
            caller = self.reviewer.review(token)
        except TokenRejected as exc:
            self.log.append(f"token rejected: {exc}")
            return {"authenticated": False, "error": str(exc)}
        entry = self.entries.entries.get(caller.principal_arn)
        if entry is None:  # access-entries.html: a principal with no access entry has no access to the cluster
            self.log.append(f"no access entry for {caller.principal_arn}")
            return {"authenticated": False, "error": f"no access entry for {caller.principal_arn}"}
        user = {
            "username": entry.kubernetes_user(caller.arn, caller.session_name),
            "uid": f"aws-iam-authenticator:{caller.access_key}",
            "groups": list(entry.groups),
            # aws-iam-authenticator's extra attributes (pkg/server/server.go): the session ARN and its key
            "extra": {"arn": [caller.arn], "accessKeyId": [caller.access_key], "sessionName": [caller.session_name]},
        }
        self.log.append(f"authenticated {caller.arn} as {user['username']} {user['groups']}")
        return {"authenticated": True, "user": user}

    def authorize(self, review: dict[str, Any]) -> dict[str, Any]:
        spec = review.get("spec") or {}
        arns = (spec.get("extra") or {}).get("arn") or []
        if not arns:  # not an IAM principal (a certificate, a service account): no opinion
            return {"allowed": False}
        principal = Caller(arns[0], "").principal_arn
        attributes = spec.get("resourceAttributes") or {}
        allowed = self.entries.allows(principal, attributes, spec.get("nonResourceAttributes"))
        self.log.append(f"{'allowed' if allowed else 'no opinion'}: {spec.get('user')} {attributes}")
        # no opinion rather than a denial: the chain ends here and denies (as EKS's authorizer answers)
        return {"allowed": allowed} if allowed else {"allowed": False, "reason": "no access policy allows it"}


def _handler(hooks: EksWebhooks) -> type[BaseHTTPRequestHandler]:
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
