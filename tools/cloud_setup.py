"""Print what a cloud admin creates once for the GitHub deploys: trust, least-privilege policy, bindings.

From the settings (no cloud access): the OIDC trust of the deploy role (AWS) or the Workload
Identity provider and its bindings (GCP), for the subjects GitHub sends in both formats
(`repo:OWNER/REPO:environment:ENV` and the immutable `repo:OWNER@OWNER_ID/REPO@REPO_ID:environment:ENV`);
the deploy identity's permissions, derived from what the tools call (tools/cloud_permissions.py);
the IRSA / Workload Identity bindings of the app's service accounts. The output is a shell
script to read, then run as an admin:

    make cloud-setup CLOUD=aws ENV_FILE=env/aws-staging.env ARGS="--repository OWNER/REPO --repository-ids 1234:5678"

One identity per environment: the env file's ENVIRONMENT (or the process environment's) chooses it,
and its settings name that environment's cluster, namespace and buckets, so the role (service
account) printed is trusted by `<cloud>-<ENVIRONMENT>` alone (a fleet target's, `make cloud-setup
TARGET=aws-eu`: `<target>-<ENVIRONMENT>`) and reaches that environment's resources alone. Run it
once per target and environment, each with its own env file. `--identity push` prints the
push-only identity instead (tools/push_identity.py).

Exit 0, or 2 for bad usage or configuration.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from tools import cli
from tools.auth.cognito import reader_script
from tools.cloud import BACKEND_SERVICE_ACCOUNT, USER_SERVICE_ACCOUNT, Cloud, cloud_for
from tools.cloud_permissions import aws_policy, gcp_grants, needs
from tools.errors import UsageError
from tools.fleet import TARGET_NAME, TARGET_NAME_HELP
from tools.kube_rights import deploy_group
from tools.push_identity import aws_push_script, gcp_push_script

GITHUB_ISSUER = "token.actions.githubusercontent.com"
# The GitHub environment of one deploy (README, "Credentials only in the approved job"): the protected
# `<cloud>-<environment>`, whose one approved job runs every step; the only subject the cloud trusts.
GATE_ENVIRONMENT = "{target}-{environment}"
STEPS_ENVIRONMENT = GATE_ENVIRONMENT
REPOSITORY = re.compile(r"^[\w.-]+/[\w.-]+$")
IDS = re.compile(r"^(\d+):(\d+)$")


def steps_environment(target: str, environment: str) -> str:
    """The GitHub environment of a target (a fleet target, or the cloud when there is no fleet)."""
    return STEPS_ENVIRONMENT.format(target=target, environment=environment)


def subjects(repository: str, ids: tuple[str, str] | None, target: str, environments: Sequence[str]) -> list[str]:
    """The OIDC `sub` of every step job, in the classic and the immutable (ID-bearing) format."""
    owner, repo = repository.split("/")
    owner_id, repo_id = ids or ("OWNER_ID", "REPO_ID")
    out = []
    for environment in environments:
        env = steps_environment(target, environment)
        out += [f"repo:{owner}/{repo}:environment:{env}", f"repo:{owner}@{owner_id}/{repo}@{repo_id}:environment:{env}"]
    return out


def web_identity_trust(account: str, issuer: str, subject: str | list[str]) -> dict[str, Any]:
    """A role's trust in tokens of an OIDC `issuer` (registered in `account`) for `subject`, audience STS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{account}:oidc-provider/{issuer}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {f"{issuer}:aud": "sts.amazonaws.com", f"{issuer}:sub": subject}},
            }
        ],
    }


def aws_trust_policy(account: str, subs: list[str]) -> dict[str, Any]:
    """The deploy role's trust: GitHub's tokens for the step jobs' environments, in both subject formats."""
    return web_identity_trust(account, GITHUB_ISSUER, subs)


def irsa_trust_policy(account: str, namespace: str, service_account: str) -> dict[str, Any]:
    """An IRSA role's trust: the cluster's tokens for one service account (OIDC_ISSUER: the script's first lines)."""
    return web_identity_trust(account, "OIDC_ISSUER", f"system:serviceaccount:{namespace}:{service_account}")


def deploy_username(role: str) -> str:
    """The deploy role's Kubernetes user: the role and its session (GitHub's run), as EKS's access entry
    templates it (https://docs.aws.amazon.com/eks/latest/userguide/access-entries.html, `{{SessionName}}`)."""
    return f"{role}:{{{{SessionName}}}}"


