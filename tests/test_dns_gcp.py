"""The dns step on GCP against Cloud DNS's REST API, staged with `responses` at the HTTP edge (no
emulator of Cloud DNS exists): a managed zone whose record sets change only as Cloud DNS changes
them (an addition that exists is refused, a deletion must match exactly, a change is `pending`
until read once). google-auth signs a real token request with a fresh service-account key.
Also: the chart's Issuer gains the Cloud DNS DNS-01 solver with DNS_ZONE, and preflight reads
cert-manager's roles/dns.admin from the project's IAM policy."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.envfiles import good_env
from tests.test_cluster_access import service_account  # noqa: F401 - fixture: a real key file
from tools import dns
from tools.cloud import GcpCloud
from tools.dnsrecords import owner_name
from tools.errors import ToolError
from tools.settings import load_settings

API = "https://dns.googleapis.com/dns/v1/projects/cmb-project"
BASE = "cmb.example.org"
NAMES = [BASE, f"api.{BASE}", f"*.{BASE}"]


class CloudDns:
    """The managed zone `example-org` (example.org.) as Cloud DNS keeps it, behind `responses`."""

    def __init__(self, fake) -> None:
        self.rrsets: dict[tuple[str, str], dict] = {}
        self.changes: dict[str, int] = {}  # id -> reads left before `done`
        self.posted: list[dict] = []
        fake.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.t", "expires_in": 3600})
        zones = {"managedZones": [{"name": "example-org", "dnsName": "example.org.", "visibility": "public"}]}
        fake.get(f"{API}/managedZones", json=zones, match=[])
        fake.add_callback("GET", re.compile(f"{API}/managedZones/example-org/rrsets.*"), callback=self.list)
        fake.add_callback("POST", f"{API}/managedZones/example-org/changes", callback=self.change)
        fake.add_callback("GET", re.compile(f"{API}/managedZones/example-org/changes/.+"), callback=self.status)

    def add(self, name: str, kind: str, *rrdatas: str) -> None:
        self.rrsets[(name, kind)] = {"name": name, "type": kind, "ttl": 300, "rrdatas": list(rrdatas)}

    def list(self, request):
        name = parse_qs(urlsplit(request.url).query)["name"][0]
        return 200, {}, json.dumps({"rrsets": [r for (n, _), r in sorted(self.rrsets.items()) if n == name]})

    def change(self, request):
        body = json.loads(request.body)
        self.posted.append(body)
        for rrset in body.get("deletions") or []:
            if self.rrsets.get((rrset["name"], rrset["type"])) != rrset:
                return 412, {}, json.dumps({"error": {"code": 412, "message": "conditionNotMet"}})
        for rrset in body.get("additions") or []:
            key = (rrset["name"], rrset["type"])
            if (
                key in self.rrsets
                and rrset not in body.get("deletions", [])
                and all((d["name"], d["type"]) != key for d in body.get("deletions") or [])
            ):
                return 409, {}, json.dumps({"error": {"code": 409, "message": f"alreadyExists: {key}"}})
        for rrset in body.get("deletions") or []:
            del self.rrsets[(rrset["name"], rrset["type"])]
        for rrset in body.get("additions") or []:
            self.rrsets[(rrset["name"], rrset["type"])] = rrset
        change = str(len(self.changes) + 1)
        self.changes[change] = 1
        return 200, {}, json.dumps({"id": change, "status": "pending"})

    def status(self, request):
        change = request.url.rsplit("/", 1)[-1]
        self.changes[change] -= 1
        return 200, {}, json.dumps({"id": change, "status": "done" if self.changes[change] < 0 else "pending"})


@pytest.fixture
def cloud_dns(service_account):  # noqa: F811 - the fixture imported above
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        yield CloudDns(fake)


def settings(**extra: str):
    return load_settings(cloud="gcp", environ=good_env("gcp", DNS_ZONE="example.org", **extra))


def test_a_records_are_created_owned_and_a_second_run_changes_nothing(cloud_dns, capfd):
    assert dns.sync(settings(), "cmbcluster", "34.1.2.3", dry_run=False, timeout=30) == 0
    for name in NAMES:
        assert cloud_dns.rrsets[(f"{name}.", "A")]["rrdatas"] == ["34.1.2.3"]
        (text,) = cloud_dns.rrsets[(f"{owner_name(name)}.", "TXT")]["rrdatas"]
        assert text == (
            '"heritage=cmbcluster-deploy,cmbcluster-deploy/owner=cmbtest/cmbcluster/cmbcluster,'
            'cmbcluster-deploy/resource=ingress/cmbcluster/cmbcluster"'
        )
    assert len(cloud_dns.posted) == 1 and len(cloud_dns.posted[0]["additions"]) == 6
    out = capfd.readouterr().out
    assert cloud_dns.changes["1"] < 0  # read until Cloud DNS said done (pending first)
    assert "change 1 in sync" in out and "Cloud DNS managed zone example-org (example.org)" in out

    assert dns.sync(settings(), "cmbcluster", "34.1.2.3", dry_run=False, timeout=30) == 0
    assert len(cloud_dns.posted) == 1  # nothing sent
    assert "dns: 3 records in sync, nothing to change" in capfd.readouterr().out


def test_a_changed_address_is_updated_and_the_dry_run_sends_nothing(cloud_dns, capfd):
    assert dns.sync(settings(), "cmbcluster", "34.1.2.3", dry_run=False, timeout=30) == 0
    assert dns.sync(settings(), "cmbcluster", "34.9.9.9", dry_run=True, timeout=30) == 0
    assert len(cloud_dns.posted) == 1
    assert f"would update A {BASE} -> 34.9.9.9 (was 34.1.2.3)" in capfd.readouterr().out
    assert dns.sync(settings(), "cmbcluster", "34.9.9.9", dry_run=False, timeout=30) == 0
    (update,) = cloud_dns.posted[1:]
    assert sorted(r["name"] for r in update["deletions"]) == sorted(f"{n}." for n in NAMES)  # exactly the old ones
    assert all(cloud_dns.rrsets[(f"{n}.", "A")]["rrdatas"] == ["34.9.9.9"] for n in NAMES)


def test_a_record_someone_else_made_is_refused_and_nothing_is_sent(cloud_dns, capfd):
    cloud_dns.add(f"*.{BASE}.", "A", "10.0.0.1")
    with pytest.raises(ToolError, match=r"^1 record\(s\) in the way are not this release's: nothing was changed$"):
        dns.sync(settings(), "cmbcluster", "34.1.2.3", dry_run=False, timeout=30)
    assert cloud_dns.posted == []
    err = capfd.readouterr().err
    assert f"*.{BASE}: A *.{BASE} -> 10.0.0.1 exists and is not this release's (no ownership record " in err


def test_a_host_name_address_is_refused_in_one_line(cloud_dns):
    with pytest.raises(ToolError, match=r"is the host name lb\.example\.net, not an IP: Cloud DNS gets A records"):
        dns.sync(settings(), "cmbcluster", "lb.example.net", dry_run=False, timeout=30)


def test_no_permission_is_one_line_naming_the_role(service_account):  # noqa: F811
    import responses

    with responses.RequestsMock() as fake:
        fake.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.t", "expires_in": 3600})
        fake.get(f"{API}/managedZones", status=403, json={"error": {"code": 403, "message": "Forbidden"}})
        with pytest.raises(ToolError, match=r"may not do it in project cmb-project: grant roles/dns\.admin"):
            dns.sync(settings(), "cmbcluster", "34.1.2.3", dry_run=False, timeout=30)


# -- certificates on GCP: cert-manager's Issuer and its IAM role -----------------------------------
def test_the_issuer_answers_dns01_through_cloud_dns_only_with_a_zone():
    from tools.helm import render

    def solvers(values):
        (issuer,) = [
            o
            for o in render("cmbcluster", "cmbcluster", GcpCloud(values).chart_values())
            if o and o["kind"] in ("Issuer", "ClusterIssuer")
        ]
        return issuer["spec"]["acme"]["solvers"]

    with_zone = solvers(settings())
    assert with_zone[0] == {"selector": {"dnsZones": [BASE]}, "dns01": {"cloudDNS": {"project": "cmb-project"}}}
    assert "serviceAccountSecretRef" not in json.dumps(with_zone)  # Workload Identity, no key
    assert with_zone[1] == {"http01": {"ingress": {"ingressClassName": "nginx"}}}
    assert solvers(load_settings(cloud="gcp", environ=good_env("gcp"))) == [with_zone[1]]


POLICY = "https://cloudresourcemanager.googleapis.com/v1/projects/cmb-project:getIamPolicy"


@pytest.mark.parametrize(
    ("answer", "problem", "unchecked"),
    [
        (
            {
                "bindings": [
                    {
                        "role": "roles/dns.admin",
                        "members": ["serviceAccount:cert-manager@cmb-project.iam.gserviceaccount.com"],
                    }
                ]
            },
            None,
            None,
        ),
        (
            {
                "bindings": [
                    {
                        "role": "roles/dns.reader",
                        "members": ["serviceAccount:cert-manager@cmb-project.iam.gserviceaccount.com"],
                    }
                ]
            },
            "lacks roles/dns.admin on project cmb-project",
            None,
        ),
        (403, None, "answered HTTP 403 (grant resourcemanager.projects.getIamPolicy to check it)"),
    ],
)
def test_preflight_reads_cert_managers_dns_role(service_account, answer, problem, unchecked):  # noqa: F811
    import responses

    with responses.RequestsMock() as fake:
        fake.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.t", "expires_in": 3600})
        if answer == 403:
            fake.post(POLICY, status=403, json={"error": {"code": 403, "message": "denied"}})
        else:
            fake.post(POLICY, json=answer)
        found, not_checked = GcpCloud(settings()).cert_manager_dns_role()
    assert (found is None) == (problem is None) and (problem is None or problem in found)
    if problem:
        assert "gcloud projects add-iam-policy-binding cmb-project --member serviceAccount:cert-manager@" in found
    assert (not_checked is None) == (unchecked is None) and (unchecked is None or unchecked in not_checked)
