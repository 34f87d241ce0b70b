"""`make cloud-setup`: what a cloud admin creates once, and the AWS policy tried for real.

The AWS chain's calls (ECR login and repositories, EKS describe and token, VPC lookup, IRSA trust
read, the database and smoke buckets, emptying the storage check's objects) run against a moto
server that enforces IAM, as a user holding exactly the printed policy; then once per action
with that one action removed, which must fail naming it.

What moto cannot tell apart is said where it is handled, never hidden:
- moto authorizes every service but S3 against the resource `*`, so for them the test widens the
  printed statements' resources to `*` (the actions stay exactly the printed ones); S3 is checked
  with the printed bucket and object ARNs as they are.
- moto 5 names some S3 operations' actions its own way (a HEAD of a bucket is `s3:HeadBucket`,
  where AWS checks `s3:ListBucket`; a PUT of ?encryption or ?publicAccessBlock is `s3:CreateBucket`
  and their GETs `s3:ListBucket`, in moto 5.2.5 as pinned by requirements/test-constraints.txt; 5.2.6
  checks `s3:GetPublicAccessBlock`). MOTO_S3 maps each printed S3 action to what moto checks for the
  same operation; an action whose operation moto checks under a name another printed action also
  grants cannot be told missing by moto: those are MOTO_BLIND, listed, and not tried alone.
- moto has no Docker registry protocol and no EKS add-ons: the registry's push and manifest actions
  and eks:DescribeAddon are NOT_EMULATED, listed, and checked only for being printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from tests.envfiles import good_env, write_env
from tools.cloud import AwsCloud, cloud_for
from tools.cloud_permissions import aws_policy, gcp_grants, needs
from tools.cloud_setup import subjects
from tools.database import backup_state
from tools.errors import ToolError
from tools.settings import REPO_ROOT, load_settings

ACCOUNT = "123456789012"  # moto's account
REPOSITORY, IDS = "CMBAgents/cmbcluster-deploy", ("1111", "2222")
# what moto 5 checks for the operation that needs each printed S3 action (see the docstring)
MOTO_S3 = {
    "s3:ListBucket": "s3:HeadBucket",
    "s3:GetBucketPublicAccessBlock": "s3:ListBucket",
    "s3:GetEncryptionConfiguration": "s3:ListBucket",
    "s3:PutBucketPublicAccessBlock": "s3:CreateBucket",
    "s3:PutEncryptionConfiguration": "s3:CreateBucket",
    "s3:PutBucketOwnershipControls": "s3:CreateBucket",
}
MOTO_BLIND = {
    "s3:CreateBucket",  # moto checks it for PUT ?encryption and ?publicAccessBlock too, which the policy grants
    "s3:GetBucketPublicAccessBlock",
    "s3:GetEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:DeleteObject",  # moto does not check DeleteObjects (POST ?delete) against the keys' actions
    "s3:DeleteObjectVersion",
}
NOT_EMULATED = {
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "eks:DescribeAddon",
}


def settings_env(**overrides: str) -> dict[str, str]:
    return good_env("aws", CLUSTER_NAME="cmbiam", **overrides)


def aws_cloud() -> AwsCloud:
    return AwsCloud(load_settings(cloud="aws", environ=settings_env()))


def printed(cloud: str, *extra: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env_file = env_file or REPO_ROOT / "env" / f"{cloud}.env.example"
    command = [sys.executable, "-m", "tools.cloud_setup", "--cloud", cloud, "--env-file", str(env_file), *extra]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def heredoc(script: str, name: str) -> Any:
    return json.loads(script.split(f"cat > {name} <<'JSON'\n", 1)[1].split("\nJSON\n", 1)[0])


# -- what is printed -------------------------------------------------------------------------------
def test_aws_trust_admits_both_subject_formats_of_its_own_environment_and_nothing_else(tmp_path: Path) -> None:
    staging = write_env(tmp_path / "aws-staging.env", settings_env(ENVIRONMENT="staging"))
    result = printed("aws", "--repository", REPOSITORY, "--repository-ids", ":".join(IDS), env_file=staging)
    assert result.returncode == 0, result.stderr
    (statement,) = heredoc(result.stdout, "deploy-trust.json")["Statement"]
    condition = statement["Condition"]["StringEquals"]
    assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert condition["token.actions.githubusercontent.com:sub"] == [
        "repo:CMBAgents/cmbcluster-deploy:environment:aws-staging",
        "repo:CMBAgents@1111/cmbcluster-deploy@2222:environment:aws-staging",
    ]
    assert "aws-production" not in result.stdout  # not even in a comment: the production role is another run
    assert "--role-name cmbiam-staging-deploy " in result.stdout
    assert "--kubernetes-groups cmbcluster-deployers-cmbcluster " in result.stdout
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")


def test_aws_policy_is_the_declared_needs_scoped_to_the_names_the_tools_use() -> None:
    result = printed("aws", "--repository", REPOSITORY)
    assert result.returncode == 0, result.stderr
    cloud = cloud_for(load_settings(cloud="aws", env_file=str(REPO_ROOT / "env" / "aws.env.example")))
    policy = heredoc(result.stdout, "deploy-policy.json")
    assert policy == aws_policy(cloud)
    by_action = {a: s["Resource"] for s in policy["Statement"] for a in s["Action"]}
    # the four the README lacked (issue 13), and * only where AWS allows nothing narrower
    assert {"ecr:DescribeRepositories", "s3:ListBucket", "s3:PutBucketOwnershipControls"} <= set(by_action)
    assert [a for a, r in by_action.items() if r == ["*"]] == [
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "ecr:GetAuthorizationToken",
    ]
    repositories = {i.repository.split("/", 1)[1] for i in cloud.images()}
    assert {r.rsplit("/", 1)[1] for r in by_action["ecr:CreateRepository"]} == repositories
    assert by_action["s3:CreateBucket"] == [
        f"arn:aws:s3:::{cloud.database_bucket}",
        f"arn:aws:s3:::{cloud.smoke_bucket}",
    ]
    assert all(r.startswith(f"arn:aws:s3:::{cloud.smoke_bucket}/") for r in by_action["s3:DeleteObject"])
    assert "OWNER_ID" in result.stdout  # no IDs given: placeholders, and how to get the IDs
    assert "gh api repos/CMBAgents/cmbcluster-deploy" in result.stdout


def test_gcp_binds_each_environment_subject_never_the_whole_repository() -> None:
    result = printed("gcp", "--repository", REPOSITORY, "--repository-ids", ":".join(IDS))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "principalSet" not in out and "attribute.repository/" not in out
    members = [line.split('--member "', 1)[1].rstrip('"') for line in out.splitlines() if "/subject/" in line]
    pool = "principal://iam.googleapis.com/projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/github"
    assert members == [f"{pool}/subject/{s}" for s in subjects(REPOSITORY, IDS, "gcp", ["production"])]
    assert "gcp-staging" not in out and "cmbcluster-production-deploy@my-gcp-project" in out
    assert "assertion.repository_owner_id == '1111' && assertion.repository_id == '2222'" in out
    cloud = cloud_for(load_settings(cloud="gcp", env_file=str(REPO_ROOT / "env" / "gcp.env.example")))
    assert all(f"--permissions {','.join(g.permissions)} " in out for g in gcp_grants(cloud))
    assert "svc.id.goog[cmbcluster/cmbcluster-ksa]" in out and "svc.id.goog[cmbcluster/cmbcluster-user-sa]" in out


@pytest.mark.parametrize("target", ["aws-eu", "gcp-eu"])
def test_a_fleet_targets_identity_trusts_that_targets_environment_alone(target: str) -> None:
    """make cloud-setup TARGET=aws-eu: the subjects are `<target>-<environment>`, the jobs release.yml's
    waves run for that target (deploy.yml's environment), never the cloud's or another target's."""
    cloud = target.split("-")[0]
    env_file = REPO_ROOT / "env" / f"{target}.env.example"
    account = ["--service-account", "eu-deploy@my-project.iam.gserviceaccount.com"] if cloud == "gcp" else []
    result = printed(cloud, "--repository", REPOSITORY, "--target", target, *account, env_file=env_file)
    assert result.returncode == 0, result.stderr
    environment = load_settings(env_file=str(env_file)).environment
    own = f"repo:CMBAgents/cmbcluster-deploy:environment:{target}-{environment}"
    assert own in result.stdout and f"environment:{cloud}-{environment}" not in result.stdout
    if cloud == "aws":
        (statement,) = heredoc(result.stdout, "deploy-trust.json")["Statement"]
        assert own in statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
    assert printed(cloud, "--repository", REPOSITORY, "--target", "EU", env_file=env_file).stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cloud", "aws"], "--repository '': give the GitHub repository as OWNER/REPO"),
        (["--cloud", "aws", "--repository", "a/b", "--repository-ids", "x:1"], "give OWNER_ID:REPO_ID, two numbers"),
        (["--cloud", "aws", "--repository", "a/b", "--allow-main"], "--allow-main is for --identity push"),
        (["--cloud", "local", "--repository", "a/b"], "cloud-setup is for aws or gcp"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    cloud = args[1]
    result = printed(cloud, *args[2:])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


# -- the AWS policy against IAM-enforcing moto ---------------------------------------------------------
def _post(url: str, body: str = "") -> None:
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def enforcing(moto_iam_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_iam_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield moto_iam_url
    _post(f"{moto_iam_url}/moto-api/reset-auth", "inf")


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    """The printed policy as moto evaluates it (the module docstring says why and what)."""
    statements = []
    for statement in policy["Statement"]:
        actions = list(statement["Action"])
        if all(a.startswith("s3:") for a in actions):
            actions += [MOTO_S3[a] for a in actions if a in MOTO_S3]
            statements.append({**statement, "Action": sorted(set(actions))})
        else:
            statements.append({**statement, "Resource": "*"})
    return {**policy, "Statement": statements}


def seed_and_enforce(url: str, policy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> AwsCloud:
    """A fresh moto with the cluster, its VPC, the IRSA roles and an unsecured smoke bucket holding
    what a storage check left; a user holding `policy`; then IAM checks on, as that user."""
    import boto3

    from tools.smoke.storage import STORAGE_PREFIX

    _post(f"{url}/moto-api/reset-auth", "inf")
    _post(f"{url}/moto-api/reset")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    boto3.DEFAULT_SESSION = None
    cloud = aws_cloud()
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    eks = boto3.client("eks")
    eks.create_cluster(
        name="cmbiam", roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={"subnetIds": [subnet]}
    )
    issuer = eks.describe_cluster(name="cmbiam")["cluster"]["identity"]["oidc"]["issuer"].removeprefix("https://")
    iam = boto3.client("iam")
    for role, account in (("cmbiam-backend-irsa", "cmbcluster-ksa"), ("cmbiam-user-irsa", "cmbcluster-user-sa")):
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer}"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:cmbcluster:{account}"}},
                }
            ],
        }
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=cloud.smoke_bucket)
    s3.put_object(Bucket=cloud.smoke_bucket, Key=f"{STORAGE_PREFIX}left-behind", Body=b"x")
    iam.create_user(UserName="deployer")
    iam.put_user_policy(UserName="deployer", PolicyName="deploy", PolicyDocument=json.dumps(for_moto(policy)))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    boto3.DEFAULT_SESSION = None
    _post(f"{url}/moto-api/reset-auth", "0")
    return aws_cloud()


