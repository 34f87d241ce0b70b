"""EKS's webhooks for a Kubernetes API server: TokenReview (authentication) and SubjectAccessReview (access policies).

Served by tests/sim/webhook_server.py, as EKS's control plane calls its own
(https://kubernetes.io/docs/reference/access-authn-authz/webhook/,
https://kubernetes.io/docs/reference/access-authn-authz/authentication/#webhook-token-authentication).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.sim.eks_access import AccessEntries
from tests.sim.eks_token_review import Caller, EksTokenReviewer, TokenRejected
from tests.sim.webhook_server import WebhookServer


class EksWebhooks(WebhookServer):
    """The authenticator and the authorizer of one simulated EKS cluster, served over TLS."""

    def __init__(self, folder: Path, reviewer: EksTokenReviewer, entries: AccessEntries) -> None:
        self.reviewer, self.entries = reviewer, entries
        super().__init__(folder)

    # -- the reviews ------------------------------------------------------------------------
    def authenticate(self, review: dict[str, Any]) -> dict[str, Any]:
        token = (review.get("spec") or {}).get("token", "")
        try:
            caller = self.reviewer.review(token)
        except TokenRejected as exc:
            self.log.append(f"token rejected: {exc}")
            return {"authenticated": False, "error": str(exc)}
        entry = self.entries.entries.get(caller.principal_arn)
        if entry is None:  # access-entries.html: a principal with no access entry has no access to the cluster
            self.log.append(f"no access entry for {caller.principal_arn}")
            return {"authenticated": False, "error": f"no access entry for {caller.principal_arn}"}
        user = {
            "username": entry.kubernetes_user(caller.arn, caller.session_name),
            "uid": f"aws-iam-authenticator:{caller.access_key}",
            "groups": list(entry.groups),
            # aws-iam-authenticator's extra attributes (pkg/server/server.go): the session ARN and its key
            "extra": {"arn": [caller.arn], "accessKeyId": [caller.access_key], "sessionName": [caller.session_name]},
        }
        self.log.append(f"authenticated {caller.arn} as {user['username']} {user['groups']}")
        return {"authenticated": True, "user": user}

    def authorize(self, review: dict[str, Any]) -> dict[str, Any]:
        spec = review.get("spec") or {}
        arns = (spec.get("extra") or {}).get("arn") or []
        if not arns:  # not an IAM principal (a certificate, a service account): no opinion
            return {"allowed": False}
        principal = Caller(arns[0], "").principal_arn
        attributes = spec.get("resourceAttributes") or {}
        allowed = self.entries.allows(principal, attributes, spec.get("nonResourceAttributes"))
        self.log.append(f"{'allowed' if allowed else 'no opinion'}: {spec.get('user')} {attributes}")
        # no opinion rather than a denial: the chain ends here and denies (as EKS's authorizer answers)
        return {"allowed": allowed} if allowed else {"allowed": False, "reason": "no access policy allows it"}
