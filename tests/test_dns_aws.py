"""The dns and certs steps on AWS against moto in server mode: Route53 (zone, ALIAS records, ownership
TXT, change sync), ELBv2 (the ALB behind the Ingress's address) and ACM (a DNS-validated request;
the test bed's moto issues on the first read after the request; a second moto, for ACM only,
never validates). The Ingress and its load-balancer address are on the real cluster (its status
patched, as the AWS Load Balancer Controller would: the cluster has no controller)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid

import pytest

from tests.envfiles import good_env, write_env
from tests.test_cluster_access import fresh_boto3_session  # noqa: F401 - autouse: no cached AWS credentials
from tests.test_cluster_make import make
from tools import dns
from tools.dnsrecords import owner_name
from tools.errors import ToolError
from tools.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.testbed
OWNER_TEXT = '"heritage=cmbcluster-deploy,cmbcluster-deploy/owner=cmbtest/cmbcluster/cmbcluster,'


@pytest.fixture
def zone(moto_url, bed_env) -> dict[str, str]:
    """A fresh public hosted zone in moto and the settings' values that use it."""
    import boto3

    domain = f"z{uuid.uuid4().hex[:8]}.example.org"
    created = boto3.client("route53").create_hosted_zone(Name=domain, CallerReference=uuid.uuid4().hex)
    return {"domain": domain, "id": created["HostedZone"]["Id"].rsplit("/", 1)[-1], "base": f"cmb.{domain}"}


def alb(name: str) -> dict[str, str]:
    """An ALB in moto (in a VPC of two subnets, as ELBv2 requires)."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.50.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in ((1, "a"), (2, "b"))
    ]
    balancer = boto3.client("elbv2", region_name="us-east-1").create_load_balancer(Name=name, Subnets=subnets)
    return balancer["LoadBalancers"][0]


def settings(zone: dict[str, str], **extra: str):
    return load_settings(
        cloud="aws", environ=good_env("aws", BASE_DOMAIN=zone["base"], DNS_ZONE=zone["domain"], **extra)
    )


def records(zone: dict[str, str]) -> dict[tuple[str, str], object]:
    """The zone's record sets as Route53 has them: (name, type) -> alias target or values."""
    import boto3

    found = {}
    sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=zone["id"])["ResourceRecordSets"]
    for rrset in sets:
        name = rrset["Name"].replace("\\052", "*").rstrip(".")
        alias = rrset.get("AliasTarget")
        found[(name, rrset["Type"])] = (
            (alias["HostedZoneId"], alias["DNSName"].rstrip("."))
            if alias
            else [r["Value"] for r in rrset["ResourceRecords"]]
        )
    return {k: v for k, v in found.items() if k[1] not in ("NS", "SOA")}


def names(zone: dict[str, str]) -> list[str]:
    return [zone["base"], f"api.{zone['base']}", f"*.{zone['base']}"]