def _heredoc(path: str, document: dict[str, Any]) -> str:
    return f"cat > {path} <<'JSON'\n{json.dumps(document, indent=2)}\nJSON\n"


def aws_script(
    cloud: Cloud, repository: str, ids: tuple[str, str] | None, environments: list[str], role: str, target: str = "aws"
) -> str:
    s = cloud.settings
    account, cluster, namespace = s["AWS_ACCOUNT_ID"], s.cluster_name, s.namespace
    username = deploy_username(role)
    group = deploy_group(namespace)
    subs = subjects(repository, ids, target, environments)
    steps = ", ".join(steps_environment(target, e) for e in environments)
    why = "\n".join(f"#   {', '.join(n.actions)}: {n.why}" for n in needs("aws"))
    irsa = ""
    grants = [json.loads(text) for _, text in cloud.workload_policies()]  # backend, user pods: from the shim
    roles = (("AWS_IRSA_ROLE_ARN", BACKEND_SERVICE_ACCOUNT), ("AWS_USER_IRSA_ROLE_ARN", USER_SERVICE_ACCOUNT))
    for (key, account_name), grant in zip(roles, grants, strict=True):
        name = s[key].split(":role/", 1)[-1].split("/")[-1]
        irsa += _heredoc(f"irsa-{name}.json", irsa_trust_policy(account, namespace, account_name))
        irsa += f'sed -i "s#OIDC_ISSUER#$OIDC_ISSUER#g" irsa-{name}.json\n'
        irsa += f"aws iam create-role --role-name {name} --assume-role-policy-document file://irsa-{name}.json \\\n"
        irsa += f"  || aws iam update-assume-role-policy --role-name {name} --policy-document file://irsa-{name}.json\n"
        irsa += _heredoc(f"grant-{name}.json", grant)
        irsa += f"aws iam put-role-policy --role-name {name} --policy-name cmbcluster \\\n"
        irsa += f"  --policy-document file://grant-{name}.json\n"
    return f"""#!/usr/bin/env bash
# One-time AWS set-up for CMBCluster deploys from {repository} (account {account}, cluster {cluster}).
# Read it, then run it as an IAM admin. Generated by `make cloud-setup CLOUD=aws`.
set -euo pipefail
{_ids_note(repository, ids)}
# 1. GitHub's OIDC provider (once per account; "EntityAlreadyExists" means it is there)
aws iam create-open-id-connect-provider --url https://{GITHUB_ISSUER} --client-id-list sts.amazonaws.com || true

# 2. The deploy role of this environment alone, trusted by the approved job of {steps} only
#    in both subject formats GitHub sends (the immutable one for repositories created from 15 July 2026)
{_heredoc("deploy-trust.json", aws_trust_policy(account, subs))}aws iam create-role --role-name {role} \\
  --assume-role-policy-document file://deploy-trust.json \\
  || aws iam update-assume-role-policy --role-name {role} --policy-document file://deploy-trust.json

# 3. Its permissions: exactly what the tools call, and why
{why}
{_heredoc("deploy-policy.json", aws_policy(cloud))}aws iam put-role-policy --role-name {role} \\
  --policy-name cmbcluster-deploy --policy-document file://deploy-policy.json

# 4. Its Kubernetes rights. The access entry puts the role's sessions in the Kubernetes group {group}, which
#    the RBAC of `make rbac` binds: `admin` in the namespace and the cluster-scoped kinds the chart makes. An
#    access policy alone is not enough: EKS enforces it in its own authorizer, not as RBAC rules, and Kubernetes
#    lets an identity create a Role or RoleBinding only with rights it holds through RBAC (or `escalate` and
#    `bind`, which AmazonEKSAdminPolicy lacks): "attempting to grant RBAC permissions not currently held"
#    (https://docs.aws.amazon.com/eks/latest/userguide/access-entries.html, aws/containers-roadmap#2682).
#    The policy below admits the namespace's objects; then, as a cluster admin:
#      make rbac CLOUD=aws ARGS="--subject Group:{group}" | kubectl apply -f -
aws eks create-access-entry --cluster-name {cluster} --principal-arn arn:aws:iam::{account}:role/{role} \\
  --kubernetes-groups {group} --username "{username}" \\
  || aws eks update-access-entry --cluster-name {cluster} --principal-arn arn:aws:iam::{account}:role/{role} \\
  --kubernetes-groups {group} --username "{username}"
aws eks associate-access-policy --cluster-name {cluster} --principal-arn arn:aws:iam::{account}:role/{role} \\
  --policy-arn arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy \\
  --access-scope type=namespace,namespaces={namespace}

# 5. IRSA: the app's service accounts in {namespace} assume their roles through the cluster's OIDC issuer,
#    each role with its least-privilege grant (the backend: its database replica and making the user
#    buckets; user pods: the user buckets only)
OIDC_ISSUER=$(aws eks describe-cluster --name {cluster} --query cluster.identity.oidc.issuer --output text | sed 's#^https://##')
{irsa}
# GitHub: set AWS_DEPLOY_ROLE_ARN=arn:aws:iam::{account}:role/{role} in the environment {steps} (no other)
"""


