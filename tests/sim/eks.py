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
from typing import Any

import boto3

from tests.sim.controlplane import ControlPlane
from tests.sim.eks_access import USER_FACING_ROLE, AccessEntries
from tests.sim.eks_api import EksApi
from tests.sim.eks_token_review import EksTokenReviewer
from tests.sim.eks_webhook import EksWebhooks

CLUSTER = "cmbsim"  # the simulated cluster's name: tokens must be signed for it (x-k8s-aws-id)
ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
MOTO_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# The subnets the AWS Load Balancer Controller puts internet-facing ALBs in (tools/cloud/aws.py reads the same tag)
ALB_SUBNET_TAG = "kubernetes.io/role/elb"


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
        self.vpc_id = ""  # the cluster's VPC in moto

    def start(self) -> SimulatedEks:
        self.control_plane.start()
        eks = boto3.client("eks", endpoint_url=self.api.url, region_name=REGION, **MOTO_KEYS)
        with contextlib.suppress(eks.exceptions.ResourceNotFoundException):
            eks.describe_cluster(name=CLUSTER)
            return self._serve(eks)  # made by an earlier start in this moto (the simulated EKS on the kit's cluster)
        config = {"subnetIds": self._vpc_subnets()}
        eks.create_cluster(name=CLUSTER, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig=config)
        return self._serve(eks)

    def _vpc_subnets(self) -> list[str]:
        """The cluster's VPC in moto, as EKS requires one: two subnets tagged for internet-facing ALBs (two zones,
        as ELBv2 requires) and one for the nodes (https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html)."""
        ec2 = boto3.client("ec2", endpoint_url=self.moto_url, region_name=REGION, **MOTO_KEYS)
        vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
        subnets = []
        for block, zone, tags in (
            ("10.80.1.0/24", "a", True),
            ("10.80.2.0/24", "b", True),
            ("10.80.8.0/22", "a", False),
        ):
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=block, AvailabilityZone=f"{REGION}{zone}")["Subnet"]
            if tags:
                ec2.create_tags(Resources=[subnet["SubnetId"]], Tags=[{"Key": ALB_SUBNET_TAG, "Value": "1"}])
            subnets.append(subnet["SubnetId"])
        return subnets

    def _serve(self, eks: Any) -> SimulatedEks:
        config = eks.describe_cluster(name=CLUSTER)["cluster"].get("resourcesVpcConfig") or {}
        ec2 = boto3.client("ec2", endpoint_url=self.moto_url, region_name=REGION, **MOTO_KEYS)
        subnets = ec2.describe_subnets(SubnetIds=config["subnetIds"])["Subnets"] if config.get("subnetIds") else []
        self.vpc_id = subnets[0]["VpcId"] if subnets else ""
        self.api.serve_cluster(f"https://127.0.0.1:{self.control_plane.port}", self.home / "pki" / "ca.crt")
        for policy, role in USER_FACING_ROLE.items():  # the access policies' rules (see eks_access.py)
            self.entries.policy_rules[policy] = self.control_plane.cluster_role(role)["rules"]
        return self

    def stop(self) -> None:
        self.control_plane.stop()
        self.hooks.stop()
        self.api.stop()
        shutil.rmtree(self.home, ignore_errors=True)
