"""A simulated EKS cluster's access path: IAM credentials issued in moto, `k8s-aws-v1.` tokens checked by EKS's
token webhook, access entries and access policies, on a real kube-apiserver (tests/sim/controlplane.py)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from tests.sim.controlplane import ControlPlane
from tests.sim.eks_access import USER_FACING_ROLE, AccessEntries
from tests.sim.eks_token_review import EksTokenReviewer
from tests.sim.eks_webhook import EksWebhooks
from tools.cloud.aws import EXEC_API_VERSION

CLUSTER = "cmbsim"  # the simulated cluster's name: tokens must be signed for it (x-k8s-aws-id)


class SimulatedEks:
    __test__ = False

    def __init__(self, kit: Path, moto_url: str) -> None:
        # a short folder: the kit's PKI and unix sockets live under it (at most 64 characters)
        self.home = Path(tempfile.mkdtemp(prefix="cmb-eks-", dir="/tmp"))
        self.reviewer = EksTokenReviewer(CLUSTER, moto_url)
        self.entries = AccessEntries()
        self.hooks = EksWebhooks(self.home / "webhook", self.reviewer, self.entries)
        self.control_plane = ControlPlane(kit, self.home, self.hooks)

    def start(self) -> SimulatedEks:
        self.control_plane.start()
        for policy, role in USER_FACING_ROLE.items():  # the access policies' rules (see eks_access.py)
            self.entries.policy_rules[policy] = self.control_plane.cluster_role(role)["rules"]
        return self

    def stop(self) -> None:
        self.control_plane.stop()
        self.hooks.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def kubeconfig(self, folder: Path, region: str) -> str:
        """A kubeconfig for this cluster whose user is the toolkit's own EKS credential plugin
        (as AwsCloud.cluster_access writes it): each request carries a fresh `k8s-aws-v1.` token."""
        pki = self.home / "pki"
        import base64

        plugin = {
            "apiVersion": EXEC_API_VERSION,
            "command": sys.executable,
            "args": ["-m", "tools.eks_token", "--cluster", CLUSTER, "--region", region],
            "interactiveMode": "Never",
            "provideClusterInfo": False,
        }
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER,
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.control_plane.port}",
                        "certificate-authority-data": base64.b64encode((pki / "ca.crt").read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "deploy", "user": {"exec": plugin}}],
            "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": "deploy"}}],
            "current-context": CLUSTER,
        }
        path = folder / "eks-kubeconfig"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return str(path)
