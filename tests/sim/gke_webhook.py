"""GKE's webhooks for a Kubernetes API server: Google access tokens to accounts, IAM beside RBAC.

Authentication: a Google service account's access token authenticates as the account's email, in
`system:authenticated` (https://cloud.google.com/kubernetes-engine/docs/how-to/iam#interaction_with_rbac:
"RBAC ... Google Cloud service accounts ... identified by their email"), if the account holds
`container.clusters.get` on the cluster (https://cloud.google.com/kubernetes-engine/docs/how-to/role-based-access-control,
"Interaction with IAM": users "must have the container.clusters.get permission to authenticate to clusters in
the project, but are not authorized to perform any actions inside those clusters"). Authorization: the project's IAM
policy (tests/sim/gke_iam.py) allows what it grants and has no opinion otherwise, so RBAC or IAM grants
(https://cloud.google.com/kubernetes-engine/docs/concepts/access-control); a refusal says the permission,
as GKE's does: `requires one of ["container.pods.list"] permission(s).`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.sim.gke_iam import ProjectIam, permission
from tests.sim.gke_tokens import GoogleTokenServer, TokenRefused
from tests.sim.webhook_server import WebhookServer


class GkeWebhooks(WebhookServer):
    """The authenticator and the IAM authorizer of one simulated GKE cluster."""

    def __init__(self, folder: Path, tokens: GoogleTokenServer, iam: ProjectIam, cluster: str) -> None:
        self.tokens, self.iam, self.cluster = tokens, iam, cluster  # cluster: its full resource name
        super().__init__(folder)

    def authenticate(self, review: dict[str, Any]) -> dict[str, Any]:
        token = (review.get("spec") or {}).get("token", "")
        try:
            issued = self.tokens.lookup(token)
        except TokenRefused as exc:
            self.log.append(f"token refused: {exc}")
            return {"authenticated": False, "error": str(exc)}
        if not self.iam.allows(issued.email, "container.clusters.get", self.cluster):
            self.log.append(f"no container.clusters.get: {issued.email}")
            return {"authenticated": False, "error": f"{issued.email} lacks container.clusters.get on {self.cluster}"}
        self.log.append(f"authenticated {issued.email}")
        # the apiserver adds system:authenticated itself
        return {"authenticated": True, "user": {"username": issued.email, "groups": []}}

    def authorize(self, review: dict[str, Any]) -> dict[str, Any]:
        spec = review.get("spec") or {}
        user = spec.get("user", "")
        attributes = spec.get("resourceAttributes")
        wanted = permission(attributes) if attributes else None
        if not user.endswith(".gserviceaccount.com") or wanted is None:
            return {"allowed": False}  # a certificate, a Kubernetes service account, a URL: no opinion
        if self.iam.allows(user, wanted, self.cluster):
            self.log.append(f"allowed by IAM: {user} {wanted}")
            return {"allowed": True}
        self.log.append(f"no opinion: {user} {wanted}")
        return {"allowed": False, "reason": f'requires one of ["{wanted}"] permission(s).'}