def gcp_script(
    cloud: Cloud,
    repository: str,
    ids: tuple[str, str] | None,
    environments: list[str],
    account: str,
    pool: str,
    target: str = "gcp",
) -> str:
    s = cloud.settings
    project, namespace = s["PROJECT_ID"], s.namespace
    owner_id, repo_id = ids or ("OWNER_ID", "REPO_ID")
    why = "\n".join(f"#   {', '.join(n.actions)}: {n.why}" for n in needs("gcp"))
    principal = (
        f"principal://iam.googleapis.com/projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/{pool}/subject"
    )
    bindings = "".join(
        f"gcloud iam service-accounts add-iam-policy-binding {account} --project {project} \\\n"
        f'  --role roles/iam.workloadIdentityUser --member "{principal}/{sub}"\n'
        for sub in subjects(repository, ids, target, environments)
    )
    roles = "".join(_gcp_role(project, account, grant) for grant in gcp_grants(cloud))
    steps = ", ".join(steps_environment(target, e) for e in environments)
    mapping = "google.subject=assertion.sub,attribute.repository_id=assertion.repository_id"
    condition = f"assertion.repository_owner_id == '{owner_id}' && assertion.repository_id == '{repo_id}'"
    provider = f"projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/{pool}/providers/github"
    grants = "\n".join(text for _, text in cloud.workload_policies())  # from the shim
    workload = "".join(
        f"gcloud iam service-accounts add-iam-policy-binding {s[key]} --project {project} \\\n"
        f'  --role roles/iam.workloadIdentityUser --member "serviceAccount:{project}.svc.id.goog[{namespace}/{ksa}]"\n'
        for key, ksa in (
            ("GCP_SERVICE_ACCOUNT_EMAIL", BACKEND_SERVICE_ACCOUNT),
            ("GCP_USER_SERVICE_ACCOUNT_EMAIL", USER_SERVICE_ACCOUNT),
        )
    )
    return f"""#!/usr/bin/env bash
# One-time GCP set-up for CMBCluster deploys from {repository} (project {project}).
# Read it, then run it as a project admin. Generated by `make cloud-setup CLOUD=gcp`.
set -euo pipefail
{_ids_note(repository, ids)}PROJECT_NUMBER=$(gcloud projects describe {project} --format 'value(projectNumber)')

# 1. A Workload Identity pool and GitHub provider that admits tokens of this repository only (by its IDs,
#    which survive a rename); google.subject is the token's `sub`, which names the GitHub environment
gcloud iam workload-identity-pools create {pool} --project {project} --location global || true
gcloud iam workload-identity-pools providers create-oidc github --project {project} --location global \\
  --workload-identity-pool {pool} --issuer-uri https://{GITHUB_ISSUER} \\
  --attribute-mapping {mapping} \\
  --attribute-condition "{condition}" || true

# 2. This environment's deploy service account; only the approved job of {steps}
#    may impersonate it (one principal per environment and subject format, never the whole repository)
gcloud iam service-accounts create {account.split("@")[0]} --project {project} || true
{bindings}
# 3. Its permissions: exactly what the tools call, and why
{why}
#   the project-level ones unconditioned; the bucket ones held by an IAM condition to the buckets named
{roles}# Kubernetes rights inside the cluster: `make rbac CLOUD=gcp ARGS="--subject User:{account}"`

# 4. Workload Identity: the app's Kubernetes service accounts act as their Google service accounts,
#    each with its least-privilege grant
{workload}{grants}

# GitHub: set GCP_WORKLOAD_IDENTITY_PROVIDER={provider}
# and GCP_DEPLOY_SERVICE_ACCOUNT={account} in the environment {steps} (no other)
"""


