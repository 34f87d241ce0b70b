"""Issue 18, defect 1: on EKS the deploy role installs the chart only when its access entry has a Kubernetes group.

On the simulated EKS (tests/sim: EKS's token webhook and access policies on a real kube-apiserver, the
access-entry API in front of moto), the deploy identity is configured exactly as `make cloud-setup
CLOUD=aws` prints it (its `aws eks` commands, run as the AWS CLI maps them to the API) and `make rbac`
(applied by a cluster admin); the tools' own `AwsCloud.cluster_access` writes the kubeconfig from
DescribeCluster, with the toolkit's `k8s-aws-v1.` token plugin (tools/eks_token.py) signing with the
assumed deploy role's credentials; Helm installs the chart. Without `--kubernetes-groups` the role's
rights come from AmazonEKSAdminPolicy alone, and Kubernetes refuses the chart's Role as EKS does
(aws/containers-roadmap#2682); preflight's escalation check says so first.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.chart_helpers import helm_install
from tests.envfiles import good_env
from tests.sim.aws_cli import run_printed_script
from tests.sim.eks import ACCOUNT, CLUSTER, REGION
from tests.sim.eks_access import Association
from tests.sim.eks_setup import apply_rbac, printed_setup, tool
from tests.sim.eks_token_review import STS_HOST, Credential, EksTokenReviewer, TokenRejected
from tools.cloud import AwsCloud, cloud_for
from tools.cloud.eks import eks_token
from tools.escalation import escalation_problems
from tools.helm import render
from tools.kube_ops import api_client
from tools.settings import REPO_ROOT, load_settings

SESSION = "github-run-42"
ESCALATION = "attempting to grant RBAC permissions not currently held"
GROUPS_FLAG = "--kubernetes-groups cmbcluster-deployers-{namespace} "


def settings_env(cloud: str, namespace: str) -> dict[str, str]:
    return good_env(cloud, CLUSTER_NAME=CLUSTER, NAMESPACE=namespace)


def env_file(folder: Path, namespace: str) -> Path:
    path = folder / "aws.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in settings_env("aws", namespace).items()))
    return path


def set_up(
    sim: Any, moto_url: str, folder: Path, namespace: str, role: str, drop: str = ""
) -> tuple[str, subprocess.CompletedProcess]:
    """The printed set-up script (less `drop`) for this namespace's settings (tests/sim/eks_setup.py)."""
    return printed_setup(sim, moto_url, folder, env_file(folder, namespace), role, drop)


