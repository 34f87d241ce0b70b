"""Route53: the hosted zone named by DNS_ZONE, its records, changes and their sync; the ALB behind an address.

The zone is found by its name (a public hosted zone; two public zones of that name are refused
as ambiguous). Address records are ALIAS records to the ALB's canonical hosted zone, found by
the ALB's DNS name through ELBv2, as the AWS Load Balancer Controller's Ingress status gives it.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from tools.cloud.awscall import aws_call
from tools.cloud_permissions import everywhere, need, with_dns_zone
from tools.dnsrecords import Change, Record, normal
from tools.errors import ToolError
from tools.waiting import wait_for

# Exactly the IAM actions this module calls (the deploy role's policy is derived from them).
AWS_ACTIONS = (
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "route53:ChangeResourceRecordSets",
    "route53:GetChange",
    "elasticloadbalancing:DescribeLoadBalancers",
)

# What the deploy role may do for them (`make cloud-setup` prints it); records and changes on any
# hosted zone, since the zone's id is known only once it is found by name
ZONE_ARNS = ("arn:aws:route53:::hostedzone/*", "arn:aws:route53:::change/*")
need("aws", "route53:ListHostedZonesByName", with_dns_zone(everywhere), "find the hosted zone of DNS_ZONE",
     ("ListHostedZonesByName",))  # fmt: skip
need("aws", ("route53:ListResourceRecordSets", "route53:ChangeResourceRecordSets", "route53:GetChange"),
     with_dns_zone(lambda c: list(ZONE_ARNS)), "read, change and wait for the records of BASE_DOMAIN",
     ("ListResourceRecordSets", "ChangeResourceRecordSets", "GetChange"))  # fmt: skip
need("aws", "elasticloadbalancing:DescribeLoadBalancers", with_dns_zone(everywhere),
     "the ALB's canonical hosted zone for the ALIAS records", ("DescribeLoadBalancers",))  # fmt: skip


class Route53Zone:
    service = "Route53"

    def __init__(self, domain: str, region: str) -> None:
        import boto3

        self.domain, self.region = domain, region
        self.route53 = boto3.client("route53", region_name=region)
        self._region_client = functools.partial(boto3.client, region_name=region)

    @functools.cached_property
    def zone_id(self) -> str:
        answer = aws_call(
            lambda: self.route53.list_hosted_zones_by_name(DNSName=self.domain, MaxItems="100"),
            f"Route53 list_hosted_zones_by_name {self.domain}",
        )
        zones = [
            z
            for z in answer.get("HostedZones") or []
            if normal(z["Name"]) == self.domain and not (z.get("Config") or {}).get("PrivateZone")
        ]
        if not zones:
            raise ToolError(
                f"DNS_ZONE: no public Route53 hosted zone named {self.domain} in this account: create it "
                "(and delegate the domain to its name servers) or fix DNS_ZONE"
            )
        if len(zones) > 1:
            ids = ", ".join(z["Id"].rsplit("/", 1)[-1] for z in zones)
            raise ToolError(f"DNS_ZONE: {len(zones)} public hosted zones are named {self.domain} ({ids}): keep one")
        return zones[0]["Id"].rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        return f"Route53 hosted zone {self.zone_id} ({self.domain})"

    def records(self, names: list[str]) -> dict[str, dict[str, Record]]:
        """The record sets at each of `names`, by type."""
        found: dict[str, dict[str, Record]] = {}
        for name in dict.fromkeys(names):
            answer = aws_call(
                lambda n=name: self.route53.list_resource_record_sets(
                    HostedZoneId=self.zone_id, StartRecordName=n, MaxItems="100"
                ),
                f"Route53 list_resource_record_sets {name}",
            )
            for rrset in answer.get("ResourceRecordSets") or []:
                if normal(rrset["Name"]) == name:
                    found.setdefault(name, {})[rrset["Type"]] = _record(rrset)
        return found

    def pointing(self, name: str, address: str) -> Record:
        """The record that sends `name` to the Ingress's `address` (the ALB's DNS name)."""
        if _is_ip(address):
            return Record(name, "A", (address,))
        balancer = self.load_balancer(address)
        return Record(name, "A", alias=(balancer["CanonicalHostedZoneId"], normal(balancer["DNSName"])))

    def load_balancer(self, dns_name: str) -> dict[str, Any]:
        elbv2 = self._region_client("elbv2")

        def find() -> dict[str, Any] | None:
            for page in elbv2.get_paginator("describe_load_balancers").paginate():
                for balancer in page.get("LoadBalancers") or []:
                    if normal(balancer.get("DNSName", "")) == normal(dns_name):
                        return balancer
            return None

        balancer = aws_call(find, "ELBv2 describe_load_balancers")
        if balancer is None:
            raise ToolError(
                f"no load balancer in {self.region} has the DNS name {dns_name} (the Ingress's address): "
                "check AWS_REGION, or wait until the AWS Load Balancer Controller has made it"
            )
        return balancer

    def apply(self, changes: list[Change], comment: str) -> str:
        batch = {
            "Comment": comment[:256],
            "Changes": [
                {"Action": "CREATE" if c.action == "create" else "UPSERT", "ResourceRecordSet": _rrset(c.record)}
                for c in changes
            ],
        }
        answer = aws_call(
            lambda: self.route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch=batch),
            f"Route53 change_resource_record_sets in {self.domain}",
        )
        return answer["ChangeInfo"]["Id"]

    def wait(self, change: str, timeout: float) -> None:
        def probe() -> tuple[bool | None, str]:
            status = aws_call(lambda: self.route53.get_change(Id=change), "Route53 get_change")["ChangeInfo"]["Status"]
            return (True if status == "INSYNC" else None), status

        hint = f"Route53 has not propagated change {change}; it usually takes under a minute: run again later"
        wait_for(probe, what=f"Route53 change {change.rsplit('/', 1)[-1]}", timeout=timeout, hint=hint)


def _record(rrset: dict[str, Any]) -> Record:
    name = normal(rrset["Name"])
    alias = rrset.get("AliasTarget")
    if alias:
        return Record(name, rrset["Type"], alias=(alias["HostedZoneId"], normal(alias["DNSName"])))
    kind = rrset["Type"]
    values = tuple(
        r["Value"].strip('"') if kind == "TXT" else normal(r["Value"]) if kind == "CNAME" else r["Value"]
        for r in rrset.get("ResourceRecords") or []
    )
    return Record(name, rrset["Type"], values, ttl=int(rrset.get("TTL", 300)))


def _rrset(record: Record) -> dict[str, Any]:
    rrset: dict[str, Any] = {"Name": record.name, "Type": record.type}
    if record.alias:
        zone, target = record.alias
        rrset["AliasTarget"] = {"HostedZoneId": zone, "DNSName": target, "EvaluateTargetHealth": False}
        return rrset
    quoted = [f'"{v}"' if record.type == "TXT" else v for v in record.values]
    rrset.update(TTL=record.ttl, ResourceRecords=[{"Value": v} for v in quoted])
    return rrset


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False
