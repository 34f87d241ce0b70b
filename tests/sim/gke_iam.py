"""A project's IAM policy as GKE's authorizer reads it: which `container.*` permissions a member holds.

GKE authorizes each Kubernetes API request with IAM beside RBAC: either grants it
(https://cloud.google.com/kubernetes-engine/docs/concepts/access-control, "IAM and Kubernetes RBAC are
integrated ... sufficient permissions according to either tool"). A request maps to one permission,
`container.RESOURCE.VERB` with the resource in camelCase; a custom resource's objects map to
`container.thirdPartyObjects.VERB` (https://cloud.google.com/kubernetes-engine/docs/reference/api-permissions).
The predefined roles are held to what their documented descriptions say
(https://cloud.google.com/kubernetes-engine/docs/how-to/iam#predefined), not to their permission lists
row by row (README, "What the simulated GKE does not imitate").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Kubernetes' built-in API groups: anything else is a custom resource (container.thirdPartyObjects.*)
BUILT_IN_GROUPS = {
    "", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "node.k8s.io",
    "scheduling.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io", "authentication.k8s.io",
    "authorization.k8s.io", "certificates.k8s.io", "flowcontrol.apiserver.k8s.io", "apiregistration.k8s.io",
}  # fmt: skip
# the permission names' camelCase where the plural resource has several words (api-permissions page)
CAMEL = {
    "configmaps": "configMaps", "persistentvolumeclaims": "persistentVolumeClaims",
    "persistentvolumes": "persistentVolumes", "rolebindings": "roleBindings", "clusterroles": "clusterRoles",
    "clusterrolebindings": "clusterRoleBindings", "networkpolicies": "networkPolicies",
    "serviceaccounts": "serviceAccounts", "replicasets": "replicaSets", "statefulsets": "statefulSets",
    "daemonsets": "daemonSets", "cronjobs": "cronJobs", "horizontalpodautoscalers": "horizontalPodAutoscalers",
    "poddisruptionbudgets": "podDisruptionBudgets", "resourcequotas": "resourceQuotas", "limitranges": "limitRanges",
    "storageclasses": "storageClasses", "customresourcedefinitions": "customResourceDefinitions",
    "validatingadmissionpolicies": "validatingAdmissionPolicies", "ingressclasses": "ingressClasses",
    "validatingadmissionpolicybindings": "validatingAdmissionPolicyBindings", "endpointslices": "endpointSlices",
    "replicationcontrollers": "replicationControllers", "podtemplates": "podTemplates",
    "csidrivers": "csiDrivers", "csinodes": "csiNodes", "volumeattachments": "volumeAttachments",
}  # fmt: skip
# verbs with no permission of their own (api-permissions page: PATCH needs `update`, DELETE of a collection `delete`)
VERB = {"patch": "update", "deletecollection": "delete"}
# subresources with a permission of their own (api-permissions page)
SUBRESOURCE = {
    ("pods", "exec"): "exec", ("pods", "attach"): "attach", ("pods", "portforward"): "portForward",
    ("pods", "log"): "getLogs", ("pods", "proxy"): "proxy", ("services", "proxy"): "proxy",
}  # fmt: skip
READ = ("get", "list", "watch")
# what only roles/container.admin holds among the Kubernetes permissions: RBAC's escalation bypasses and
# impersonation, Kubernetes' escalate/bind/impersonate verbs as IAM permissions (container.roles.escalate,
# container.roles.bind, ...: the admin role's "full management", held to the developer's "access to ... objects"
# without them; https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping)
ADMIN_ONLY = ("escalate", "bind", "impersonate")
CLUSTER_MANAGEMENT = ("clusters", "operations", "nodePools")


def _kubernetes(permission: str) -> bool:
    return permission.startswith("container.") and permission.split(".")[1] not in CLUSTER_MANAGEMENT


def _read_cluster(permission: str) -> bool:
    return permission in ("container.clusters.get", "container.clusters.list")


# https://cloud.google.com/kubernetes-engine/docs/how-to/iam#predefined: admin "full management of clusters
# and their Kubernetes API objects"; clusterAdmin "management of clusters" (no objects inside); developer
# "access to Kubernetes API objects inside clusters"; viewer "read-only access to ... Kubernetes API objects"
# (not Secrets); clusterViewer: get and list clusters.
PREDEFINED: dict[str, Callable[[str], bool]] = {
    "roles/container.admin": lambda p: p.startswith("container."),
    "roles/container.clusterAdmin": lambda p: p.startswith("container.") and not _kubernetes(p),
    "roles/container.developer": lambda p: (
        _read_cluster(p)
        or p == "container.clusters.getCredentials"
        or (_kubernetes(p) and p.rsplit(".", 1)[1] not in ADMIN_ONLY)
    ),
    "roles/container.viewer": lambda p: (
        _read_cluster(p) or (_kubernetes(p) and p.rsplit(".", 1)[1] in READ and not p.startswith("container.secrets."))
    ),
    "roles/container.clusterViewer": _read_cluster,
    # Cloud DNS's admin role, "read-write access to all Cloud DNS resources" (cert-manager's, the README's
    # prerequisite with DNS_ZONE): https://cloud.google.com/dns/docs/access-control#roles
    "roles/dns.admin": lambda p: p.startswith("dns."),
}


def permission(attributes: dict[str, Any]) -> str | None:
    """The IAM permission GKE checks for a SubjectAccessReview's resource attributes (None: no mapping)."""
    resource, sub, verb = attributes.get("resource", ""), attributes.get("subresource", ""), attributes.get("verb", "")
    if attributes.get("group", "") not in BUILT_IN_GROUPS:
        return f"container.thirdPartyObjects.{VERB.get(verb, verb)}"
    name = CAMEL.get(resource, resource)
    if sub == "status":  # e.g. container.apiServices.getStatus / updateStatus
        return f"container.{name}.{'getStatus' if verb in READ else 'updateStatus'}"
    if sub:
        special = SUBRESOURCE.get((resource, sub))
        return f"container.{name}.{special}" if special else None
    return f"container.{name}.{VERB.get(verb, verb)}"