@contextmanager
def as_deploy_role(
    sim: Any, moto_url: str, role_arn: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The CI job's login (the deploy role, assumed) and the tools' own kubeconfig for the cluster."""
    credentials = sim.reviewer.issue(role_arn, SESSION)
    # EKS's API at the simulated one; no general endpoint, so the token is presigned for STS's real host name, the
    # only one EKS accepts (the token is never sent there: the simulated webhook asks moto who signed it)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    environment = {**credentials, "AWS_ENDPOINT_URL_EKS": sim.api.url}
    for key, value in {**environment, "AWS_DEFAULT_REGION": REGION, "PYTHONPATH": str(REPO_ROOT)}.items():
        monkeypatch.setenv(key, value)
    with AwsCloud(load_settings(cloud="aws", environ=settings_env("aws", namespace))).cluster_access() as kubeconfig:
        yield kubeconfig


def chart_values(cloud: str, namespace: str) -> dict[str, Any]:
    return cloud_for(load_settings(cloud=cloud, environ=settings_env(cloud, namespace))).chart_values()


# The escalation pair installs the chart with CLOUD=local values: its RBAC is the namespaced Role and
# RoleBinding alone, so nothing but the escalation rule tells the two apart (with AWS values, Helm's first
# read of the chart's cluster-scoped ClusterRole would already be refused to a namespace-scoped policy).
# The AWS chart, with its cluster-scoped ClusterRole and binding, installs as printed too.
@pytest.mark.parametrize(
    ("setup", "chart_cloud"),
    [("as printed", "local"), ("without --kubernetes-groups", "local"), ("as printed", "aws")],
)
def test_deploy_role_installs_the_chart_only_through_its_access_entry_group(
    simulated_eks: Any,
    moto_url: str,
    bed_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    chart_cloud: str,
) -> None:
    printed = setup == "as printed"
    namespace = f"cmb-{chart_cloud}-" + ("group" if printed else "policy")
    role = f"{CLUSTER}-deploy-{namespace}"
    role_arn, _ = set_up(
        simulated_eks, moto_url, tmp_path, namespace, role, "" if printed else GROUPS_FLAG.format(namespace=namespace)
    )
    entry = simulated_eks.entries.entries[role_arn]
    assert entry.policies == [Association("AmazonEKSAdminPolicy", [namespace])]
    assert entry.groups == ([f"cmbcluster-deployers-{namespace}"] if printed else [])
    # a cluster admin: the namespace, and the RBAC `make rbac` prints for the access entry's group
    admin = simulated_eks.control_plane
    assert admin.kubectl("create", "namespace", namespace).returncode == 0
    apply_rbac(simulated_eks, env_file(tmp_path, namespace), tmp_path)

    with as_deploy_role(simulated_eks, moto_url, role_arn, namespace, monkeypatch) as kubeconfig:
        # preflight's escalation check, on the chart about to be installed
        rendered = render("cmbcluster", namespace, chart_values(chart_cloud, namespace))
        problems = escalation_problems(api_client(kubeconfig), namespace, rendered, "")
        result = helm_install(kubeconfig, tmp_path, chart_values(chart_cloud, namespace), namespace)

    if printed:
        assert problems == []
        assert result.returncode == 0, result.stderr + "\n".join(simulated_eks.hooks.log[-10:])
        roles = admin.kubectl("get", "roles,rolebindings", "-n", namespace, "-o", "name").stdout.split()
        assert "role.rbac.authorization.k8s.io/cmbcluster-pod-manager" in roles
        assert "rolebinding.rbac.authorization.k8s.io/cmbcluster-pod-manager" in roles
    else:
        assert len(problems) == 1 and problems[0].startswith("the chart's Role cmbcluster-pod-manager grants"), problems
        assert ESCALATION in problems[0]  # preflight says it before Helm changes anything
        assert result.returncode != 0
        # the Role: RBAC holds none of its rules for this user, and the access policy has no `escalate`
        refused = f'roles.rbac.authorization.k8s.io "cmbcluster-pod-manager" is forbidden: user "{role}:{SESSION}"'
        assert refused in result.stderr
        assert ESCALATION in result.stderr, result.stderr


def test_the_api_server_sees_the_access_entrys_user_and_group_and_the_set_up_converges(
    simulated_eks: Any, moto_url: str, bed_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = f"{CLUSTER}-deploy-whoami"
    role_arn, first = set_up(simulated_eks, moto_url, tmp_path, "cmb-whoami", role)
    assert "ResourceInUseException" not in first.stderr
    # a re-run converges: every create is refused as existing and its `||` update runs; the script ends
    role_arn, again = set_up(simulated_eks, moto_url, tmp_path, "cmb-whoami", role)
    assert "CreateAccessEntry operation: " in again.stderr and "ResourceInUseException" in again.stderr
    assert "CreateRole operation: " in again.stderr and "EntityAlreadyExists" in again.stderr
    eks = boto3.session.Session().client("eks", endpoint_url=simulated_eks.api.url, region_name=REGION)
    entry = eks.describe_access_entry(clusterName=CLUSTER, principalArn=role_arn)["accessEntry"]
    assert (
        entry["kubernetesGroups"] == ["cmbcluster-deployers-cmb-whoami"]
        and entry["username"] == role + ":{{SessionName}}"
    )

    with as_deploy_role(simulated_eks, moto_url, role_arn, "cmb-whoami", monkeypatch) as kubeconfig:
        who = simulated_eks.control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)

    assert who.returncode == 0, who.stderr + "\n".join(simulated_eks.hooks.log[-5:])
    user = json.loads(who.stdout)["status"]["userInfo"]
    assert user["username"] == f"{role}:{SESSION}"  # the printed --username, {{SessionName}} filled in
    assert user["groups"] == ["cmbcluster-deployers-cmb-whoami", "system:authenticated"]
    assert user["extra"]["arn"] == [f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{SESSION}"]


def test_the_token_webhook_checks_the_signature_the_cluster_id_and_the_expiry(
    moto_url: str, bed_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    iam = boto3.session.Session().client("iam", endpoint_url=moto_url, region_name=REGION)
    trust = {"Version": "2012-10-17", "Statement": []}
    role_arn = iam.create_role(RoleName=f"{CLUSTER}-token", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    reviewer = EksTokenReviewer(CLUSTER, moto_url)
    for key, value in reviewer.issue(role_arn, SESSION).items():
        monkeypatch.setenv(key, value)
    presigned_for_moto = eks_token(CLUSTER, REGION)  # AWS_ENDPOINT_URL: signed for moto's plain-HTTP address
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://sts.amazonaws.com.example.org")
    presigned_elsewhere = eks_token(CLUSTER, REGION)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    token = eks_token(CLUSTER, REGION)  # the toolkit's own token, for STS's regional host name

    caller = reviewer.review(token)
    assert caller.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{CLUSTER}-token/{SESSION}"
    assert caller.principal_arn == role_arn

    other = EksTokenReviewer("another-cluster", moto_url)
    other.credentials = reviewer.credentials
    with pytest.raises(TokenRejected, match="SignatureDoesNotMatch"):
        other.review(token)  # x-k8s-aws-id is signed: a token for one cluster is no good on another
    # presigned for 60 s (tools/cloud/eks.py): STS refuses it after X-Amz-Expires, EKS after 15 minutes at most
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    with pytest.raises(TokenRejected, match="expired"):
        reviewer.review(token, now=later)
    forged = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(TokenRejected):
        reviewer.review(forged)
    stranger = EksTokenReviewer(CLUSTER, moto_url)
    stranger.credentials = {
        key: Credential("not-the-secret", c.session_token) for key, c in reviewer.credentials.items()
    }
    with pytest.raises(TokenRejected, match="SignatureDoesNotMatch"):
        stranger.review(token)
    with pytest.raises(TokenRejected, match="k8s-aws-v1"):
        reviewer.review("Bearer " + token)
    # a correctly signed token whose URL is not STS's: EKS would send it to a server of the caller's choosing
    with pytest.raises(TokenRejected, match="unexpected scheme 'http'"):
        reviewer.review(presigned_for_moto)
    with pytest.raises(TokenRejected, match=r"unexpected hostname 'sts\.amazonaws\.com\.example\.org'"):
        reviewer.review(presigned_elsewhere)
    for host in ("sts.amazonaws.com", "sts.eu-west-1.amazonaws.com"):
        assert STS_HOST.match(host), host
    for host in ("sts.amazonaws.com.evil.org", "evilsts.amazonaws.com", "sts.amazonaws.com:8443", "iam.amazonaws.com"):
        assert not STS_HOST.match(host), host


def test_make_rbac_binds_a_user_name_with_colons_and_refuses_one_for_a_service_account(tmp_path: Path) -> None:
    env = env_file(tmp_path, "cmb-names")
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{CLUSTER}-deploy/{SESSION}"  # EKS's default user name
    (binding, *_) = [d for d in yaml.safe_load_all(tool("tools.rbac", env, "--subject", f"User:{arn}")) if d]
    assert binding["subjects"] == [{"kind": "User", "name": arn, "apiGroup": "rbac.authorization.k8s.io"}]
    command = [sys.executable, "-m", "tools.rbac", "--cloud", "aws", "--env-file", str(env)]
    refused = subprocess.run([*command, "--subject", "ServiceAccount:a:b"], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error   --subject 'ServiceAccount:a:b': use User:NAME, Group:NAME or ServiceAccount:[NAMESPACE/]NAME"
    ]


def test_stagings_role_is_refused_in_productions_namespace_of_a_shared_cluster(
    simulated_eks: Any, moto_url: str, bed_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging and production in one cluster, each environment's role set up as `make cloud-setup` prints it for its
    own env file (default role names, access entry in the namespace's own group) and `make rbac` applied for each:
    a token of staging's role is refused in production's namespace (403) and admitted in its own."""
    admin, roles = simulated_eks.control_plane, {}
    eks = boto3.session.Session().client("eks", endpoint_url=simulated_eks.api.url, region_name=REGION)
    iam = boto3.session.Session().client("iam", endpoint_url=moto_url, region_name=REGION)
    for environment in ("staging", "production"):
        namespace = f"cmb-env-{environment}"
        folder = tmp_path / environment
        folder.mkdir()
        env = folder / "aws.env"
        env.write_text(
            "".join(f"{k}={v}\n" for k, v in {**settings_env("aws", namespace), "ENVIRONMENT": environment}.items())
        )
        script = tool("tools.cloud_setup", env, "--repository", "o/r")
        role = f"{CLUSTER}-{environment}-deploy"
        assert f"--role-name {role} " in script and f"--kubernetes-groups cmbcluster-deployers-{namespace} " in script
        ran = run_printed_script(script, folder, region=REGION, moto_url=moto_url, eks_url=simulated_eks.api.url)
        assert ran.returncode == 0, f"the printed set-up stopped:\n{ran.stderr[-3000:]}"
        roles[environment] = iam.get_role(RoleName=role)["Role"]["Arn"]
        entry = eks.describe_access_entry(clusterName=CLUSTER, principalArn=roles[environment])["accessEntry"]
        assert entry["kubernetesGroups"] == [f"cmbcluster-deployers-{namespace}"]
        assert admin.kubectl("create", "namespace", namespace).returncode == 0
        apply_rbac(simulated_eks, env, folder)

    with as_deploy_role(simulated_eks, moto_url, roles["staging"], "cmb-env-staging", monkeypatch) as kubeconfig:
        own = admin.kubectl("create", "configmap", "probe", "-n", "cmb-env-staging", kubeconfig=kubeconfig)
        other = admin.kubectl("create", "configmap", "probe", "-n", "cmb-env-production", kubeconfig=kubeconfig)
        read = admin.kubectl("get", "--raw", "/api/v1/namespaces/cmb-env-production/secrets", kubeconfig=kubeconfig)

    assert own.returncode == 0, own.stderr + "\n".join(simulated_eks.hooks.log[-5:])
    user = f"{CLUSTER}-staging-deploy:{SESSION}"
    assert "Error from server (Forbidden)" in read.stderr, read.stderr
    for refused in (other, read):
        assert refused.returncode != 0
        assert f'is forbidden: User "{user}" cannot' in refused.stderr, refused.stderr  # the API server's 403
        assert 'in the namespace "cmb-env-production"' in refused.stderr
