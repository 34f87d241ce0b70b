"""EKS access entries and access policies: who an IAM principal is in Kubernetes, and what EKS's authorizer lets it do.

Configured through the EKS API (tests/sim/eks_api.py) by the `aws eks` commands of the set-up script
`make cloud-setup CLOUD=aws` prints, run by the AWS CLI itself (tests/sim/aws_cli.py), so a test configures
the identity exactly as the printed set-up says
(https://docs.aws.amazon.com/cli/latest/reference/eks/create-access-entry.html,
https://docs.aws.amazon.com/cli/latest/reference/eks/associate-access-policy.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POLICY_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"
# https://docs.aws.amazon.com/eks/latest/userguide/access-policy-permissions.html: "The permissions contained in
# access policies are similar to the permissions in the Kubernetes user-facing cluster roles". The simulation
# uses the rules of `admin`, `edit` and `view`, read from the simulated apiserver's own aggregated roles, not
# the page's tables row by row (README, "Not verifiable offline"); like `admin`, AmazonEKSAdminPolicy grants
# neither `escalate` nor `bind` (aws/containers-roadmap#2682).
USER_FACING_ROLE = {"AmazonEKSAdminPolicy": "admin", "AmazonEKSEditPolicy": "edit", "AmazonEKSViewPolicy": "view"}
# Same page, AmazonEKSClusterAdminPolicy: apiGroups *, resources *, verbs *; nonResourceURLs *, verbs * (cluster-admin).
CLUSTER_ADMIN_RULES = [
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
]


@dataclass
class Association:
    policy: str  # e.g. AmazonEKSAdminPolicy
    namespaces: list[str] | None  # None: cluster scope


@dataclass
class AccessEntry:
    principal_arn: str
    username: str = ""
    groups: list[str] = field(default_factory=list)
    policies: list[Association] = field(default_factory=list)

    def kubernetes_user(self, session_arn: str, session_name: str) -> str:
        """The username EKS gives the caller.

        https://docs.aws.amazon.com/eks/latest/userguide/access-entries.html ("Create access entries":
        without a username, an IAM role's is `arn:aws:sts::ACCOUNT:assumed-role/ROLE/{{SessionName}}`;
        a given username may use `{{SessionName}}`).
        """
        if not self.username:
            return session_arn
        return self.username.replace("{{SessionName}}", session_name)


class AccessEntries:
    """The cluster's access entries, keyed by principal ARN."""

    def __init__(self) -> None:
        self.entries: dict[str, AccessEntry] = {}
        self.policy_rules: dict[str, list[dict[str, Any]]] = {"AmazonEKSClusterAdminPolicy": CLUSTER_ADMIN_RULES}

    def create(self, principal_arn: str, username: str, groups: list[str]) -> None:
        if principal_arn in self.entries:  # API_CreateAccessEntry.html
            raise KeyError(f"ResourceInUseException: an access entry for {principal_arn} exists")
        _check_names(username, groups)
        self.entries[principal_arn] = AccessEntry(principal_arn, username, groups)

    def update(self, principal_arn: str, username: str | None, groups: list[str] | None) -> None:
        """API_UpdateAccessEntry.html: the groups and the username given replace the entry's."""
        _check_names(username or "", groups or [])
        entry = self.entries[principal_arn]
        if groups is not None:
            entry.groups = groups
        if username is not None:
            entry.username = username

    def associate(self, principal_arn: str, policy_arn: str, scope: dict[str, Any]) -> None:
        """API_AssociateAccessPolicy.html: associating a policy again replaces its scope."""
        kind, namespaces = scope.get("type"), list(scope.get("namespaces") or [])
        if kind not in ("namespace", "cluster"):
            raise ValueError(f"InvalidParameterException: access scope type {kind!r}")
        policy = policy_arn.removeprefix(POLICY_PREFIX)
        entry = self.entries[principal_arn]
        entry.policies = [a for a in entry.policies if a.policy != policy]
        entry.policies.append(Association(policy, namespaces if kind == "namespace" else None))

    def allows(self, principal_arn: str, attributes: dict[str, Any], non_resource: dict[str, Any] | None) -> bool:
        """EKS's authorizer: whether an associated access policy, in its scope, has a rule for the request."""
        entry = self.entries.get(principal_arn)
        for association in entry.policies if entry else []:
            # access-entries.html, "access scope": a namespace scope applies to those namespaces only
            outside = non_resource is not None or attributes.get("namespace") not in (association.namespaces or [])
            if association.namespaces is not None and outside:
                continue
            rules = self.policy_rules.get(association.policy, [])
            if any(_matches(rule, attributes, non_resource) for rule in rules):
                return True
        return False


def _check_names(username: str, groups: list[str]) -> None:
    # access-entries.html: usernames and groups may not start with system:, eks:, aws:, amazon: or iam:
    for name in [username, *groups]:
        if name.startswith(("system:", "eks:", "aws:", "amazon:", "iam:")):
            raise ValueError(f"InvalidParameterException: {name!r} uses a reserved prefix")


def _matches(rule: dict[str, Any], attributes: dict[str, Any], non_resource: dict[str, Any] | None) -> bool:
    """A Kubernetes PolicyRule against a request (https://kubernetes.io/docs/reference/access-authn-authz/rbac/)."""
    verbs = rule.get("verbs") or []
    if non_resource is not None:
        urls = rule.get("nonResourceURLs") or []
        path = non_resource.get("path", "")
        return (non_resource.get("verb") in verbs or "*" in verbs) and any(
            u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1])) for u in urls
        )
    resource = attributes.get("resource", "")
    if attributes.get("subresource"):
        resource += "/" + attributes["subresource"]
    groups, resources, names = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("resourceNames")
    return (
        (attributes.get("verb") in verbs or "*" in verbs)
        and (attributes.get("group", "") in groups or "*" in groups)
        and (resource in resources or "*" in resources)
        and (not names or attributes.get("name") in names)
    )
