"""A simulated GKE cluster's access path: Google access tokens from the test bed's token server, GKE's
cluster API, GKE's authenticator and IAM authorizer beside RBAC, on a real kube-apiserver
(tests/sim/controlplane.py, a second instance: the EKS one's webhooks answer EKS's tokens only).

GKE's authorizer chain, as tests/sim/controlplane.py builds it: Node, RBAC, then the IAM webhook ("GKE first
checks for an RBAC policy. If there isn't an RBAC policy, GKE checks for IAM permissions",
https://cloud.google.com/kubernetes-engine/docs/how-to/role-based-access-control, "Interaction with IAM"). RBAC
or IAM grants (https://cloud.google.com/kubernetes-engine/docs/concepts/access-control), and the IAM
authorizer never denies outright, so the order decides nothing but where a refusal's reason comes from;
RBAC's escalation check for a Role or RoleBinding asks the whole chain for `escalate`/`bind`, which IAM
grants as container.roles.escalate / container.roles.bind (Kubernetes' rule:
https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping;
the IAM permissions, in roles/container.admin: https://cloud.google.com/kubernetes-engine/docs/how-to/iam#predefined).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.sim.controlplane import ControlPlane
from tests.sim.gke_api import GkeClusterApi
from tests.sim.gke_iam import ProjectIam
from tests.sim.gke_tokens import GoogleTokenServer
from tests.sim.gke_webhook import GkeWebhooks

CLUSTER, PROJECT, LOCATION = "cmbsim", "cmb-project", "us-central1"  # tests/envfiles.py good_env's project
CLUSTER_NAME = f"projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}"


class SimulatedGke:
    __test__ = False

    def __init__(self, kit: Path, storage: Path | None = None, tokens: GoogleTokenServer | None = None) -> None:
        # a short folder: the kit's PKI and unix sockets live under it (at most 64 characters)
        self.home = Path(tempfile.mkdtemp(prefix="cmb-gke-", dir="/tmp"))
        # `tokens`: the one issuer of the test bed's network edge (tests/sim/edge.py), when the tools reach
        # Google through it; otherwise a token server of its own, stopped with it
        self.owns_tokens = tokens is None
        self.tokens = tokens or GoogleTokenServer()
        self.iam = ProjectIam(PROJECT)
        self.hooks = GkeWebhooks(self.home / "webhook", self.tokens, self.iam, CLUSTER_NAME)
        self.control_plane = ControlPlane(kit, self.home, self.hooks, authorizer="gke-iam", storage=storage)
        self.api = GkeClusterApi(self.tokens, self.iam, CLUSTER_NAME)

    def start(self) -> SimulatedGke:
        self.control_plane.start()
        self.api.serve(self.control_plane.port, self.home / "pki" / "ca.crt")
        return self

    def stop(self) -> None:
        self.control_plane.stop()
        self.hooks.stop()
        self.api.stop()
        if self.owns_tokens:
            self.tokens.stop()
        shutil.rmtree(self.home, ignore_errors=True)