def test_records_are_created_owned_and_a_second_run_changes_nothing(zone, capfd, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    balancer = alb(f"cmb-{uuid.uuid4().hex[:8]}")
    target = (balancer["CanonicalHostedZoneId"], balancer["DNSName"].lower())
    assert dns.sync(settings(zone), "cmbcluster", balancer["DNSName"], dry_run=False, timeout=30) == 0
    made = records(zone)
    for name in names(zone):
        assert made[(name, "A")] == target  # an ALIAS to the ALB's canonical hosted zone
        (text,) = made[(owner_name(name), "TXT")]
        assert text.startswith(OWNER_TEXT) and text.endswith(
            ',cmbcluster-deploy/resource=ingress/cmbcluster/cmbcluster"'
        )
    assert len(made) == 6
    out = capfd.readouterr().out
    assert f"create A {zone['base']} -> ALIAS {target[1]} (zone {target[0]})" in out
    assert "in sync" in out
    summary = (tmp_path / "summary.md").read_text()
    assert f"Route53 hosted zone {zone['id']} ({zone['domain']}): 6 change(s) applied" in summary
    assert f"| *.{zone['base']} | A | ALIAS {target[1]} (zone {target[0]}) |" in summary
    assert (tmp_path / "output").read_text() == f"records={','.join(names(zone))}\n"

    assert dns.sync(settings(zone), "cmbcluster", balancer["DNSName"], dry_run=False, timeout=30) == 0
    assert records(zone) == made
    out = capfd.readouterr().out
    assert "dns: 3 records in sync, nothing to change" in out and "create" not in out


def test_an_address_that_changes_is_updated_and_the_dry_run_changes_nothing(zone, capfd):
    first, second = alb(f"cmb-{uuid.uuid4().hex[:8]}"), alb(f"cmb-{uuid.uuid4().hex[:8]}")
    assert dns.sync(settings(zone), "cmbcluster", first["DNSName"], dry_run=False, timeout=30) == 0
    before = records(zone)
    capfd.readouterr()

    assert dns.sync(settings(zone), "cmbcluster", second["DNSName"], dry_run=True, timeout=30) == 0
    assert records(zone) == before
    out = capfd.readouterr().out
    assert f"would update A {zone['base']} -> ALIAS {second['DNSName'].lower()}" in out
    assert f"(was ALIAS {first['DNSName'].lower()}" in out and "nothing was changed" in out

    assert dns.sync(settings(zone), "cmbcluster", second["DNSName"], dry_run=False, timeout=30) == 0
    after = records(zone)
    for name in names(zone):
        assert after[(name, "A")] == (second["CanonicalHostedZoneId"], second["DNSName"].lower())
        assert after[(owner_name(name), "TXT")] == before[(owner_name(name), "TXT")]


def test_a_dry_run_of_a_new_zone_creates_nothing(zone, capfd):
    balancer = alb(f"cmb-{uuid.uuid4().hex[:8]}")
    assert dns.sync(settings(zone), "cmbcluster", balancer["DNSName"], dry_run=True, timeout=30) == 0
    assert records(zone) == {}
    out = capfd.readouterr().out
    assert out.count("would create") == 6 and "dry run: 6 change(s) shown, nothing was changed" in out


def test_records_that_are_not_ours_are_named_and_nothing_is_changed(zone, capfd):
    import boto3

    balancer = alb(f"cmb-{uuid.uuid4().hex[:8]}")
    hand_made = {
        "Name": f"api.{zone['base']}",
        "Type": "CNAME",
        "TTL": 60,
        "ResourceRecords": [{"Value": "x.example.net"}],
    }
    boto3.client("route53").change_resource_record_sets(
        HostedZoneId=zone["id"], ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": hand_made}]}
    )
    before = records(zone)
    with pytest.raises(ToolError, match=r"^1 record\(s\) in the way are not this release's: nothing was changed$"):
        dns.sync(settings(zone), "cmbcluster", balancer["DNSName"], dry_run=False, timeout=30)
    assert records(zone) == before  # not even the two free names were written
    err = capfd.readouterr().err
    assert f"api.{zone['base']}: CNAME api.{zone['base']} -> x.example.net exists and is not this release's" in err

    # Records another release owns (its TXT names another owner): refused too, even when we are told to
    # point them at the same ALB
    other = settings(zone, NAMESPACE="other")
    boto3.client("route53").change_resource_record_sets(
        HostedZoneId=zone["id"], ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": hand_made}]}
    )
    assert dns.sync(other, "cmbcluster", balancer["DNSName"], dry_run=False, timeout=30) == 0
    owned_by_other = records(zone)
    second = alb(f"cmb-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ToolError, match="3 record"):
        dns.sync(settings(zone), "cmbcluster", second["DNSName"], dry_run=False, timeout=30)
    assert records(zone) == owned_by_other
    err = capfd.readouterr().err
    assert "names cmbtest/other/cmbcluster, not cmbtest/cmbcluster/cmbcluster" in err


def test_an_address_no_alb_has_is_one_clear_line(zone):
    with pytest.raises(ToolError, match=r"no load balancer in us-east-1 has the DNS name nope-1\.us-east-1\.elb"):
        dns.sync(settings(zone), "cmbcluster", "nope-1.us-east-1.elb.amazonaws.com", dry_run=False, timeout=30)


def test_a_zone_that_does_not_exist_is_one_clear_line(moto_url, bed_env):
    values = {"domain": "absent.example.com", "base": "cmb.absent.example.com"}
    with pytest.raises(ToolError, match=r"DNS_ZONE: no public Route53 hosted zone named absent\.example\.com"):
        dns.sync(settings(values), "cmbcluster", "1.2.3.4", dry_run=False, timeout=30)


# -- the CLI ---------------------------------------------------------------------------------------
def run_tool(tool: str, env_file, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"tools.{tool}", "--cloud", "aws", "--env-file", str(env_file), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**env, "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )


def test_without_dns_zone_dns_and_certs_are_skipped_with_a_note(tmp_path, bed_env):
    env_file = write_env(tmp_path / "aws.env", good_env("aws"))
    for tool, note in (
        ("dns", "skipped dns: DNS_ZONE is not set: point cmb.example.org at the Ingress address yourself"),
        ("certs", "skipped certificate: DNS_ZONE is not set"),
    ):
        proc = run_tool(tool, env_file, env=bed_env)
        assert proc.returncode == 0, proc.stderr
        assert note in proc.stdout


# -- certificates ----------------------------------------------------------------------------------
def acm_certificates(domain: str) -> list[dict]:
    import boto3

    acm = boto3.client("acm", region_name="us-east-1")
    listed = acm.list_certificates()["CertificateSummaryList"]
    return [
        acm.describe_certificate(CertificateArn=c["CertificateArn"])["Certificate"]
        for c in listed
        if c["DomainName"] == domain
    ]


def test_certs_requests_validates_through_the_zone_and_the_chart_gets_the_arn(zone, tmp_path, bed_env):
    """Done-when of issue 14 on the test bed: the certs step (CLI) requests the certificate, writes
    its validation CNAMEs (owned) into moto's Route53 and waits for ISSUED; helm_deploy's values
    carry its ARN into the rendered Ingress; a second run finds it and requests nothing."""
    import boto3

    from tools.cloud import AwsCloud
    from tools.helm import render

    cluster = f"cmb{uuid.uuid4().hex[:8]}"
    values = good_env("aws", BASE_DOMAIN=zone["base"], DNS_ZONE=zone["domain"], CLUSTER_NAME=cluster)
    env_file = write_env(tmp_path / "aws.env", values)
    first = make("certs", "CLOUD=aws", f"ENV_FILE={env_file}", env=bed_env)  # the Makefile's target
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"-m tools.certs --cloud aws --env-file {env_file}" in first.stdout
    (certificate,) = acm_certificates(zone["base"])
    arn = certificate["CertificateArn"]
    assert certificate["Status"] == "ISSUED"
    assert sorted(certificate["SubjectAlternativeNames"]) == sorted([zone["base"], f"*.{zone['base']}"])
    assert f"requested an ACM certificate for {zone['base']} and *.{zone['base']}: {arn}" in first.stdout
    assert f"certificate: certificate for {zone['base']} and *.{zone['base']} ISSUED: {arn}" in first.stdout
    (validation,) = {o["ResourceRecord"]["Name"].rstrip(".") for o in certificate["DomainValidationOptions"]}
    made = records(zone)
    value = certificate["DomainValidationOptions"][0]["ResourceRecord"]["Value"].rstrip(".")
    assert [v.rstrip(".") for v in made[(validation, "CNAME")]] == [value]
    (text,) = made[(owner_name(validation), "TXT")]
    assert f"cmbcluster-deploy/owner={cluster}/cmbcluster/cmbcluster" in text and "resource=acm/" in text

    second = run_tool("certs", env_file, env=bed_env)
    assert second.returncode == 0, second.stderr
    assert f"certificate: ISSUED certificate for {zone['base']} and *.{zone['base']} found: {arn}" in second.stdout
    assert len(acm_certificates(zone["base"])) == 1 and records(zone) == made

    # helm_deploy's values: the chart's values plus what is read from the cloud at deploy time
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.1.0/24")["Subnet"]["SubnetId"]
    boto3.client("eks", region_name="us-east-1").create_cluster(
        name=cluster, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": [subnet]}
    )
    from tools.chart_values import merge

    cloud = AwsCloud(load_settings(cloud="aws", env_file=env_file))
    rendered = render("cmbcluster", "cmbcluster", merge(cloud.chart_values(), cloud.deploy_values()))
    (ingress,) = [o for o in rendered if o and o["kind"] == "Ingress"]
    assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"] == arn
    (users,) = [o for o in rendered if o and o["metadata"]["name"] == "cmbcluster-user-environment"]
    user_annotations = json.loads(users["data"]["USER_INGRESS_ANNOTATIONS"])  # <user>-<env>.BASE_DOMAIN: the wildcard
    assert user_annotations["alb.ingress.kubernetes.io/certificate-arn"] == arn

    explicit = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
    given = run_tool("certs", env_file, env={**bed_env, "AWS_CERTIFICATE_ARN": explicit})
    assert f"AWS_CERTIFICATE_ARN is given: {explicit} (used as it is)" in given.stdout
    assert len(acm_certificates(zone["base"])) == 1


def test_certs_dry_run_requests_nothing(zone, tmp_path, bed_env):
    env_file = write_env(tmp_path / "aws.env", good_env("aws", BASE_DOMAIN=zone["base"], DNS_ZONE=zone["domain"]))
    proc = run_tool("certs", env_file, "--dry-run", env=bed_env)
    assert proc.returncode == 0, proc.stderr
    assert f"would request a certificate for {zone['base']} and *.{zone['base']}" in proc.stdout
    assert acm_certificates(zone["base"]) == [] and records(zone) == {}


def test_a_validation_that_never_completes_times_out_with_a_clear_line(zone, tmp_path, bed_env, moto_acm_stuck_url):
    env_file = write_env(tmp_path / "aws.env", good_env("aws", BASE_DOMAIN=zone["base"], DNS_ZONE=zone["domain"]))
    env = {**bed_env, "AWS_ENDPOINT_URL_ACM": moto_acm_stuck_url}
    proc = run_tool("certs", env_file, "--timeout", "3", env=env)
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error")]
    assert line.startswith("error   ACM certificate arn:aws:acm:us-east-1:123456789012:certificate/")
    assert "is still PENDING_VALIDATION after 3s: ACM has not seen the validation CNAMEs" in line
    assert "Traceback" not in proc.stderr
    assert "waiting for ACM certificate arn:aws:acm:" in proc.stdout and ": PENDING_VALIDATION (" in proc.stdout
    assert any(k[1] == "CNAME" for k in records(zone))  # the validation records were written

    again = run_tool("certs", env_file, "--timeout", "1", env=env)  # takes up the same request
    assert "taking up our pending certificate request" in again.stdout
    import boto3

    stuck = boto3.client("acm", region_name="us-east-1", endpoint_url=moto_acm_stuck_url)
    assert len([c for c in stuck.list_certificates()["CertificateSummaryList"] if c["DomainName"] == zone["base"]]) == 1


# -- the Ingress on the real cluster ---------------------------------------------------------------
def test_dns_reads_the_ingress_address_from_the_real_cluster(zone, cluster, cluster_namespace, capfd):
    """The Ingress made by the release, its status patched as the AWS Load Balancer Controller would
    (the test cluster runs no controller): the dns step reads it through the cluster's API."""
    from kubernetes import client

    from tests.realcluster import api as admin_api

    balancer = alb(f"cmb-{uuid.uuid4().hex[:8]}")
    networking = client.NetworkingV1Api(admin_api(cluster))
    body = {
        "metadata": {"name": "cmbcluster", "annotations": {"meta.helm.sh/release-name": "cmbcluster"}},
        "spec": {"defaultBackend": {"service": {"name": "cmbcluster-frontend", "port": {"number": 80}}}},
    }
    networking.create_namespaced_ingress(cluster_namespace, body)
    other = {**body, "metadata": {"name": "user-x", "annotations": {}}}  # a user environment's: not the release's
    networking.create_namespaced_ingress(cluster_namespace, other)
    values = settings(zone, NAMESPACE=cluster_namespace)
    args = argparse.Namespace(dry_run=False, timeout=3.0)
    with pytest.raises(
        ToolError, match=r"the Ingress address of release cmbcluster is still Ingress cmbcluster has no"
    ):
        dns.dns(values, cluster, args)
    status = {"status": {"loadBalancer": {"ingress": [{"hostname": balancer["DNSName"]}]}}}
    networking.patch_namespaced_ingress_status("cmbcluster", cluster_namespace, status)
    assert dns.dns(values, cluster, args) == 0
    assert records(zone)[(zone["base"], "A")] == (balancer["CanonicalHostedZoneId"], balancer["DNSName"].lower())
    out = capfd.readouterr().out
    assert f"Ingress {cluster_namespace}/cmbcluster address: {balancer['DNSName']}" in out
    (text,) = records(zone)[(owner_name(zone["base"]), "TXT")]
    assert f"resource=ingress/{cluster_namespace}/cmbcluster" in text
