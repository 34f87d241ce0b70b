"""The EKS API calls moto lacks, in front of moto: access entries and a cluster's real endpoint and CA.

Clients reach it through their documented endpoint variable (`AWS_ENDPOINT_URL_EKS`,
https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html); every other EKS call is
passed to moto unchanged. Request and answer shapes follow the EKS API reference:
https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateAccessEntry.html,
API_UpdateAccessEntry.html, API_AssociateAccessPolicy.html, API_ListAccessEntries.html,
API_DescribeAccessEntry.html, API_DescribeCluster.html (`endpoint`, `certificateAuthority.data`).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.sim.eks_access import AccessEntries

ENTRY = re.compile(r"^/clusters/([^/]+)/access-entries(?:/([^/]+))?(/access-policies)?$")
CLUSTER = re.compile(r"^/clusters/([^/]+)$")


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class EksApi:
    """An HTTP server on 127.0.0.1: EKS's access-entry calls and describe-cluster of `cluster`, the rest to moto."""

    def __init__(self, moto_url: str, cluster: str, entries: AccessEntries) -> None:
        self.moto_url, self.cluster, self.entries = moto_url, cluster, entries
        self.endpoint, self.ca = "", b""  # set when the control plane is up
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve_cluster(self, endpoint: str, ca_file: Path) -> None:
        self.endpoint, self.ca = endpoint, ca_file.read_bytes()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the calls --------------------------------------------------------------------------
    def access_entry(self, method: str, name: str, principal: str, policies: bool, body: dict[str, Any]) -> Any:
        if name != self.cluster:
            raise ApiError(404, "ResourceNotFoundException", f"No cluster found for name: {name}.")
        entries = self.entries
        groups = list(body.get("kubernetesGroups") or [])
        try:
            if method == "GET" and not principal:
                return {"accessEntries": sorted(entries.entries)}
            if method == "POST" and not principal:
                principal = body.get("principalArn", "")
                entries.create(principal, body.get("username", ""), groups)
            elif principal not in entries.entries:
                raise ApiError(
                    404, "ResourceNotFoundException", f"The specified principalArn could not be found: {principal}"
                )
            elif method == "POST" and policies:
                entries.associate(principal, body.get("policyArn", ""), body.get("accessScope") or {})
                association = {"policyArn": body.get("policyArn"), "accessScope": body.get("accessScope")}
                return {"clusterName": name, "principalArn": principal, "associatedAccessPolicy": association}
            elif method == "POST":
                entries.update(principal, body.get("username"), body.get("kubernetesGroups"))
        except KeyError as exc:  # API_CreateAccessEntry.html: an entry for the principal exists
            raise ApiError(409, "ResourceInUseException", str(exc).strip("'")) from None
        except ValueError as exc:
            raise ApiError(400, "InvalidParameterException", str(exc)) from None
        return {"accessEntry": self._describe(principal)}

    def _describe(self, arn: str) -> dict[str, Any]:
        entry = self.entries.entries[arn]
        return {
            "clusterName": self.cluster,
            "principalArn": arn,
            "kubernetesGroups": entry.groups,
            "username": entry.username
            or f"{arn.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/{{{{SessionName}}}}",
            "type": "STANDARD",
            "createdAt": time.time(),
        }

    def described(self, answer: dict[str, Any]) -> dict[str, Any]:
        """moto's DescribeCluster with this cluster's real endpoint and CA (moto invents both)."""
        if self.endpoint and (answer.get("cluster") or {}).get("name") == self.cluster:
            answer["cluster"]["endpoint"] = self.endpoint
            answer["cluster"]["certificateAuthority"] = {"data": base64.b64encode(self.ca).decode()}
        return answer


def _handler(api: EksApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urllib.parse.urlsplit(self.path).path
            entry = ENTRY.match(path)
            try:
                if entry:
                    name, principal, policies = entry.groups()
                    answer = api.access_entry(
                        self.command,
                        name,
                        urllib.parse.unquote(principal or ""),
                        bool(policies),
                        json.loads(body or b"{}"),
                    )
                    return self._answer(200, answer)
                status, headers, data = self._moto(body)
                if self.command == "GET" and CLUSTER.match(path) and status == 200:
                    return self._answer(200, api.described(json.loads(data)))
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except ApiError as exc:
                self._answer(exc.status, {"message": str(exc)}, exc.kind)

        def _moto(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            request = urllib.request.Request(api.moto_url + self.path, data=body or None, method=self.command)
            for key, value in self.headers.items():
                if key.lower() not in ("host", "content-length"):
                    request.add_header(key, value)
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    return resp.status, list(resp.headers.items()), resp.read()
            except urllib.error.HTTPError as err:
                return err.code, list(err.headers.items()), err.read()

        def _answer(self, status: int, document: dict[str, Any], error: str = "") -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if error:
                self.send_header("x-amzn-ErrorType", error)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *_: Any) -> None:
            pass

    return Handler
