"""helm_deploy's preflight behind the shim: the CSI driver and ingress class in the cluster (the real one),
and on AWS the IRSA roles' trust for this namespace (moto's EKS and IAM; the seed's trust named
namespace `default`, defect 6)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.envfiles import good_env
from tests.test_cluster_access import fresh_boto3_session  # noqa: F401 - autouse: no cached AWS credentials
from tools.cloud import AwsCloud, GcpCloud, trust_admits
from tools.settings import load_settings

ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABCDEF"
SUB = "system:serviceaccount:cmbcluster:cmbcluster-ksa"


def statement(issuer: str = ISSUER, operator: str = "StringEquals", sub: object = SUB, **extra: object) -> dict:
    return {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {operator: {f"{issuer}:sub": sub, f"{issuer}:aud": "sts.amazonaws.com"}},
        **extra,
    }


@pytest.mark.parametrize(
    ("document", "admitted"),
    [
        ({"Statement": [statement()]}, True),
        ({"Statement": [statement(sub=["system:serviceaccount:other:x", SUB])]}, True),
        ({"Statement": [statement(operator="StringLike", sub="system:serviceaccount:cmbcluster:*")]}, True),
        ({"Statement": [statement(sub="system:serviceaccount:default:cmbcluster-ksa")]}, False),  # defect 6
        ({"Statement": [statement(issuer="oidc.eks.us-east-1.amazonaws.com/id/OTHER")]}, False),
        ({"Statement": [statement(Effect="Deny")]}, False),
        ({"Statement": [{**statement(), "Action": "sts:AssumeRole"}]}, False),
        ({"Statement": statement()}, True),  # a single statement need not be a list
    ],
)
def test_trust_admits(document, admitted):
    assert trust_admits(document, ISSUER, SUB) is admitted


# -- CSI driver and ingress class (the real cluster) ---------------------------------------------
@pytest.mark.testbed
def test_csi_driver_and_ingress_class_are_required(cluster, on_cluster):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from tests.realcluster import api as admin_api
    from tests.realcluster import ensure_ingress_class
    from tools import kube_ops

    admin = admin_api(cluster)
    storage, networking = client.StorageV1Api(admin), client.NetworkingV1Api(admin)
    cloud = GcpCloud(load_settings(cloud="gcp", environ=good_env("gcp", INGRESS_CLASS="nginx")))
    for delete in (
        lambda: storage.delete_csi_driver("gcsfuse.csi.storage.gke.io"),
        lambda: networking.delete_ingress_class("nginx"),
    ):
        try:
            delete()
        except ApiException as exc:
            assert exc.status == 404
    with kube_ops.api_client(cluster) as api:
        try:
            assert cloud.prerequisites(api) == (
                [
                    "CSIDriver gcsfuse.csi.storage.gke.io is not installed: enable the cluster's Cloud Storage FUSE "
                    "CSI driver add-on (GcsFuseCsiDriver)",
                    "IngressClass nginx does not exist: install ingress-nginx (its Helm chart creates IngressClass "
                    "nginx) or set INGRESS_CLASS",
                ],
                [],
            )
            storage.create_csi_driver({"metadata": {"name": "gcsfuse.csi.storage.gke.io"}, "spec": {}})
        finally:
            ensure_ingress_class(cluster)
        try:
            assert cloud.prerequisites(api) == ([], [])
        finally:
            storage.delete_csi_driver("gcsfuse.csi.storage.gke.io")


# -- the ClusterIssuer of DNS-01 on GKE (issue 18, defect 3; the real cluster) ----------------------
@pytest.mark.testbed
def test_dns01_on_gke_needs_cluster_issuer_rights_and_preflight_names_them(cluster, cluster_namespace, tmp_path):
    """With DNS_ZONE the chart makes a ClusterIssuer (cert-manager's Workload Identity serves ClusterIssuers
    only): the API server refuses exactly those rights to an identity that is admin in the namespace only."""
    from tests.realcluster import bind, service_account_kubeconfig
    from tools import kube_ops
    from tools.helm import render
    from tools.kube_rights import deploy_rights

    name = f"deployer-{uuid.uuid4().hex[:6]}"
    deployer = service_account_kubeconfig(cluster, cluster_namespace, name, tmp_path)
    bind(cluster, cluster_namespace, name, "admin")
    settings = load_settings(cloud="gcp", environ=good_env("gcp", NAMESPACE=cluster_namespace, DNS_ZONE="example.org"))
    rights = deploy_rights([o for o in render("cmbcluster", cluster_namespace, GcpCloud(settings).chart_values()) if o])
    with kube_ops.api_client(deployer) as as_deployer:
        refused = kube_ops.denied(as_deployer, cluster_namespace, rights)
    issuer = f"{cluster_namespace}-cmbcluster-letsencrypt"
    assert sorted(refused) == sorted(
        [f"{verb} clusterissuers.cert-manager.io" for verb in ("list", "watch", "create")]
        + [f"{verb} clusterissuers.cert-manager.io {issuer}" for verb in ("get", "patch", "delete")]
    )


# -- IRSA trust (moto) ---------------------------------------------------------------------------
@pytest.fixture
def eks_cluster(moto_url, bed_env) -> tuple[str, str]:
    """An EKS cluster in moto, with its OIDC issuer (host/path, as IAM conditions name it)."""
    import boto3

    name = f"cmb{uuid.uuid4().hex[:8]}"
    eks = boto3.client("eks", region_name="us-east-1")
    eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={})
    issuer = eks.describe_cluster(name=name)["cluster"]["identity"]["oidc"]["issuer"]
    return name, issuer.removeprefix("https://")


def make_role(name: str, issuer: str, *subjects: str) -> str:
    import boto3

    document = {"Version": "2012-10-17", "Statement": [statement(issuer=issuer, sub=list(subjects))]}
    role = boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(document))
    return role["Role"]["Arn"]


def aws(cluster: str, **roles: str) -> AwsCloud:
    return AwsCloud(load_settings(cloud="aws", environ=good_env("aws", CLUSTER_NAME=cluster, **roles)))


@pytest.mark.testbed
def test_trust_naming_the_wrong_namespace_is_reported(eks_cluster):
    cluster, issuer = eks_cluster
    make_role(f"{cluster}-backend-irsa", issuer, "system:serviceaccount:default:cmbcluster-ksa")
    make_role(f"{cluster}-user-irsa", issuer, "system:serviceaccount:default:cmbcluster-user-sa")
    problems = aws(cluster).trust_problems()  # both roles name namespace default (defect 6)
    assert len(problems) == 2
    for role, account, line in zip(
        ("backend", "user"), ("cmbcluster-ksa", "cmbcluster-user-sa"), problems, strict=True
    ):
        subject = f"system:serviceaccount:cmbcluster:{account}"
        assert line.startswith(f"IAM role {cluster}-{role}-irsa does not trust {subject} through {issuer}")


@pytest.mark.testbed
def test_trust_for_both_service_accounts_passes(eks_cluster):
    cluster, issuer = eks_cluster
    backend = make_role(f"{cluster}-b", issuer, "system:serviceaccount:cmbcluster:cmbcluster-ksa")
    user = make_role(f"{cluster}-u", issuer, "system:serviceaccount:cmbcluster:cmbcluster-user-sa")
    assert aws(cluster, AWS_IRSA_ROLE_ARN=backend, AWS_USER_IRSA_ROLE_ARN=user).trust_problems() == []
    swapped = aws(cluster, AWS_IRSA_ROLE_ARN=user, AWS_USER_IRSA_ROLE_ARN=backend).trust_problems()
    assert [line.split(" through ")[0] for line in swapped] == [
        f"IAM role {cluster}-u does not trust system:serviceaccount:cmbcluster:cmbcluster-ksa",
        f"IAM role {cluster}-b does not trust system:serviceaccount:cmbcluster:cmbcluster-user-sa",
    ]


@pytest.mark.testbed
def test_a_missing_role_is_reported(eks_cluster):
    cluster, _ = eks_cluster
    backend, user = aws(cluster).trust_problems()
    for role, line in (("backend", backend), ("user", user)):
        assert line.startswith(f"IAM role {cluster}-{role}-irsa (arn:aws:iam::123456789012:role/{cluster}-{role}-irsa)")
        assert "does not exist" in line
