"""The Kubernetes rights a deploy needs, derived from the rendered chart: one place for what
preflight checks (SelfSubjectAccessReview) and what `make rbac` prints for a cluster admin."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

VERBS = ("get", "create", "patch", "delete")  # what helm does to each kind a release manages
# Helm's release records (Secrets in the namespace) are also listed and updated.
EXTRA_VERBS = {"Secret": ("list", "update")}
# The release's lock (tools/lease.py): a coordination.k8s.io Lease in the namespace, read, made and renewed.
LOCK_RIGHT = ("coordination.k8s.io", "leases", ("get", "create", "patch"))
# Kinds a namespace cannot hold: their rights are cluster-wide.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "PersistentVolume",
        "StorageClass",
        "CSIDriver",
        "IngressClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ClusterIssuer",
    }
)


@dataclass(frozen=True)
class Right:
    group: str  # "" for the core group
    resource: str  # plural, e.g. deployments
    verbs: tuple[str, ...]
    cluster_scoped: bool

    def names(self) -> list[str]:
        """e.g. ["create deployments.apps", ...], as preflight reports a refusal."""
        suffix = f".{self.group}" if self.group else ""
        return [f"{verb} {self.resource}{suffix}" for verb in self.verbs]


def plural(kind: str) -> str:
    """The resource name of a kind, as Kubernetes' RESTMapper guesses it (Ingress -> ingresses)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"


def manifest_kinds(rendered: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every rendered object, plus where Helm keeps its release records."""
    kinds = {(o.get("apiVersion", ""), o.get("kind", "")) for o in rendered if o and o.get("kind")}
    driver = os.environ.get("HELM_DRIVER", "secret").lower()
    if driver in ("", "secret", "secrets"):
        kinds.add(("v1", "Secret"))
    elif driver in ("configmap", "configmaps"):
        kinds.add(("v1", "ConfigMap"))
    return kinds


def deploy_rights(rendered: list[dict[str, Any]]) -> list[Right]:
    """Every right a deploy of `rendered` needs: the verbs helm uses on each kind, the release's lock, and, since
    Kubernetes lets nobody grant a right they lack, the rights of each ClusterRole the chart makes."""
    wanted: dict[tuple[str, str, bool], set[str]] = {}
    for api_version, kind in manifest_kinds(rendered):
        group = api_version.split("/")[0] if "/" in api_version else ""
        key = (group, plural(kind), kind in CLUSTER_SCOPED)
        wanted.setdefault(key, set()).update((*VERBS, *EXTRA_VERBS.get(kind, ())))
    group, resource, verbs = LOCK_RIGHT
    wanted.setdefault((group, resource, False), set()).update(verbs)
    for role in (o for o in rendered if o and o.get("kind") == "ClusterRole"):
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    wanted.setdefault((group, resource, True), set()).update(rule.get("verbs") or [])
    order = {verb: i for i, verb in enumerate(("get", "list", "watch", "create", "update", "patch", "delete"))}
    return [
        Right(group, resource, tuple(sorted(verbs, key=lambda v: order.get(v, 99))), scoped)
        for (group, resource, scoped), verbs in sorted(wanted.items())
    ]


def lock_right_names() -> list[str]:
    """The lock's rights as preflight names them, e.g. "create leases.coordination.k8s.io"."""
    group, resource, verbs = LOCK_RIGHT
    return Right(group, resource, verbs, False).names()
