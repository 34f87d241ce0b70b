"""The cloud permissions the tools need, declared next to the calls that need them.

A module that calls a cloud API declares, beside the call, what the deploy identity must be
allowed to do for it: `need(cloud, actions, resources, why, operations)`. `make cloud-setup`
prints the deploy role's policy from these declarations, so the policy is exactly what the code
calls and nothing else; an AccessDenied names the actions its operation needs (`hint`).

A module that calls a cloud adds its declarations the same way (e.g. Route 53: `route53:ChangeResourceRecordSets`
on its hosted zone) and names itself in `DECLARING_MODULES`. Steps declare nothing: what a step's
subprocess needs (docker push) is declared by the shim module that gives it its login, so the policy is
collected without importing a step (tests/test_layers.py holds it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Every module that declares needs (imported before the policy is read, so each one registers).
DECLARING_MODULES = (
    "tools.cloud.ecr",
    "tools.cloud.eks",
    "tools.cloud.vpc",
    "tools.cloud.s3",
    "tools.cloud.iam",
    "tools.cloud.gcp",
    "tools.cloud.route53",
    "tools.cloud.acm",
    "tools.cloud.clouddns",
    "tools.registry",
    "tools.auth.cognito",
)

# the Cloud object -> resource names (ARNs, "*", project); none: not needed with these settings
Resources = Callable[[Any], list[str]]


@dataclass(frozen=True)
class Need:
    cloud: str  # aws | gcp
    actions: tuple[str, ...]  # IAM actions (`s3:CreateBucket`) or GCP permissions (`storage.buckets.create`)
    resources: Resources
    why: str
    operations: tuple[str, ...] = ()  # API operations that need them (botocore names), for the error hint


REGISTRY: list[Need] = []


def need(
    cloud: str, actions: tuple[str, ...] | str, resources: Resources, why: str, operations: tuple[str, ...] = ()
) -> Need:
    """Declare (once, at import) that the deploy identity needs `actions` on `resources` for `why`."""
    declared = Need(cloud, (actions,) if isinstance(actions, str) else tuple(actions), resources, why, operations)
    REGISTRY.append(declared)
    return declared


def everywhere(_cloud: Any) -> list[str]:
    """Actions AWS grants only on `*` (ecr:GetAuthorizationToken, ec2:Describe*)."""
    return ["*"]


def with_dns_zone(resources: Resources) -> Resources:
    """`resources` when DNS_ZONE is set, else none: the dns and certs steps call nothing without it."""
    return lambda cloud: resources(cloud) if cloud.settings["DNS_ZONE"] else []


def needs(cloud: str) -> list[Need]:
    for module in DECLARING_MODULES:
        importlib.import_module(module)
    return [n for n in REGISTRY if n.cloud == cloud]


def hint(operation: str) -> str:
    """The actions an API operation (botocore's name, e.g. `CreateBucket`) needs, for an AccessDenied."""
    actions = sorted({a for n in REGISTRY if operation in n.operations for a in n.actions})
    if not actions:
        return ""
    return f"; the deploy role needs {', '.join(actions)} (`make cloud-setup CLOUD=aws` prints its policy)"


def aws_policy(cloud: Any) -> dict[str, Any]:
    """The deploy role's permission policy: one statement per resource set, actions sorted."""
    grouped: dict[tuple[str, ...], set[str]] = {}
    for declared in needs("aws"):
        resources = declared.resources(cloud)
        if resources:
            grouped.setdefault(tuple(sorted(resources)), set()).update(declared.actions)
    statements = [
        {"Sid": f"Deploy{i}", "Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
        for i, (resources, actions) in enumerate(sorted(grouped.items()), 1)
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def gcp_permissions(cloud: Any) -> dict[str, list[str]]:
    """GCP permission -> the resources it is needed on."""
    out: dict[str, set[str]] = {}
    for declared in needs("gcp"):
        resources = declared.resources(cloud)
        for action in declared.actions if resources else ():
            out.setdefault(action, set()).update(resources)
    return {k: sorted(v) for k, v in sorted(out.items())}


# Cloud Storage names a bucket `projects/_/buckets/BUCKET` and its objects `.../objects/OBJECT` in IAM conditions
# (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name).
GCS_BUCKET = "projects/_/buckets/"


@dataclass(frozen=True)
class GcpGrant:
    role_id: str  # a custom role of the project
    title: str
    permissions: tuple[str, ...]
    condition: str  # an IAM condition expression, "" for none


def gcs_names_condition(buckets: list[str]) -> str:
    """An IAM condition matching exactly these buckets (`projects/_/buckets/NAME`) and their objects, never a
    bucket whose name merely starts the same way."""
    return " || ".join(f"resource.name == '{b}' || resource.name.startsWith('{b}/')" for b in sorted(buckets))


def gcp_grants(cloud: Any) -> list[GcpGrant]:
    """The deploy service account's custom roles: what is needed on the project, bound without a condition,
    and what is needed on buckets, one role per set of buckets, bound with a condition on exactly those
    buckets (so that e.g. storage.objects.delete reaches the smoke bucket and no other bucket of the project)."""
    project: set[str] = set()
    by_buckets: dict[tuple[str, ...], set[str]] = {}
    for permission, resources in gcp_permissions(cloud).items():
        if all(r.startswith(GCS_BUCKET) for r in resources):
            by_buckets.setdefault(tuple(resources), set()).add(permission)
        else:
            project.add(permission)
    grants = [GcpGrant("cmbclusterDeploy", "CMBCluster deploy", tuple(sorted(project)), "")]
    for i, (buckets, permissions) in enumerate(sorted(by_buckets.items()), 1):
        condition = gcs_names_condition(list(buckets))
        title = f"CMBCluster deploy: its buckets ({i})"
        grants.append(GcpGrant(f"cmbclusterDeployBuckets{i}", title, tuple(sorted(permissions)), condition))
    return grants
