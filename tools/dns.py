"""Point BASE_DOMAIN, api.BASE_DOMAIN and *.BASE_DOMAIN at the release's Ingress, in DNS_ZONE.

Reads the Ingress's load-balancer address from the cluster (waiting for the controller to give
it one), then makes the three records in the zone: Route53 ALIAS records to the ALB on AWS,
Cloud DNS A records to the address on GCP; on a local cluster, and without DNS_ZONE, it only
says so. Each record gets an ownership TXT beside it (`tools.dnsrecords`); a record that is not
this release's is never overwritten or deleted: it is named and nothing is changed. It waits
until the change is in sync. A second run changes nothing; `--dry-run` shows the change set.

The cloud calls it makes: AWS_ACTIONS in tools/cloud/route53.py, GCP_PERMISSIONS in
tools/cloud/clouddns.py. Exit 0 ok or skipped, 1 failure or conflict, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from tools import cli, kube_ops
from tools.cloud import cloud_for
from tools.config_rules import require_valid
from tools.dnsrecords import owner_name, plan_changes
from tools.errors import ToolError
from tools.kube_client import KubeApi
from tools.report import REPORTER, markdown_table
from tools.settings import Settings
from tools.waiting import wait_for


def record_names(domain: str) -> list[str]:
    return [domain, f"api.{domain}", f"*.{domain}"]


def await_ingress_address(api: KubeApi, namespace: str, release: str, timeout: float) -> tuple[str, str]:
    """(the chart's Ingress name, its address), waiting while the controller makes the load balancer."""

    def probe() -> tuple[tuple[str, str] | None, str]:
        ingresses = kube_ops.release_ingresses(api, namespace, release)
        if not ingresses:
            raise ToolError(f"release {release} has no Ingress in namespace {namespace}: run make helm-deploy first")
        name = ingresses[0]["metadata"]["name"]
        address = kube_ops.status_address(ingresses[0])
        return ((name, address) if address else None), f"Ingress {name} has no address"

    hint = "check the ingress controller (kubectl describe ingress: its events), then run again"
    return wait_for(probe, what=f"the Ingress address of release {release}", timeout=timeout, hint=hint)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="for the Ingress address and for the change to be in sync, each (600)",
    )
    return p


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.timeout < float("inf"):
        raise ToolError("--timeout must be a positive number of seconds", 2)
    settings = cli.settings_from(args)

    cloud = cloud_for(settings)
    zone = cloud.dns_zone()
    if zone is None:
        why = "DNS_ZONE is not set" if settings.cloud != "local" else "a local cluster has no managed DNS zone"
        REPORTER.line("skip", f"dns: {why}: point {settings['BASE_DOMAIN']} at the Ingress address yourself")
        return 0

    require_valid(settings, "dns", uses_secrets=False)
    with cloud.cluster_access() as kubeconfig:
        return dns(settings, kubeconfig, args)


def dns(settings: Settings, kubeconfig: str, args: argparse.Namespace) -> int:
    """The step after the settings and cluster access: address, plan, change, wait, report."""
    start = time.monotonic()
    with kube_ops.api_client(kubeconfig) as api:
        ingress, address = await_ingress_address(api, settings.namespace, settings.release, args.timeout)
    REPORTER.ok(f"Ingress {settings.namespace}/{ingress} address: {address}", time.monotonic() - start)
    return sync(settings, ingress, address, dry_run=args.dry_run, timeout=args.timeout)


def sync(settings: Settings, ingress: str, address: str, *, dry_run: bool, timeout: float) -> int:
    """Make the three records point at `address` (the Ingress `ingress`'s), owned by this release."""
    cloud = cloud_for(settings)
    zone = cloud.dns_zone()
    if zone is None:  # main refuses a target without DNS_ZONE before it gets here
        raise ToolError("DNS_ZONE is not set: set it to the hosted zone (AWS) or managed zone (GCP) to manage")
    with REPORTER.action(f"reading {zone.service} zone {settings['DNS_ZONE']}") as action:
        names = record_names(settings["BASE_DOMAIN"])
        wanted = [zone.pointing(name, address) for name in names]
        current = zone.records([n for name in names for n in (name, owner_name(name))])
        action.set("ok", zone.label)
    result = plan_changes(wanted, current, cloud.dns_owner, f"ingress/{settings.namespace}/{ingress}")
    if result.conflicts:
        for line in result.conflicts:
            REPORTER.error(line, title="dns")
        raise ToolError(f"{len(result.conflicts)} record(s) in the way are not this release's: nothing was changed")
    for record in result.in_place:
        REPORTER.line("ok", f"in place: {record.shown()}")
    if not result.changes:
        REPORTER.ok(f"dns: {len(wanted)} records in sync, nothing to change")
        _summary(settings, zone, wanted, address, "in sync, nothing changed")
        return 0
    for change in result.changes:
        REPORTER.info(("would " if dry_run else "") + change.shown())
    if dry_run:
        REPORTER.info(f"dry run: {len(result.changes)} change(s) shown, nothing was changed")
        return 0
    with REPORTER.action(f"{len(result.changes)} change(s) in {zone.label}, waiting until in sync") as action:
        change = zone.apply(result.changes, f"cmbcluster-deploy dns for {settings.release} in {settings.namespace}")
        zone.wait(change, timeout)
        action.set("ok", f"change {change.rsplit('/', 1)[-1]} in sync")
    _summary(settings, zone, wanted, address, f"{len(result.changes)} change(s) applied")
    return 0


def _summary(settings: Settings, zone: Any, wanted: list[Any], address: str, result: str) -> None:
    rows = [(r.name, r.type, r.shown().split(" -> ", 1)[1]) for r in wanted]
    REPORTER.summary(
        f"### dns\n{zone.label}: {result}; the Ingress's address is `{address}`\n\n"
        + markdown_table(["name", "type", "points at"], rows)
    )
    REPORTER.output("records", ",".join(r.name for r in wanted))


if __name__ == "__main__":
    sys.exit(main())
