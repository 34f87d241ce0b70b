"""A simulated EKS cluster's access path: IAM credentials issued in moto, `k8s-aws-v1.` tokens checked by EKS's
token webhook, access entries and access policies, on a real kube-apiserver (tests/sim/controlplane.py).

The cluster exists in moto (through the API in front of it, tests/sim/eks_api.py), whose DescribeCluster
then names the simulated apiserver's endpoint and CA: `AwsCloud.cluster_access` writes its kubeconfig
unmodified, with the toolkit's own credential plugin."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import boto3

from tests.sim.controlplane import ControlPlane
from tests.sim.eks_access import USER_FACING_ROLE, AccessEntries
from tests.sim.eks_api import EksApi
from tests.sim.eks_token_review import EksTokenReviewer
from tests.sim.eks_webhook import EksWebhooks

CLUSTER = "cmbsim"  # the simulated cluster's name: tokens must be signed for it (x-k8s-aws-id)
ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
MOTO_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class SimulatedEks:
    __test__ = False

    def __init__(self, kit: Path, moto_url: str, storage: Path | None = None) -> None:
        self.moto_url = moto_url
        # a short folder: the kit's PKI and unix sockets live under it (at most 64 characters)
        self.home = Path(tempfile.mkdtemp(prefix="cmb-eks-", dir="/tmp"))
        self.reviewer = EksTokenReviewer(CLUSTER, moto_url)
        self.entries = AccessEntries()
        self.hooks = EksWebhooks(self.home / "webhook", self.reviewer, self.entries)
        self.control_plane = ControlPlane(kit, self.home, self.hooks, storage=storage)
        self.api = EksApi(moto_url, CLUSTER, self.entries)  # AWS_ENDPOINT_URL_EKS for the tools and the test

    def start(self) -> SimulatedEks:
        self.control_plane.start()
        eks = boto3.client("eks", endpoint_url=self.api.url, region_name=REGION, **MOTO_KEYS)
        with contextlib.suppress(eks.exceptions.ResourceInUseException):
            eks.create_cluster(name=CLUSTER, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={})
        self.api.serve_cluster(f"https://127.0.0.1:{self.control_plane.port}", self.home / "pki" / "ca.crt")
        for policy, role in USER_FACING_ROLE.items():  # the access policies' rules (see eks_access.py)
            self.entries.policy_rules[policy] = self.control_plane.cluster_role(role)["rules"]
        return self

    def stop(self) -> None:
        self.control_plane.stop()
        self.hooks.stop()
        self.api.stop()
        shutil.rmtree(self.home, ignore_errors=True)
