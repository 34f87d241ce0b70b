"""Issue 18, defect 1: on EKS the deploy role installs the chart only when its access entry has a Kubernetes group.

On the simulated EKS (tests/sim: EKS's token webhook and access policies on a real kube-apiserver), the
deploy identity is configured exactly as `make cloud-setup CLOUD=aws` prints it (its `aws eks` commands)
and `make rbac` (applied by a cluster admin), logs in with the toolkit's own `k8s-aws-v1.` token
(tools/eks_token.py, presigned with credentials of the assumed deploy role), and Helm installs the chart.
Without `--kubernetes-groups` the role's rights come from AmazonEKSAdminPolicy alone, and Kubernetes
refuses the chart's Role as EKS does (aws/containers-roadmap#2682).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.envfiles import good_env
from tests.sim.eks import CLUSTER
from tests.sim.eks_token_review import Credential, EksTokenReviewer, TokenRejected
from tools.cloud import cloud_for
from tools.cloud.aws import eks_token
from tools.escalation import escalation_problems
from tools.helm import render
from tools.kube import api_client
from tools.settings import REPO_ROOT, load_settings

ROLE, SESSION = f"{CLUSTER}-deploy", "github-run-42"
ESCALATION = "attempting to grant RBAC permissions not currently held"
GROUPS_FLAG = "--kubernetes-groups cmbcluster-deployers "


def env_file(folder: Path, namespace: str) -> Path:
    path = folder / "aws.env"
    path.write_text(
        "".join(f"{k}={v}\n" for k, v in good_env("aws", CLUSTER_NAME=CLUSTER, NAMESPACE=namespace).items())
    )
    return path


def tool(module: str, env: Path, *args: str) -> str:
    command = [sys.executable, "-m", module, "--cloud", "aws", "--env-file", str(env), *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def deploy_role(moto_url: str, script: str) -> str:
    """The deploy role as the script's step 2 makes it (its printed trust policy), in moto."""
    trust = script.split("cat > deploy-trust.json <<'JSON'\n", 1)[1].split("\nJSON\n", 1)[0]
    iam = boto3.session.Session().client("iam", endpoint_url=moto_url, region_name="us-east-1")  # no cached keys
    try:
        return iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=ROLE)["Role"]["Arn"]


def chart_values(cloud: str, namespace: str) -> dict[str, Any]:
    settings = load_settings(cloud=cloud, environ=good_env(cloud, CLUSTER_NAME=CLUSTER, NAMESPACE=namespace))
    return cloud_for(settings).chart_values()


