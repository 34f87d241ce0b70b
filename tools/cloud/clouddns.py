"""Cloud DNS through its REST API with google-auth (no gcloud): the managed zone named by DNS_ZONE,
its record sets, changes and their status. Address records are A records to the Ingress's IP."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from tools.cloud.googleapi import google_credentials, google_error, google_request
from tools.cloud_permissions import need, with_dns_zone
from tools.dnsrecords import Change, Record, normal
from tools.errors import ToolError
from tools.waiting import wait_for

API = "https://dns.googleapis.com/dns/v1"
# Exactly the IAM permissions this module uses (roles/dns.admin on the project holds them).
GCP_PERMISSIONS = (
    "dns.managedZones.list",
    "dns.resourceRecordSets.list",
    "dns.changes.create",
    "dns.changes.get",
    "dns.resourceRecordSets.create",
    "dns.resourceRecordSets.delete",
)

need("gcp", GCP_PERMISSIONS, with_dns_zone(lambda c: [f"projects/{c.settings['PROJECT_ID']}"]),
     "make dns: the records of BASE_DOMAIN in DNS_ZONE's managed zone")  # fmt: skip


class CloudDnsZone:
    service = "Cloud DNS"

    def __init__(self, domain: str, project: str) -> None:
        self.domain, self.project = domain, project

    @functools.cached_property
    def session(self) -> Any:
        from google.auth.transport.requests import AuthorizedSession  # heavy: only when Cloud DNS is called

        return AuthorizedSession(google_credentials())

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{API}/projects/{self.project}/{path}"
        response = google_request(self.session, method, url, f"Cloud DNS {what}", **kwargs)
        if response.status_code == 403:
            raise ToolError(
                f"Cloud DNS {what}: these Google credentials may not do it in project {self.project}: grant "
                f"roles/dns.admin (or enable the Cloud DNS API): {google_error(response)}"
            )
        if response.status_code >= 300:
            raise ToolError(f"Cloud DNS {what}: HTTP {response.status_code}: {google_error(response)}")
        return response.json()

    @functools.cached_property
    def zone_id(self) -> str:
        answer = self._call("GET", "managedZones", f"finding zone {self.domain}", params={"dnsName": f"{self.domain}."})
        zones = [
            z
            for z in answer.get("managedZones") or []
            if normal(z.get("dnsName", "")) == self.domain and z.get("visibility", "public") == "public"
        ]
        if not zones:
            raise ToolError(
                f"DNS_ZONE: no public Cloud DNS managed zone for {self.domain} in project {self.project}: create it "
                "(and delegate the domain to its name servers) or fix DNS_ZONE"
            )
        if len(zones) > 1:
            raise ToolError(
                f"DNS_ZONE: {len(zones)} public managed zones serve {self.domain} "
                f"({', '.join(z['name'] for z in zones)}): keep one"
            )
        return zones[0]["name"]

    @property
    def label(self) -> str:
        return f"Cloud DNS managed zone {self.zone_id} ({self.domain})"

    def records(self, names: list[str]) -> dict[str, dict[str, Record]]:
        found: dict[str, dict[str, Record]] = {}
        for name in dict.fromkeys(names):
            token = ""
            while True:
                params = {"name": f"{name}."} | ({"pageToken": token} if token else {})
                answer = self._call("GET", f"managedZones/{self.zone_id}/rrsets", f"reading {name}", params=params)
                for rrset in answer.get("rrsets") or []:
                    record = _record(rrset)
                    if record.name == name:
                        found.setdefault(name, {})[record.type] = record
                token = answer.get("nextPageToken") or ""
                if not token:
                    break
        return found

    def pointing(self, name: str, address: str) -> Record:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ToolError(
                f"the Ingress's address is the host name {address}, not an IP: Cloud DNS gets A records; use a "
                "load balancer with an IP (ingress-nginx's Service of type LoadBalancer)"
            ) from None
        return Record(name, "AAAA" if ip.version == 6 else "A", (address,))

    def apply(self, changes: list[Change], comment: str) -> str:
        body = {
            "additions": [_rrset(c.record) for c in changes],
            "deletions": [_rrset(c.before) for c in changes if c.before is not None],
        }
        answer = self._call("POST", f"managedZones/{self.zone_id}/changes", f"changing {self.domain}", json=body)
        return str(answer["id"])

    def wait(self, change: str, timeout: float) -> None:
        def probe() -> tuple[bool | None, str]:
            answer = self._call("GET", f"managedZones/{self.zone_id}/changes/{change}", f"change {change}")
            status = answer.get("status", "pending")
            return (True if status == "done" else None), status

        hint = f"Cloud DNS has not applied change {change} yet: run again later"
        wait_for(probe, what=f"Cloud DNS change {change}", timeout=timeout, hint=hint)


def _record(rrset: dict[str, Any]) -> Record:
    kind = rrset["type"]
    values = tuple(
        v.strip('"') if kind == "TXT" else normal(v) if kind == "CNAME" else v for v in rrset.get("rrdatas") or []
    )
    return Record(normal(rrset["name"]), kind, values, ttl=int(rrset.get("ttl", 300)))


def _rrset(record: Record) -> dict[str, Any]:
    values = [f'"{v}"' if record.type == "TXT" else f"{v}." if record.type == "CNAME" else v for v in record.values]
    return {"name": f"{record.name}.", "type": record.type, "ttl": record.ttl, "rrdatas": values}