def run_chain(cloud: AwsCloud) -> list[str]:
    """Every AWS call the chain makes, in its order (build, helm-deploy, smoke); what each answered."""
    from tools.smoke.storage import STORAGE_PREFIX

    done = [cloud.registry_login().registry]  # build_push: docker login
    done.append(str(cloud.ensure_repositories()))  # build_push
    done.append(cloud.eks_cluster["name"])  # helm_deploy and smoke: cluster access
    done.append(cloud.eks_token()[:11])
    done.append(str(cloud.vpc_cidrs()))  # helm_deploy: deploy values
    problems = cloud.trust_problems()  # helm_deploy: preflight
    if problems:
        raise ToolError("; ".join(problems))
    done.append(cloud.ensure_database_bucket())  # helm_deploy
    done.append(str(backup_state(cloud).needs_migration))  # helm_deploy's preflight lists the database bucket
    done.append(cloud.ensure_smoke_bucket())  # smoke: storage check
    done.append(str(cloud.empty_storage_check(cloud.smoke_bucket, STORAGE_PREFIX)))
    return done


def without(policy: dict[str, Any], action: str) -> dict[str, Any]:
    statements = [{**s, "Action": [a for a in s["Action"] if a != action]} for s in policy["Statement"]]
    return {**policy, "Statement": [s for s in statements if s["Action"]]}