def helm_install(
    sim: Any, tmp_path: Path, chart_cloud: str, namespace: str, credentials: dict[str, str], moto_url: str
) -> Any:
    """`helm install` of the chart with `chart_cloud`'s values, as the deploy identity (the EKS credential plugin)."""
    settings = load_settings(
        cloud=chart_cloud, environ=good_env(chart_cloud, CLUSTER_NAME=CLUSTER, NAMESPACE=namespace)
    )
    values = tmp_path / "values.json"
    values.write_text(json.dumps(cloud_for(settings).chart_values()))
    kubeconfig = sim.kubeconfig(tmp_path, "us-east-1")
    env = {**credentials, "AWS_ENDPOINT_URL": moto_url, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        str(Path(sys.executable).parent / "helm"),
        "install",
        "cmbcluster",
        str(REPO_ROOT / "helm"),
        "--namespace",
        namespace,
        "--values",
        str(values),
        "--kubeconfig",
        kubeconfig,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, check=False, cwd=REPO_ROOT
    )


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
    namespace = f"cmb-{chart_cloud}-" + ("group" if setup == "as printed" else "policy")
    env = env_file(tmp_path, namespace)
    script = tool("tools.cloud_setup", env, "--repository", "CMBAgents/cmbcluster-deploy")
    if setup != "as printed":
        assert GROUPS_FLAG in script
        script = script.replace(GROUPS_FLAG, "")
    role_arn = deploy_role(moto_url, script)
    sim = simulated_eks
    sim.entries.entries.pop(role_arn, None)  # each case configures the entry afresh, as its script says
    assert sim.entries.apply_script(script, CLUSTER) == 2
    # a cluster admin: the namespace, and the RBAC `make rbac` prints for the access entry's group
    admin = sim.control_plane
    assert admin.kubectl("create", "namespace", namespace).returncode == 0
    rbac = tmp_path / "rbac.yaml"
    rbac.write_text(tool("tools.rbac", env))
    applied = admin.kubectl("apply", "-f", str(rbac))
    assert applied.returncode == 0, applied.stderr
    credentials = sim.reviewer.issue(role_arn, SESSION)  # the CI job's login: the deploy role, assumed

    # preflight's escalation check, as the deploy identity, on the chart it is about to install
    for key, value in {**credentials, "AWS_ENDPOINT_URL": moto_url, "PYTHONPATH": str(REPO_ROOT)}.items():
        monkeypatch.setenv(key, value)
    api = api_client(sim.kubeconfig(tmp_path, "us-east-1"))
    problems = escalation_problems(
        api, namespace, render("cmbcluster", namespace, chart_values(chart_cloud, namespace)), ""
    )

    result = helm_install(sim, tmp_path, chart_cloud, namespace, credentials, moto_url)

    if setup == "as printed":
        assert result.returncode == 0, result.stderr + "\n".join(sim.hooks.log[-10:])
        assert problems == []
        roles = admin.kubectl("get", "roles,rolebindings", "-n", namespace, "-o", "name").stdout.split()
        assert "role.rbac.authorization.k8s.io/cmbcluster-pod-manager" in roles
        assert "rolebinding.rbac.authorization.k8s.io/cmbcluster-pod-manager" in roles
    else:
        assert len(problems) == 1 and problems[0].startswith("the chart's Role cmbcluster-pod-manager grants"), problems
        assert ESCALATION in problems[0]  # preflight says it before Helm changes anything
        assert result.returncode != 0
        # the Role: RBAC holds none of its rules for this user, and the access policy has no `escalate`
        assert (
            f'roles.rbac.authorization.k8s.io "cmbcluster-pod-manager" is forbidden: user "{ROLE}:{SESSION}"'
            in result.stderr
        )
        assert ESCALATION in result.stderr, result.stderr


def test_the_token_webhook_checks_the_signature_the_cluster_id_and_the_expiry(
    moto_url: str, bed_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tool("tools.cloud_setup", env_file(tmp_path, "cmb-token"), "--repository", "CMBAgents/cmbcluster-deploy")
    role_arn = deploy_role(moto_url, script)
    reviewer = EksTokenReviewer(CLUSTER, moto_url)
    for key, value in reviewer.issue(role_arn, SESSION).items():
        monkeypatch.setenv(key, value)
    token = eks_token(CLUSTER, "us-east-1")  # the toolkit's own token

    caller = reviewer.review(token)
    assert caller.arn == f"arn:aws:sts::123456789012:assumed-role/{ROLE}/{SESSION}"
    assert caller.principal_arn == role_arn

    other = EksTokenReviewer("another-cluster", moto_url)
    other.credentials = reviewer.credentials
    with pytest.raises(TokenRejected, match="SignatureDoesNotMatch"):
        other.review(token)  # x-k8s-aws-id is signed: a token for one cluster is no good on another
    # presigned for 60 s (tools/cloud/aws.py): STS refuses it after X-Amz-Expires, EKS after 15 minutes at most
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


def test_the_api_server_sees_the_access_entrys_user_and_group(
    simulated_eks: Any, moto_url: str, bed_env: dict[str, str], tmp_path: Path
) -> None:
    env = env_file(tmp_path, "cmb-whoami")
    script = tool("tools.cloud_setup", env, "--repository", "CMBAgents/cmbcluster-deploy")
    role_arn = deploy_role(moto_url, script)
    simulated_eks.entries.entries.pop(role_arn, None)
    simulated_eks.entries.apply_script(script, CLUSTER)
    credentials = {**simulated_eks.reviewer.issue(role_arn, SESSION), "AWS_ENDPOINT_URL": moto_url}
    kubeconfig = simulated_eks.kubeconfig(tmp_path, "us-east-1")

    who = simulated_eks.control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig, env=credentials)

    assert who.returncode == 0, who.stderr + "\n".join(simulated_eks.hooks.log[-5:])
    user = json.loads(who.stdout)["status"]["userInfo"]
    assert user["username"] == f"{ROLE}:{SESSION}"  # the printed --username, {{SessionName}} filled in
    assert user["groups"] == ["cmbcluster-deployers", "system:authenticated"]
    assert user["extra"]["arn"] == [f"arn:aws:sts::123456789012:assumed-role/{ROLE}/{SESSION}"]
