"""ACM: the certificate for BASE_DOMAIN and *.BASE_DOMAIN, found or requested with DNS validation.

An ISSUED certificate covering both names is used as it is. Otherwise one is requested (tagged
with its owner, with an idempotency token so two runs within the hour get the same request),
its validation CNAMEs are written into DNS_ZONE through the same ownership rules as every other
record (`tools.dnsrecords`), and the run waits for ISSUED. A request of ours still pending is
taken up again, never requested twice. The validation records stay: ACM renews through them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tools.cloud.awscall import aws_call
from tools.cloud.base import Cloud
from tools.cloud.route53 import AWS_ACTIONS as ROUTE53_ACTIONS
from tools.cloud.route53 import Route53Zone
from tools.cloud_permissions import everywhere, need, with_dns_zone
from tools.dnsrecords import HERITAGE, Record, normal, owner_name, plan_changes
from tools.errors import ToolError
from tools.report import REPORTER
from tools.waiting import wait_for

# Exactly the IAM actions this module calls (its validation records go through tools.cloud.route53).
AWS_ACTIONS = (
    "acm:ListCertificates",
    "acm:DescribeCertificate",
    "acm:ListTagsForCertificate",
    "acm:RequestCertificate",
    "acm:AddTagsToCertificate",  # RequestCertificate with Tags needs it too
    *ROUTE53_ACTIONS,
)
OWNER_TAG = f"{HERITAGE}/owner"


def _certificates(cloud: Cloud) -> list[str]:
    s = cloud.settings
    return [f"arn:aws:acm:{s['AWS_REGION']}:{s['AWS_ACCOUNT_ID']}:certificate/*"]


need("aws", ("acm:ListCertificates", "acm:RequestCertificate"), with_dns_zone(everywhere),
     "find or request the certificate of BASE_DOMAIN", ("ListCertificates", "RequestCertificate"))  # fmt: skip
need("aws", ("acm:DescribeCertificate", "acm:ListTagsForCertificate", "acm:AddTagsToCertificate"),
     with_dns_zone(_certificates), "read its names, state and owner tag; tag a request",
     ("DescribeCertificate", "ListTagsForCertificate", "AddTagsToCertificate"))  # fmt: skip


def wanted_names(domain: str) -> tuple[str, str]:
    return domain, f"*.{domain}"


def covers(alternative_names: list[str], name: str) -> bool:
    """Whether a certificate for `alternative_names` is valid for `name` (one wildcard label at most)."""
    names = {normal(n) for n in alternative_names}
    parent = name.split(".", 1)[1] if "." in name else ""
    return name in names or (not name.startswith("*.") and f"*.{parent}" in names)


class Certificates:
    def __init__(self, region: str, domain: str, owner: str) -> None:
        import boto3

        self.acm = boto3.client("acm", region_name=region)
        self.region, self.domain, self.owner = region, domain, owner

    def candidates(self, statuses: list[str]) -> list[dict[str, Any]]:
        """Certificates in `statuses` covering BASE_DOMAIN and *.BASE_DOMAIN, described, newest expiry first."""

        def listing() -> list[dict[str, Any]]:
            summaries: list[dict[str, Any]] = []
            for page in self.acm.get_paginator("list_certificates").paginate(CertificateStatuses=statuses):
                summaries += page.get("CertificateSummaryList") or []
            return summaries

        found = []
        for summary in aws_call(listing, "ACM list_certificates"):
            if normal(summary.get("DomainName", "")) not in wanted_names(self.domain):
                continue
            arn = summary["CertificateArn"]
            certificate = self.describe(arn)
            names = certificate.get("SubjectAlternativeNames") or [certificate.get("DomainName", "")]
            if all(covers(names, n) for n in wanted_names(self.domain)):
                found.append(certificate)
        return sorted(found, key=lambda c: str(c.get("NotAfter", "")), reverse=True)

    def describe(self, arn: str) -> dict[str, Any]:
        answer = aws_call(lambda: self.acm.describe_certificate(CertificateArn=arn), "ACM describe_certificate")
        return answer["Certificate"]

    def issued(self) -> str | None:
        """The ARN of an ISSUED certificate for BASE_DOMAIN and *.BASE_DOMAIN, or None."""
        found = self.candidates(["ISSUED"])
        return found[0]["CertificateArn"] if found else None

    def ours_pending(self) -> str | None:
        for certificate in self.candidates(["PENDING_VALIDATION"]):
            arn = certificate["CertificateArn"]
            tags = aws_call(lambda a=arn: self.acm.list_tags_for_certificate(CertificateArn=a), "ACM list_tags")
            if {"Key": OWNER_TAG, "Value": self.owner} in (tags.get("Tags") or []):
                return arn
        return None

    def request(self) -> str:
        token = hashlib.sha256(f"{self.owner}|{self.domain}".encode()).hexdigest()[:32]
        answer = aws_call(
            lambda: self.acm.request_certificate(
                DomainName=self.domain,
                SubjectAlternativeNames=list(wanted_names(self.domain)),
                ValidationMethod="DNS",
                IdempotencyToken=token,
                Tags=[{"Key": OWNER_TAG, "Value": self.owner}],
            ),
            f"ACM request_certificate {self.domain}",
        )
        return answer["CertificateArn"]

    def validation_records(self, arn: str, timeout: float) -> list[Record]:
        """The CNAMEs ACM wants (it names them a few seconds after the request)."""

        def probe() -> tuple[list[Record] | None, str]:
            options = self.describe(arn).get("DomainValidationOptions") or []
            options = [o for o in options if o.get("ValidationMethod") == "DNS"]
            records = [o.get("ResourceRecord") for o in options]
            if not options or not all(records):
                return None, "no validation records yet"
            unique = {normal(r["Name"]): Record(normal(r["Name"]), "CNAME", (normal(r["Value"]),)) for r in records}
            return list(unique.values()), "named"

        hint = "ACM did not name the DNS validation records: look at the certificate in the ACM console"
        return wait_for(probe, what=f"ACM validation records of {arn}", timeout=timeout, hint=hint)

    def wait_issued(self, arn: str, timeout: float) -> str:
        def probe() -> tuple[str | None, str]:
            status = self.describe(arn)["Status"]
            if status not in ("ISSUED", "PENDING_VALIDATION"):
                raise ToolError(f"ACM certificate {arn} is {status}: look at it in the ACM console, then run again")
            return (arn if status == "ISSUED" else None), status

        hint = (
            "ACM has not seen the validation CNAMEs: check that the domain is delegated to the hosted zone's name "
            "servers (dig NS DNS_ZONE), then run again (it takes up the same request)"
        )
        return wait_for(probe, what=f"ACM certificate {arn}", timeout=timeout, hint=hint)


def ensure_certificate(settings: Any, owner: str, *, dry_run: bool, timeout: float) -> tuple[str, str]:
    """(ARN or "", what happened): find an ISSUED certificate, or request one, validate it through DNS_ZONE, wait."""
    domain, region = settings["BASE_DOMAIN"], settings["AWS_REGION"]
    certificates = Certificates(region, domain, owner)
    arn = certificates.issued()
    if arn:
        return arn, f"ISSUED certificate for {domain} and *.{domain} found: {arn}"
    arn = certificates.ours_pending()
    if dry_run:
        if arn:
            return "", f"would write the validation records of {arn} (pending) and wait for ISSUED"
        return "", f"would request a certificate for {domain} and *.{domain} (DNS validation in {settings['DNS_ZONE']})"
    if arn:
        REPORTER.info(f"taking up our pending certificate request {arn}")
    else:
        arn = certificates.request()
        REPORTER.info(f"requested an ACM certificate for {domain} and *.{domain}: {arn}")
    zone = Route53Zone(settings["DNS_ZONE"], region)
    wanted = certificates.validation_records(arn, timeout)
    names = [n for r in wanted for n in (r.name, owner_name(r.name))]
    changes = plan_changes(wanted, zone.records(names), owner, f"acm/{arn.rsplit('/', 1)[-1]}")
    if changes.conflicts:
        for line in changes.conflicts:
            REPORTER.error(line, title="certs")
        raise ToolError(f"{len(changes.conflicts)} validation record(s) are someone else's: nothing was written")
    if changes.changes:
        change = zone.apply(changes.changes, f"{HERITAGE} ACM validation for {domain}")
        for c in changes.changes:
            REPORTER.info(c.shown())
        zone.wait(change, timeout)
    certificates.wait_issued(arn, timeout)
    return arn, f"certificate for {domain} and *.{domain} ISSUED: {arn}"
