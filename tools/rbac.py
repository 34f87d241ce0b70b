"""Print the Kubernetes RBAC a deploy identity needs, for a cluster admin to apply once.

`admin` in the namespace (a RoleBinding; it covers the release lock's Lease too), plus, only
where the chart makes cluster-scoped objects (AWS: the database's PersistentVolume and the
user-volumes ClusterRole), a ClusterRole listing exactly those kinds and verbs, and its binding.
Derived from the chart rendered for CLOUD (no cluster or cloud access); preflight checks exactly
these rights.

    make rbac CLOUD=aws ARGS="--subject User:cmbcluster-deployer" | kubectl apply -f -

Exit 0, or 2 for bad usage or configuration.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

from tools import cli
from tools.errors import UsageError

SUBJECT = re.compile(r"^(User|Group|ServiceAccount):([^\s:]+)$")
DEFAULT_SUBJECT = "Group:cmbcluster-deployers"


def subject(text: str, namespace: str) -> dict[str, str]:
    match = SUBJECT.match(text)
    if not match:
        raise UsageError(f"--subject {text!r}: use User:NAME, Group:NAME or ServiceAccount:[NAMESPACE/]NAME")
    kind, name = match.groups()
    if kind == "ServiceAccount":
        account_namespace, _, account = name.rpartition("/")
        return {"kind": kind, "name": account, "namespace": account_namespace or namespace}
    return {"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def manifests(rendered: list[dict[str, Any]], namespace: str, who: dict[str, str]) -> list[dict[str, Any]]:
    from tools.rights import deploy_rights

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
    rules = [
        {"apiGroups": [r.group], "resources": [r.resource], "verbs": list(r.verbs)}
        for r in deploy_rights(rendered)
        if r.cluster_scoped
    ]
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


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], dry_run=False)
    parser.add_argument(
        "--subject",
        default=DEFAULT_SUBJECT,
        help=f"who deploys: User:NAME, Group:NAME or ServiceAccount:[NS/]NAME (default {DEFAULT_SUBJECT})",
    )
    args = parser.parse_args(argv)
    settings = cli.settings_from(args)
    who = subject(args.subject, settings.namespace)
    import yaml

    from tools.cloud import cloud_for
    from tools.helm import render
    from tools.rights import lock_right_names

    rendered = [o for o in render(settings.release, settings.namespace, cloud_for(settings).chart_values()) if o]
    docs = manifests(rendered, settings.namespace, who)
    header = (
        f"# RBAC for the deploy identity of CMBCluster on {settings.cloud}, namespace {settings.namespace}: "
        "apply once as a cluster admin (kubectl apply -f -)\n"
        f"# `admin` in the namespace covers the release lock too: {', '.join(lock_right_names())}\n"
    )
    sys.stdout.write(header + yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
