"""Print the Kubernetes RBAC a deploy identity needs, for a cluster admin to apply once.

`admin` in the namespace (a RoleBinding; it covers the release lock's Lease too), plus, only
where the chart makes cluster-scoped objects (AWS: the backend's user-volumes ClusterRole, its
binding, and the admission policy that holds those volumes to user buckets), a ClusterRole listing
exactly those kinds and verbs, get/patch/delete only on the chart's own objects by name, and its
binding. Derived from the chart rendered for CLOUD (no cluster or cloud access); preflight checks
exactly these rights. What RBAC cannot narrow by name (create) is printed with what bounds it.

    make rbac CLOUD=aws ARGS="--subject User:cmbcluster-deployer" | kubectl apply -f -

Exit 0, or 2 for bad usage or configuration.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

from tools import cli
from tools.cloud import cloud_for
from tools.errors import UsageError
from tools.helm import render
from tools.kube_rights import (
    CREATE_BOUNDS,
    DEPLOY_GROUP,
    WATCH_VERBS,
    Right,
    deploy_group,
    deploy_rights,
    lock_right_names,
)

# User and group names may hold colons (an EKS access entry's default user is an STS ARN); a service
# account's name is a DNS label, optionally after its namespace and a slash
SUBJECT = re.compile(r"^(?:(User|Group):(\S+)|(ServiceAccount):((?:[a-z0-9-]+/)?[a-z0-9][a-z0-9.-]*))$")


def subject(text: str, namespace: str) -> dict[str, str]:
    match = SUBJECT.match(text)
    if not match:
        raise UsageError(f"--subject {text!r}: use User:NAME, Group:NAME or ServiceAccount:[NAMESPACE/]NAME")
    kind, name = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    if kind == "ServiceAccount":
        account_namespace, _, account = name.rpartition("/")
        return {"kind": kind, "name": account, "namespace": account_namespace or namespace}
    return {"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def manifests(rendered: list[dict[str, Any]], namespace: str, who: dict[str, str]) -> list[dict[str, Any]]:
    name = f"cmbcluster-deploy-{namespace}"
    labels = {"app.kubernetes.io/part-of": "cmbcluster", "app.kubernetes.io/managed-by": "cmbcluster-deploy"}
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "cmbcluster-deploy", "namespace": namespace, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [who],
        }
    ]
    rules = [rule(r) for r in deploy_rights(rendered) if r.cluster_scoped]
    if rules:
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": labels},
                "rules": rules,
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [who],
            }
        )
    return out


def rule(right: Right) -> dict[str, Any]:
    out: dict[str, Any] = {"apiGroups": [right.group], "resources": [right.resource], "verbs": list(right.verbs)}
    if right.resource_names:
        out["resourceNames"] = list(right.resource_names)
    return out


def unbounded(rendered: list[dict[str, Any]]) -> list[str]:
    """Comment lines: each cluster-wide right RBAC cannot limit to the chart's objects, and what bounds it."""
    lines = []
    for right in deploy_rights(rendered):
        if right.cluster_scoped and not right.resource_names:
            group = f".{right.group}" if right.group else ""
            bound = CREATE_BOUNDS.get(right.resource, "not bounded by RBAC")
            if right.resource != "persistentvolumes" and set(WATCH_VERBS) <= set(right.verbs):
                bound += "; list/watch: read only, for helm's --wait"
            lines.append(f"#   {'/'.join(right.verbs)} {right.resource}{group}: {bound}\n")
    if not lines:
        return []
    return [
        "# RBAC cannot limit these to the chart's objects by name "
        "(https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources); what bounds them:\n",
        *lines,
    ]


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], dry_run=False)
    parser.add_argument(
        "--subject",
        default="",
        help="who deploys: User:NAME, Group:NAME or ServiceAccount:[NS/]NAME (default Group:" + DEPLOY_GROUP + ")",
    )
    args = parser.parse_args(argv)
    settings = cli.settings_from(args)
    who = subject(args.subject or f"Group:{deploy_group(settings.namespace)}", settings.namespace)
    import yaml

    rendered = [o for o in render(settings.release, settings.namespace, cloud_for(settings).chart_values()) if o]
    docs = manifests(rendered, settings.namespace, who)
    header = (
        f"# RBAC for the deploy identity of CMBCluster on {settings.cloud}, namespace {settings.namespace}: "
        "apply once as a cluster admin (kubectl apply -f -)\n"
        f"# `admin` in the namespace covers the release lock too: {', '.join(lock_right_names())}\n"
    )
    sys.stdout.write(header + "".join(unbounded(rendered)) + yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