@pytest.mark.testbed
def test_the_printed_aws_policy_runs_the_chain_and_each_action_is_needed(
    enforcing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = aws_policy(aws_cloud())
    actions = sorted({a for s in policy["Statement"] for a in s["Action"]})
    assert set(actions) >= NOT_EMULATED | MOTO_BLIND  # nothing listed here that the policy does not print

    cloud = seed_and_enforce(enforcing, policy, monkeypatch)
    done = run_chain(cloud)
    assert done[1] == "['cmbiam-backend', 'cmbiam-frontend', 'cmbiam-user-env']"
    assert done[4] == "['10.42.0.0/16']"
    assert "created" in done[5] and done[6] == "False"
    assert "enabled public access block, default encryption, versioning" in done[7]
    assert done[8] == "1"

    # with a policy that allows nothing the chain calls, the first call is refused: the server does check
    nothing = {"Effect": "Allow", "Action": ["sts:GetCallerIdentity"], "Resource": "*"}
    cloud = seed_and_enforce(enforcing, {"Version": "2012-10-17", "Statement": [nothing]}, monkeypatch)
    with pytest.raises(ToolError, match="ecr:GetAuthorizationToken"):
        run_chain(cloud)

    tried = [a for a in actions if a not in NOT_EMULATED | MOTO_BLIND]
    assert tried == [
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "ecr:CreateRepository",
        "ecr:DescribeRepositories",
        "ecr:GetAuthorizationToken",
        "eks:DescribeCluster",
        "iam:GetRole",
        "s3:GetBucketVersioning",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:PutBucketVersioning",
    ]
    for action in tried:
        cloud = seed_and_enforce(enforcing, without(policy, action), monkeypatch)
        with pytest.raises(ToolError) as refused:
            run_chain(cloud)
        assert action in str(refused.value), f"without {action}: {refused.value}"


def test_every_declared_need_says_why_and_names_its_operations() -> None:
    declared_needs = needs("aws")
    assert declared_needs
    for declared in declared_needs:
        assert declared.why and all(":" in a for a in declared.actions)
        assert declared.operations or set(declared.actions) <= NOT_EMULATED, declared


def test_the_app_identities_get_the_shims_grants_and_the_scripts_are_valid_bash() -> None:
    """IRSA / Workload Identity: each app identity's trust and its least-privilege grant, word for word from the
    shim (`Cloud.workload_policies()`, one place); both scripts parse as bash."""
    for name in ("aws", "gcp"):
        result = printed(name, "--repository", REPOSITORY, "--repository-ids", ":".join(IDS))
        assert result.returncode == 0, result.stderr
        syntax = subprocess.run(["bash", "-n"], input=result.stdout, capture_output=True, text=True, check=False)
        assert syntax.returncode == 0, syntax.stderr
        cloud = cloud_for(load_settings(cloud=name, env_file=str(REPO_ROOT / "env" / f"{name}.env.example")))
        grants = [text for _, text in cloud.workload_policies()]
        assert len(grants) == 2
        if name == "gcp":
            assert all(text in result.stdout for text in grants)
            continue
        for key, grant in zip(("AWS_IRSA_ROLE_ARN", "AWS_USER_IRSA_ROLE_ARN"), grants, strict=True):
            role = cloud.settings[key].rsplit("/", 1)[1]
            assert heredoc(result.stdout, f"grant-{role}.json") == json.loads(grant)
            trust = heredoc(result.stdout, f"irsa-{role}.json")["Statement"][0]["Condition"]["StringEquals"]
            assert trust["OIDC_ISSUER:sub"].startswith("system:serviceaccount:cmbcluster:")


# -- one identity per environment; the push-only identity ------------------------------------------------
def admits(trust: dict[str, Any], sub: str) -> bool:
    """IAM's StringEquals / StringLike on `sub` (`*` any run of characters, `?` one; GitHub's subjects hold no
    brackets, so fnmatchcase is the same rule): https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_String"""
    (statement,) = trust["Statement"]
    key = "token.actions.githubusercontent.com:sub"
    exact = statement["Condition"].get("StringEquals", {}).get(key, [])
    like = statement["Condition"].get("StringLike", {}).get(key, [])
    return sub in exact or any(fnmatchcase(sub, pattern) for pattern in like)


CANDIDATES = {  # what GitHub sends (https://docs.github.com/en/actions/reference/security/oidc#example-subject-claims)
    "staging": "repo:CMBAgents/cmbcluster-deploy:environment:aws-staging",
    "staging, immutable": "repo:CMBAgents@1111/cmbcluster-deploy@2222:environment:aws-staging",
    "production": "repo:CMBAgents/cmbcluster-deploy:environment:aws-production",
    "production, immutable": "repo:CMBAgents@1111/cmbcluster-deploy@2222:environment:aws-production",
    "tag": "repo:CMBAgents/cmbcluster-deploy:ref:refs/tags/v1.4.0",
    "tag, immutable": "repo:CMBAgents@1111/cmbcluster-deploy@2222:ref:refs/tags/v1.4.0",
    "main": "repo:CMBAgents/cmbcluster-deploy:ref:refs/heads/main",
    "main, immutable": "repo:CMBAgents@1111/cmbcluster-deploy@2222:ref:refs/heads/main",
    "branch": "repo:CMBAgents/cmbcluster-deploy:ref:refs/heads/feature",
    "pull request": "repo:CMBAgents/cmbcluster-deploy:pull_request",
    "other tag": "repo:CMBAgents/cmbcluster-deploy:ref:refs/tags/test",
    "fork": "repo:someone/cmbcluster-deploy:ref:refs/tags/v1.4.0",
}


@pytest.mark.parametrize(
    ("identity", "extra", "admitted"),
    [
        ("staging", [], {"staging", "staging, immutable"}),
        ("production", [], {"production", "production, immutable"}),
        ("push", ["--identity", "push"], {"tag", "tag, immutable"}),
        ("push", ["--identity", "push", "--allow-main"], {"tag", "tag, immutable", "main", "main, immutable"}),
    ],
)
def test_each_identity_admits_its_own_subjects_alone(
    tmp_path: Path, identity: str, extra: list[str], admitted: set[str]
) -> None:
    environment = "production" if identity == "push" else identity
    env = write_env(tmp_path / "aws.env", settings_env(ENVIRONMENT=environment))
    result = printed("aws", "--repository", REPOSITORY, "--repository-ids", ":".join(IDS), *extra, env_file=env)
    assert result.returncode == 0, result.stderr
    trust = heredoc(result.stdout, "push-trust.json" if identity == "push" else "deploy-trust.json")
    assert {name for name, sub in CANDIDATES.items() if admits(trust, sub)} == admitted
    assert trust["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:aud"] == (
        "sts.amazonaws.com"
    )


def test_the_push_identity_holds_the_registry_rights_alone(tmp_path: Path) -> None:
    env = write_env(tmp_path / "aws.env", settings_env())
    result = printed("aws", "--repository", REPOSITORY, "--identity", "push", env_file=env)
    assert result.returncode == 0, result.stderr
    policy = heredoc(result.stdout, "push-policy.json")
    by_action = {a: s["Resource"] for s in policy["Statement"] for a in s["Action"]}
    cloud = aws_cloud()
    deploy_ecr = {a for s in aws_policy(cloud)["Statement"] for a in s["Action"] if a.startswith("ecr:")}
    assert set(by_action) == deploy_ecr  # what the build calls on the registry, one declaration for both
    assert by_action.pop("ecr:GetAuthorizationToken") == ["*"]
    repositories = {
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/cmbiam-{n}" for n in ("backend", "frontend", "user-env")
    }
    assert all(set(r) == repositories for r in by_action.values()), by_action
    assert "aws eks" not in result.stdout and "s3:" not in result.stdout
    assert "OWNER_ID" in result.stdout and "gh api repos/CMBAgents/cmbcluster-deploy" in result.stdout  # how to fill
    assert "--role-name cmbiam-push " in result.stdout

    gcp = printed("gcp", "--repository", REPOSITORY, "--repository-ids", ":".join(IDS), "--identity", "push")
    assert gcp.returncode == 0, gcp.stderr
    assert (
        "--attribute-condition \"assertion.repository_owner_id == '1111' && assertion.repository_id == '2222' "
        "&& !assertion.sub.contains(':environment:') && (assertion.ref.startsWith('refs/tags/v'))\"" in gcp.stdout
    )
    assert "workloadIdentityPools/github-push/*" in gcp.stdout and "pools/github/" not in gcp.stdout
    roles = [line.split("--role ", 1)[1].split()[0] for line in gcp.stdout.splitlines() if "--role " in line]
    assert roles == ["roles/iam.workloadIdentityUser", "roles/artifactregistry.writer"]  # no project role, no bucket
    assert "gcloud artifacts repositories add-iam-policy-binding cmbcluster " in gcp.stdout


@pytest.mark.testbed
def test_stagings_printed_role_is_refused_on_productions_buckets(
    enforcing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both environments' settings in one account; staging's printed policy on the IAM-enforcing moto (S3 checked
    on the printed bucket ARNs, as they are): staging's buckets are made, production's are refused, one by one."""
    import boto3

    from tools.smoke.storage import STORAGE_PREFIX

    values = {e: good_env("aws", CLUSTER_NAME=f"cmb{e[:4]}", ENVIRONMENT=e) for e in ("staging", "production")}
    result = printed("aws", "--repository", REPOSITORY, env_file=write_env(tmp_path / "staging.env", values["staging"]))
    assert result.returncode == 0, result.stderr
    policy = heredoc(result.stdout, "deploy-policy.json")
    _post(f"{enforcing}/moto-api/reset-auth", "inf")
    _post(f"{enforcing}/moto-api/reset")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    boto3.DEFAULT_SESSION = None
    production = AwsCloud(load_settings(cloud="aws", environ=values["production"]))
    s3 = boto3.client("s3")
    for bucket in (production.database_bucket, production.smoke_bucket):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=production.smoke_bucket, Key=f"{STORAGE_PREFIX}left-behind", Body=b"x")
    iam = boto3.client("iam")
    iam.create_user(UserName="staging-deployer")
    iam.put_user_policy(UserName="staging-deployer", PolicyName="deploy", PolicyDocument=json.dumps(for_moto(policy)))
    key = iam.create_access_key(UserName="staging-deployer")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    boto3.DEFAULT_SESSION = None
    _post(f"{enforcing}/moto-api/reset-auth", "0")

    staging = AwsCloud(load_settings(cloud="aws", environ=values["staging"]))
    production = AwsCloud(load_settings(cloud="aws", environ=values["production"]))
    assert "created" in staging.ensure_database_bucket()  # the role works on its own environment's buckets
    assert "created" in staging.ensure_smoke_bucket()
    refused = {
        "database bucket": production.ensure_database_bucket,
        "smoke bucket": production.ensure_smoke_bucket,
        "its replica": lambda: backup_state(production),
        "storage check's objects": lambda: production.empty_storage_check(production.smoke_bucket, STORAGE_PREFIX),
    }
    messages = {}
    for what, call in refused.items():
        with pytest.raises(ToolError) as denied:
            call()
        messages[what] = str(denied.value)
    for what in ("database bucket", "smoke bucket"):  # HEAD answers 403 without a body: the tool says what to grant
        assert "may not be read by these credentials: grant s3:ListBucket" in messages[what], messages[what]
    assert messages["its replica"].startswith("S3 listing s3://cmbprod-db-123456789012/litestream/")
    assert "AccessDenied" in messages["its replica"] and "AccessDenied" in messages["storage check's objects"]
    assert "cmbprod-user-smoke-123456789012" in messages["storage check's objects"]
