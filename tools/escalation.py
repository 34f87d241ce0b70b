"""Whether Kubernetes' RBAC escalation rule lets these credentials create the chart's Roles and ClusterRoles.

Kubernetes lets an identity create a Role only with rules it already holds through RBAC, or with the
`escalate` verb on roles (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping).
Rights granted by another authorizer do not count: an EKS access policy (AmazonEKSAdminPolicy) makes a
SelfSubjectAccessReview say "allowed" while Helm's Role is refused with "attempting to grant RBAC
permissions not currently held" (aws/containers-roadmap#2682); so does a GKE IAM role without
container.roles.escalate (roles/container.developer). A SelfSubjectRulesReview lists what
RBAC grants (other authorizers add nothing to it), so the difference is visible before the deploy.
"""

from __future__ import annotations

from typing import Any

from tools import kube_ops
from tools.kube_client import KubeApi, path
from tools.kube_rights import Right

ROLE_KINDS = {"Role": "roles", "ClusterRole": "clusterroles"}


def escalation_problems(api: KubeApi, namespace: str, rendered: list[dict[str, Any]], hint: str) -> list[str]:
    """One line per chart Role or ClusterRole these credentials could not create; [] when the server
    gives no RBAC rules to compare (an API server without SelfSubjectRulesReview)."""
    roles = [o for o in rendered if o.get("kind") in ROLE_KINDS and o.get("rules")]
    if not roles:
        return []
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    answer = kube_ops.call(
        api,
        lambda: api.create(path("selfsubjectrulesreviews"), review),
        "reading the RBAC rules of these credentials (SelfSubjectRulesReview)",
    )
    held = ((answer or {}).get("status") or {}).get("resourceRules") if isinstance(answer, dict) else None
    if not isinstance(held, list):
        return []
    problems = []
    for role in roles:
        kind, name = role["kind"], role.get("metadata", {}).get("name", "")
        missing = [rule for rule in role["rules"] if not covered(rule, held)]
        escalate = Right("rbac.authorization.k8s.io", ROLE_KINDS[kind], ("escalate",), kind == "ClusterRole")
        if missing and kube_ops.denied(api, namespace, [escalate]):
            problems.append(
                f"the chart's {kind} {name} grants rights these credentials do not hold through RBAC (they come from "
                "another authorizer, e.g. an EKS access policy or a GKE IAM role): Kubernetes will refuse it with "
                '"attempting to grant '
                f'RBAC permissions not currently held"; bind the identity with `make rbac`{hint}'
            )
    return problems


def covered(rule: dict[str, Any], held: list[dict[str, Any]]) -> bool:
    """Whether every group/resource/verb of `rule` is in some held rule (`*` matches all, as RBAC reads it)."""
    names = rule.get("resourceNames") or []
    return all(
        any(
            _has(h.get("apiGroups"), group)
            and _has(h.get("resources"), resource)
            and _has(h.get("verbs"), verb)
            and (not h.get("resourceNames") or (names and set(names) <= set(h["resourceNames"])))
            for h in held
        )
        for group in rule.get("apiGroups") or [""]
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    )


def _has(values: list[str] | None, value: str) -> bool:
    return values is not None and bool(values) and ("*" in values or value in values)
