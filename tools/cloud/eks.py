"""EKS: the cluster's description, a token signed with boto3 (no aws CLI) and the kubeconfig that
renews it, and whether the VPC CNI enforces NetworkPolicy."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tools.cloud.arns import arn
from tools.cloud.awscall import aws_call
from tools.cloud.base import Cloud, temporary_kubeconfig
from tools.cloud_permissions import need
from tools.errors import ToolError
from tools.report import REPORTER

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
EKS_TOKEN_LIFETIME = 14 * 60  # seconds: EKS accepts a token for 15 minutes; renew a minute early


def _cluster(cloud: Cloud) -> list[str]:
    return [arn(cloud.settings, "eks", f"cluster/{cloud.settings.cluster_name}")]


need("aws", "eks:DescribeCluster", _cluster, "the cluster's endpoint, CA, OIDC issuer and VPC",
     ("DescribeCluster",))  # fmt: skip


def describe_cluster(eks: Any, name: str, region: str) -> dict[str, Any]:
    """`describe_cluster` of `name`: one clear line when there is no such cluster."""

    def describe() -> dict[str, Any]:
        try:
            return eks.describe_cluster(name=name)["cluster"]
        except eks.exceptions.ResourceNotFoundException:
            raise ToolError(f"EKS cluster {name} not found in {region}: check CLUSTER_NAME, AWS_REGION") from None

    return aws_call(describe, "EKS describe_cluster")


def eks_token(cluster: str, region: str) -> str:
    """A bearer token for EKS, made as aws-iam-authenticator makes it.

    `k8s-aws-v1.` + unpadded base64url of a presigned STS GetCallerIdentity URL (60 s) whose
    signed headers include `x-k8s-aws-id: CLUSTER`."""
    import boto3  # heavy (~0.3 s): only when a token is made, never for --help or plan

    sts = boto3.client("sts", region_name=region)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers["x-k8s-aws-id"] = cluster  # signed: EKS checks the token is for this cluster

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = aws_call(
        lambda: sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET"),
        "signing the EKS token (STS GetCallerIdentity)",
    )
    token = "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    REPORTER.register_secrets([token])
    return token


@contextmanager
def cluster_kubeconfig(cluster: dict[str, Any], region: str) -> Iterator[str]:
    """A kubeconfig for an ACTIVE (or UPDATING) cluster whose user runs `python -m tools.eks_token`."""
    status = cluster.get("status", "ACTIVE")
    if status == "UPDATING":  # an add-on or version upgrade: the API keeps answering meanwhile
        REPORTER.warning(f"EKS cluster {cluster['name']} is UPDATING (an upgrade is under way); going on")
    elif status != "ACTIVE":
        raise ToolError(f"EKS cluster {cluster['name']} is {status}: wait until it is ACTIVE")
    ca = (cluster.get("certificateAuthority") or {}).get("data", "")
    name = cluster.get("arn") or cluster["name"]
    eks_token(cluster["name"], region)  # fail here, in one clear line, when the credentials cannot sign one
    # An EKS token lasts 15 minutes: helm and the tools' client run this plugin again for a
    # fresh one when it expires (a slow rollout plus a rollback outlives one token).
    plugin = {
        "apiVersion": EXEC_API_VERSION,
        "command": sys.executable,
        "args": ["-m", "tools.eks_token", "--cluster", cluster["name"], "--region", region],
        "interactiveMode": "Never",
        "provideClusterInfo": False,
    }
    with temporary_kubeconfig(name, cluster["endpoint"], ca, user={"exec": plugin}) as path:
        yield path


need("aws", "eks:DescribeAddon",
     lambda c: [arn(c.settings, "eks", f"addon/{c.settings.cluster_name}/vpc-cni/*")],
     "does the VPC CNI enforce NetworkPolicy", ("DescribeAddon",))  # fmt: skip


def network_policy_warning(eks: Any, cluster: str) -> str | None:
    """EKS enforces NetworkPolicy only when the VPC CNI add-on's network policy agent is on;
    without it the chart's policies (user pods' isolation, no metadata service) do nothing."""
    fix = (
        f"aws eks update-addon --cluster-name {cluster} --addon-name vpc-cni "
        """--configuration-values '{"enableNetworkPolicy":"true"}'"""
    )
    try:
        addon = aws_call(
            lambda: eks.describe_addon(clusterName=cluster, addonName="vpc-cni")["addon"], "EKS describe_addon"
        )
    except ToolError as exc:
        if exc.code == "ResourceNotFoundException":
            return f"EKS cluster {cluster} has no managed vpc-cni add-on: NetworkPolicy is not enforced; {fix}"
        return f"NetworkPolicy enforcement of {cluster} not checked: reading the vpc-cni add-on failed: {exc}"
    try:
        values = json.loads(addon.get("configurationValues") or "{}")
    except ValueError:
        values = {}
    if str(values.get("enableNetworkPolicy", "")).lower() != "true":
        return f"EKS cluster {cluster} does not enforce NetworkPolicy (vpc-cni enableNetworkPolicy is off): {fix}"
    return None