@dataclass
class Binding:
    member: str  # serviceAccount:EMAIL
    role: str  # roles/container.developer or projects/P/roles/ID
    condition: str = ""  # a CEL expression on resource.name ("" for none)


class ProjectIam:
    """The project's custom roles and its IAM policy's bindings."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.custom_roles: dict[str, tuple[str, ...]] = {}
        self.bindings: list[Binding] = []

    def create_role(self, role_id: str, permissions: tuple[str, ...]) -> None:
        """`gcloud iam roles create` (or `update`, which replaces the permissions)."""
        self.custom_roles[f"projects/{self.project}/roles/{role_id}"] = tuple(permissions)

    def bind(self, member: str, role: str, condition: str = "") -> None:
        """`gcloud projects add-iam-policy-binding`: adding a binding that exists changes nothing."""
        if Binding(member, role, condition) not in self.bindings:
            self.bindings.append(Binding(member, role, condition))

    def allows(self, email: str, wanted: str, resource: str) -> bool:
        """Whether a binding of `serviceAccount:EMAIL` grants `wanted` on `resource` (a full resource name)."""
        for binding in self.bindings:
            if binding.member != f"serviceAccount:{email}" or not _condition_holds(binding.condition, resource):
                continue
            granted = PREDEFINED.get(binding.role)
            if granted is not None and granted(wanted):
                return True
            if wanted in self.custom_roles.get(binding.role, ()):
                return True
        return False


_NAME_TEST = re.compile(r"resource\.name == '([^']*)'|resource\.name\.startsWith\('([^']*)'\)")


def _condition_holds(condition: str, resource: str) -> bool:
    """The conditions the printed set-up writes (tools/cloud_permissions.py gcs_names_condition: `||` of
    resource.name equality and prefix tests); anything else is not understood and does not hold."""
    if not condition:
        return True
    terms = [t.strip() for t in condition.split("||")]
    if not all(_NAME_TEST.fullmatch(t) for t in terms):
        return False
    for term in terms:
        equal, prefix = _NAME_TEST.fullmatch(term).groups()  # type: ignore[union-attr]
        if (equal is not None and resource == equal) or (prefix is not None and resource.startswith(prefix)):
            return True
    return False
