"""Cloud DNS and Resource Manager's getIamPolicy, as the tools call them, for one project of the simulated GKE.

Reached at their real host names (`dns.googleapis.com`, `cloudresourcemanager.googleapis.com`) through the
network edge (tests/sim/edge_routes.py), on loopback. Each call wants an access token of the test bed's one
issuer (tests/sim/gke_tokens.py; 401 otherwise) and the IAM permission the API documents for it on the
project, read from the simulation's IAM (tests/sim/gke_iam.py; 403 otherwise).

Cloud DNS (https://cloud.google.com/dns/docs/reference/rest/v1): managedZones.list filtered by `dnsName`;
resourceRecordSets.list filtered by `name` (and `type`); changes.create, which is atomic and refused whole
when a deletion does not match the record set exactly (412 conditionNotMet) or an addition exists
(409 alreadyExists) (https://cloud.google.com/dns/docs/reference/rest/v1/changes/create); changes.get,
`pending` in changes.create's answer and `done` when read, as a change is applied asynchronously
(https://cloud.google.com/dns/docs/reference/rest/v1/changes#resource:-change, `status`).
Resource Manager: projects.getIamPolicy with `resourcemanager.projects.getIamPolicy`
(https://cloud.google.com/resource-manager/reference/rest/v1/projects/getIamPolicy).
Not imitated: pagination (one page), DNSSEC, private zones' networks, record-set validation beyond
name and type, the policy's etag and conditions' titles.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.sim.gke_iam import ProjectIam
from tests.sim.gke_tokens import GoogleTokenServer, TokenRefused

Answer = tuple[int, dict[str, Any]]


class CloudDnsProject:
    """The project's public managed zones and their record sets; the calls' log in `calls`."""

    def __init__(self, tokens: GoogleTokenServer, iam: ProjectIam) -> None:
        self.tokens, self.iam, self.project = tokens, iam, iam.project
        self.zones: dict[str, str] = {}  # zone name -> dnsName ("example.org.")
        self.rrsets: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}  # zone -> (name, type) -> rrset
        self.changes: dict[str, dict[str, dict[str, Any]]] = {}  # zone -> id -> change
        self.calls: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def add_zone(self, name: str, dns_name: str) -> None:
        """`gcloud dns managed-zones create NAME --dns-name DNS_NAME --visibility public`."""
        self.zones[name] = dns_name.rstrip(".") + "."
        self.rrsets.setdefault(name, {})
        self.changes.setdefault(name, {})

    def records(self, zone: str) -> dict[tuple[str, str], dict[str, Any]]:
        return dict(self.rrsets[zone])

    def serve_http(self) -> str:
        if self.server is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- one call ------------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict[str, str], token: str, body: dict[str, Any]) -> Answer:
        self.calls.append(f"{method} {path}")
        try:
            email = self.tokens.lookup(token).email
        except TokenRefused:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        project = f"projects/{self.project}"
        if method == "POST" and path == f"/v1/{project}:getIamPolicy":
            return self._permitted(email, "resourcemanager.projects.getIamPolicy") or (200, self._policy())
        match = re.fullmatch(rf"/dns/v1/{project}/managedZones(?:/([^/]+)(?:/(rrsets|changes)(?:/([^/]+))?)?)?", path)
        if match is None:
            return _error(404, "NOT_FOUND", f"the simulated Google APIs have no {method} {path}")
        zone, collection, change = match.groups()
        if zone is None and method == "GET":
            return self._permitted(email, "dns.managedZones.list") or (200, self._zones(query.get("dnsName")))
        if zone not in self.zones:
            return _error(404, "NOT_FOUND", f"The 'parameters.managedZone' resource named '{zone}' does not exist.")
        if collection == "rrsets" and change is None and method == "GET":
            found = [
                r
                for (name, kind), r in self.rrsets[zone].items()
                if name == query.get("name", name) and kind == query.get("type", kind)
            ]
            return self._permitted(email, "dns.resourceRecordSets.list") or (200, {"rrsets": found})
        if collection == "changes" and change is None and method == "POST":
            return self._permitted(email, "dns.changes.create") or self._change(zone, body)
        if collection == "changes" and change is not None and method == "GET":
            return self._permitted(email, "dns.changes.get") or self._read_change(zone, change)
        return _error(404, "NOT_FOUND", f"the simulated Cloud DNS has no {method} {path}")

    def _permitted(self, email: str, permission: str) -> Answer | None:
        if self.iam.allows(email, permission, f"projects/{self.project}"):
            return None
        return _error(403, "PERMISSION_DENIED", f"Permission '{permission}' denied on resource (or it may not exist).")

    def _zones(self, dns_name: str | None) -> dict[str, Any]:
        zones = [
            {"name": name, "dnsName": dns, "visibility": "public", "kind": "dns#managedZone"}
            for name, dns in self.zones.items()
            if dns_name is None or dns == dns_name
        ]
        return {"managedZones": zones}

    def _change(self, zone: str, body: dict[str, Any]) -> Answer:
        additions, deletions = body.get("additions") or [], body.get("deletions") or []
        with self._lock:
            records = dict(self.rrsets[zone])
            for rrset in deletions:
                key = (rrset["name"], rrset["type"])
                if records.get(key) != _normal(rrset):
                    return _error(412, "FAILED_PRECONDITION", f"conditionNotMet: {key} is not as the deletion says")
                del records[key]
            for rrset in additions:
                key = (rrset["name"], rrset["type"])
                if key in records:
                    return _error(409, "ALREADY_EXISTS", f"alreadyExists: The resource '{key}' already exists")
                records[key] = _normal(rrset)
            self.rrsets[zone] = records
            change_id = str(next(self._ids))
            change = {"id": change_id, "status": "pending", "additions": additions, "deletions": deletions}
            self.changes[zone][change_id] = change
        return 200, dict(change)

    def _read_change(self, zone: str, change_id: str) -> Answer:
        change = self.changes[zone].get(change_id)
        if change is None:
            return _error(404, "NOT_FOUND", f"The 'parameters.changeId' resource named '{change_id}' does not exist.")
        change["status"] = "done"  # applied by the time it is read
        return 200, dict(change)

    def _policy(self) -> dict[str, Any]:
        roles: dict[str, list[str]] = {}
        for binding in self.iam.bindings:
            if not binding.condition:
                roles.setdefault(binding.role, []).append(binding.member)
        return {"version": 1, "bindings": [{"role": r, "members": m} for r, m in roles.items()]}


def _normal(rrset: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": rrset["name"],
        "type": rrset["type"],
        "ttl": int(rrset.get("ttl", 300)),
        "rrdatas": list(rrset.get("rrdatas") or []),
        "kind": "dns#resourceRecordSet",
    }


def _error(code: int, status: str, message: str) -> Answer:
    """Google's JSON error body (https://cloud.google.com/apis/design/errors#http_mapping)."""
    return code, {"error": {"code": code, "message": message, "status": status}}


def _handler(project: CloudDnsProject) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            query = dict(urllib.parse.parse_qsl(url.query))
            status, answer = project.answer(self.command, url.path, query, token, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *_: Any) -> None:
            pass

    return Handler
