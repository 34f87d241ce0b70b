"""The cluster VPC's address ranges the NetworkPolicies admit the AWS load balancer from."""

from __future__ import annotations

from typing import Any

from tools.cloud.awscall import aws_call
from tools.cloud_permissions import everywhere, need
from tools.errors import ToolError
from tools.report import REPORTER

ALB_SUBNET_TAG = "kubernetes.io/role/elb"  # subnets for internet-facing load balancers

need("aws", ("ec2:DescribeSubnets", "ec2:DescribeVpcs"), everywhere,
     "the CIDR blocks the NetworkPolicy admits the load balancer from (EC2 Describe* is on * only)",
     ("DescribeSubnets", "DescribeVpcs"))  # fmt: skip


def load_balancer_cidrs(ec2: Any, cluster: dict[str, Any]) -> list[str]:
    """Where the ALB (target type ip) reaches pods from: the CIDR blocks of the cluster VPC's
    subnets tagged for internet-facing load balancers (`kubernetes.io/role/elb`, the tag the
    AWS Load Balancer Controller picks its subnets by). Pods of the VPC CNI take addresses of
    the node subnets, so with the ALB in subnets of its own the policies admit the ALB and no
    pod; with no tagged subnet they fall back to the whole VPC, with a warning.

    Read at deploy time (describe_cluster -> VPC -> describe_subnets / describe_vpcs).
    """
    config = cluster.get("resourcesVpcConfig") or {}
    vpc_id = config.get("vpcId")
    if not vpc_id and config.get("subnetIds"):
        subnets = aws_call(
            lambda: ec2.describe_subnets(SubnetIds=config["subnetIds"])["Subnets"], "EC2 describe_subnets"
        )
        vpc_id = subnets[0]["VpcId"] if subnets else ""
    if not vpc_id:
        raise ToolError(f"EKS cluster {cluster['name']} names no VPC: check the cluster in the console")
    tagged = aws_call(
        lambda: ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "tag-key", "Values": [ALB_SUBNET_TAG]}]
        )["Subnets"],
        "EC2 describe_subnets",
    )
    if tagged:
        return sorted({subnet["CidrBlock"] for subnet in tagged})
    REPORTER.warning(
        f"no subnet of {vpc_id} is tagged {ALB_SUBNET_TAG}: the NetworkPolicies admit the load balancer from "
        "the whole VPC, which holds the pods too; tag the ALB's subnets (and keep pods out of them)",
        title="helm_deploy",
    )
    vpcs = aws_call(lambda: ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"], "EC2 describe_vpcs")
    blocks = {
        a["CidrBlock"]
        for v in vpcs
        for a in v.get("CidrBlockAssociationSet") or []
        if (a.get("CidrBlockState") or {}).get("State", "associated") == "associated"
    }
    return sorted(blocks or {v["CidrBlock"] for v in vpcs})