def _gcp_role(project: str, account: str, grant: Any) -> str:
    """A custom role of the deploy service account and its binding, conditioned when the grant says so."""
    permissions = ",".join(grant.permissions)
    condition = f'"title={grant.role_id},expression={grant.condition}"' if grant.condition else "None"
    return (
        f'gcloud iam roles create {grant.role_id} --project {project} --title "{grant.title}" \\\n'
        f"  --permissions {permissions} \\\n"
        f"  || gcloud iam roles update {grant.role_id} --project {project} --permissions {permissions}\n"
        f"gcloud projects add-iam-policy-binding {project} --member serviceAccount:{account} \\\n"
        f"  --role projects/{project}/roles/{grant.role_id} --condition {condition}\n"
    )


def identity_name(cluster: str, environment: str, identity: str) -> str:
    """One deploy identity per environment (`CLUSTER-staging-deploy`), one push identity (`CLUSTER-push`)."""
    return f"{cluster}-push" if identity == "push" else f"{cluster}-{environment}-deploy"


def gcp_account_id(name: str) -> str:
    """A service account ID is 6 to 30 characters (https://cloud.google.com/iam/docs/service-accounts-create)."""
    if not 6 <= len(name) <= 30:
        raise UsageError(f"service account ID {name!r} is not 6-30 characters: give --service-account NAME@PROJECT...")
    return name


def _ids_note(repository: str, ids: tuple[str, str] | None) -> str:
    if ids:
        return ""
    return (
        f'# OWNER_ID and REPO_ID below: run again with --repository-ids "$(gh api repos/{repository} '
        '--jq \'"\\(.owner.id):\\(.id)"\')"\n'
    )


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], dry_run=False)
    parser.add_argument("--repository", default=os.environ.get("GITHUB_REPOSITORY", ""), help="OWNER/REPO")
    parser.add_argument(
        "--repository-ids", default="", metavar="OWNER_ID:REPO_ID", help="numeric IDs (gh api repos/OWNER/REPO)"
    )
    parser.add_argument(
        "--identity", choices=("deploy", "push"), default="deploy", help="the ENVIRONMENT's deploy identity, or push"
    )
    parser.add_argument("--allow-main", action="store_true", help="push identity: trust main too, not only v* tags")
    parser.add_argument("--role-name", default="", help="AWS role (default CLUSTER_NAME-ENVIRONMENT-deploy, -push)")
    parser.add_argument(
        "--service-account", default="", help="GCP service account (default CLUSTER_NAME-ENVIRONMENT-deploy@...)"
    )
    parser.add_argument("--pool", default="", help="GCP Workload Identity pool (default github, github-push)")
    parser.add_argument(
        "--target", default="", help="the fleet target: its GitHub environments <target>-<env> (default: the cloud)"
    )
    args = parser.parse_args(argv)
    if args.target and not TARGET_NAME.match(args.target):
        raise UsageError(f"--target {args.target!r}: use {TARGET_NAME_HELP}")
    if not REPOSITORY.match(args.repository):
        raise UsageError(f"--repository {args.repository!r}: give the GitHub repository as OWNER/REPO")
    ids = None
    if args.repository_ids:
        match = IDS.match(args.repository_ids)
        if not match:
            raise UsageError(f"--repository-ids {args.repository_ids!r}: give OWNER_ID:REPO_ID, two numbers")
        ids = (match.group(1), match.group(2))
    if args.allow_main and args.identity != "push":
        raise UsageError("--allow-main is for --identity push: a deploy identity trusts its environment alone")
    settings = cli.settings_from(args)
    if settings.cloud not in ("aws", "gcp"):
        raise UsageError("cloud-setup is for aws or gcp: a local cluster needs no cloud identity")

    cloud = cloud_for(settings)
    name = identity_name(settings.cluster_name, settings.environment, args.identity)
    if settings.cloud == "aws":
        role = args.role_name or name
        if args.identity == "push":
            script = aws_push_script(
                cloud, args.repository, ids, role, args.allow_main, _ids_note(args.repository, ids)
            )
        else:
            script = aws_script(cloud, args.repository, ids, [settings.environment], role, args.target or "aws")
    else:
        account = args.service_account or f"{gcp_account_id(name)}@{settings['PROJECT_ID']}.iam.gserviceaccount.com"
        if args.identity == "push":
            pool = args.pool or "github-push"
            script = gcp_push_script(
                cloud, args.repository, ids, account, pool, args.allow_main, _ids_note(args.repository, ids)
            )
        else:
            pool = args.pool or "github"
            script = gcp_script(
                cloud, args.repository, ids, [settings.environment], account, pool, args.target or "gcp"
            )
            script += reader_script(settings)
    sys.stdout.write(script)
    return 0


if __name__ == "__main__":
    sys.exit(main())
