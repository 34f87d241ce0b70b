"""The Kubernetes rights a deploy needs, derived from the rendered chart: one place for what
preflight checks (SelfSubjectAccessReview) and what `make rbac` prints for a cluster admin.

Cluster-scoped objects are the chart's own by name: get, patch and delete carry RBAC
`resourceNames`, so the deploy identity cannot strip or delete any other ClusterRole, binding or
policy. `create` cannot be narrowed by name (the name is not known when it is authorized:
https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources);
`CREATE_BOUNDS` says what bounds it instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

VERBS = ("get", "create", "patch", "delete")  # what helm does to each kind a release manages
NAMED_VERBS = ("get", "patch", "delete")  # the verbs RBAC can limit to an object's name
# Helm 4's --wait (install, upgrade, uninstall) lists and watches every kind the release holds,
# without a name: on a cluster-scoped kind, that is every object of the kind (read only).
WATCH_VERBS = ("list", "watch")
# Helm's release records (Secrets in the namespace) are also listed and updated.
EXTRA_VERBS = {"Secret": ("list", "update")}
# The release's lock (tools/lease.py): a coordination.k8s.io Lease in the namespace, read, made and renewed.
LOCK_RIGHT = ("coordination.k8s.io", "leases", ("get", "create", "patch"))
# The group EKS's access entry gives an environment's deploy role (tools/cloud_setup.py): one per namespace, so
# that where staging and production share a cluster, the binding of one namespace reaches no other's role
DEPLOY_GROUP = "cmbcluster-deployers-{namespace}"
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
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterIssuer",
    }
)


# What bounds `create` on each cluster-scoped resource where RBAC cannot (printed by `make rbac`);
# list and watch there only read.
CREATE_BOUNDS = {
    # https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping
    "clusterroles": "Kubernetes' escalation check: only a role granting rights the identity already holds "
    "(`escalate` limited by name does not apply to create: the name is not part of the request)",
    "clusterrolebindings": "Kubernetes' bind check: only a binding to a role whose rights the identity holds "
    "(never admin or cluster-admin)",
    # https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/
    "validatingadmissionpolicies": "a policy only refuses requests (at worst, other writes cluster-wide), "
    "never grants a right; only the chart's may be changed or deleted",
    "validatingadmissionpolicybindings": "a binding only makes a policy refuse requests, never grants a right; "
    "only the chart's may be changed or deleted",
    "persistentvolumes": "not bounded by RBAC: held because the chart's ClusterRole grants it to the backend "
    "(whose volumes the chart's ValidatingAdmissionPolicy holds to user buckets) and the smoke test makes "
    "one; keep the deploy identity's credentials where only the deploy runs",
}


def deploy_group(namespace: str) -> str:
    return DEPLOY_GROUP.format(namespace=namespace)


@dataclass(frozen=True)
class Right:
    group: str  # "" for the core group
    resource: str  # plural, e.g. deployments
    verbs: tuple[str, ...]
    cluster_scoped: bool
    resource_names: tuple[str, ...] = ()  # RBAC resourceNames: only these objects; () is every object

    def checks(self) -> list[tuple[str, str, str]]:
        """(verb, object name or "", label) per access review; labels as preflight reports a refusal,
        e.g. "create deployments.apps", "delete clusterroles.rbac.authorization.k8s.io NAME"."""
        suffix = f".{self.group}" if self.group else ""
        return [
            (verb, name, f"{verb} {self.resource}{suffix}" + (f" {name}" if name else ""))
            for verb in self.verbs
            for name in self.resource_names or ("",)
        ]

    def names(self) -> list[str]:
        return [label for _, _, label in self.checks()]


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
    """Every right a deploy of `rendered` needs: the verbs helm uses on each kind (on a cluster-scoped
    kind, get, patch and delete only on the chart's objects of it), the release's lock, and, since
    Kubernetes lets nobody create a role granting a right they lack, the rights of each ClusterRole the
    chart makes."""
    wanted: dict[tuple[str, str, bool, tuple[str, ...]], set[str]] = {}
    for api_version, kind in manifest_kinds(rendered):
        group = api_version.split("/")[0] if "/" in api_version else ""
        verbs = {*VERBS, *EXTRA_VERBS.get(kind, ())}
        if kind in CLUSTER_SCOPED:
            names = tuple(sorted({o["metadata"]["name"] for o in rendered if o and o.get("kind") == kind}))
            wanted.setdefault((group, plural(kind), True, names), set()).update(NAMED_VERBS)
            verbs = (verbs - set(NAMED_VERBS)) | set(WATCH_VERBS)
        wanted.setdefault((group, plural(kind), kind in CLUSTER_SCOPED, ()), set()).update(verbs)
    group, resource, lock_verbs = LOCK_RIGHT
    wanted.setdefault((group, resource, False, ()), set()).update(lock_verbs)
    for role in (o for o in rendered if o and o.get("kind") == "ClusterRole"):
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    wanted.setdefault((group, resource, True, ()), set()).update(rule.get("verbs") or [])
    order = {verb: i for i, verb in enumerate(("get", "list", "watch", "create", "update", "patch", "delete"))}
    return [
        Right(group, resource, tuple(sorted(verbs, key=lambda v: order.get(v, 99))), scoped, names)
        for (group, resource, scoped, names), verbs in sorted(wanted.items())
    ]


def lock_right_names() -> list[str]:
    """The lock's rights as preflight names them, e.g. "create leases.coordination.k8s.io"."""
    group, resource, verbs = LOCK_RIGHT
    return Right(group, resource, verbs, False).names()
