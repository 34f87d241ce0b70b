"""GKE's cluster API, projects.locations.clusters.get, answered in the calling process at its real host name.

`GcpCloud.cluster_access` calls https://container.googleapis.com/v1/... through google-auth's
AuthorizedSession (requests), with no endpoint override of its own, and gcloud's
`CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER` is read by gcloud alone; the call crosses no process
boundary, so `responses` answers it at the network edge (the token endpoint passes through to the test
bed's token server). A process of its own (`make deploy-gcp`) reaches it through the network edge instead:
`serve_http` answers the same calls on loopback, the edge's `gke` part (tests/sim/edge_routes.py). The
answer is Google's: 401 for a token Google would not accept, 403 without
`container.clusters.get` on the cluster, 404 for another cluster, else the cluster with the simulated
apiserver's endpoint (host:port, no scheme, as GKE's `endpoint` is an address) and its CA
(https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters#Cluster,
https://cloud.google.com/kubernetes-engine/docs/reference/api-permissions: "container.clusters.get on the
requested cluster").
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import responses

from tests.sim.gke_iam import ProjectIam
from tests.sim.gke_tokens import GoogleTokenServer, TokenRefused

HOST = "https://container.googleapis.com"
CLUSTER_URL = re.compile(re.escape(HOST) + r"/v1/(projects/[^/]+/locations/[^/]+/clusters/[^/?]+)")


class GkeClusterApi:
    """One cluster of the project, as clusters.get returns it."""

    def __init__(self, tokens: GoogleTokenServer, iam: ProjectIam, cluster: str) -> None:
        self.tokens, self.iam, self.cluster = tokens, iam, cluster  # projects/P/locations/L/clusters/C
        self.endpoint, self.ca = "", ""
        self.calls: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def serve(self, port: int, ca: Path) -> None:
        self.endpoint = f"127.0.0.1:{port}"
        self.ca = base64.b64encode(ca.read_bytes()).decode()

    def mock(self) -> responses.RequestsMock:
        """A RequestsMock answering clusters.get; everything else (the token server) passes through."""
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        mock.add_callback(responses.GET, CLUSTER_URL, callback=self._get)
        mock.add_passthru(self.tokens.url)
        return mock

    def serve_http(self) -> str:
        """The same answers over HTTP on loopback, for the network edge to forward to; its base URL."""
        if self.server is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _get(self, request: Any) -> tuple[int, dict[str, str], str]:
        name = CLUSTER_URL.match(request.url).group(1)  # type: ignore[union-attr]
        self.calls.append(name)
        bearer = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        try:
            email = self.tokens.lookup(bearer).email
        except TokenRefused:
            return _error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential."
            )  # fmt: skip
        if not self.iam.allows(email, "container.clusters.get", name):
            return _error(403, "PERMISSION_DENIED", f'Required "container.clusters.get" permission(s) for "{name}".')
        if name != self.cluster:
            return _error(404, "NOT_FOUND", f"Not found: {name}.")
        body = {
            "name": name.rsplit("/", 1)[1],
            "selfLink": f"{HOST}/v1/{name}",
            "endpoint": self.endpoint,
            "masterAuth": {"clusterCaCertificate": self.ca},
            "status": "RUNNING",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


def _error(code: int, status: str, message: str) -> tuple[int, dict[str, str], str]:
    """Google's JSON error body (https://cloud.google.com/apis/design/errors#http_mapping)."""
    body = {"error": {"code": code, "message": message, "status": status}}
    return code, {"Content-Type": "application/json"}, json.dumps(body)


def _handler(api: GkeClusterApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = HOST + self.path
            if CLUSTER_URL.match(url):
                status, headers, body = api._get(SimpleNamespace(url=url, headers=self.headers))
            else:
                status, headers, body = _error(404, "NOT_FOUND", f"the simulated GKE API has no {self.path}")
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            data = body.encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler
