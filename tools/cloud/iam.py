"""IAM: the IRSA roles' trust policies checked against the cluster's OIDC issuer, and the workload
roles' permission policies printed for `make cloud-setup`."""

from __future__ import annotations

import fnmatch
import json
import urllib.parse
from typing import Any

from tools.cloud.awscall import aws_call
from tools.cloud.base import BACKEND_SERVICE_ACCOUNT, USER_SERVICE_ACCOUNT, Cloud
from tools.cloud_permissions import need
from tools.settings import Settings

# Which setting names the IAM role of each Kubernetes service account (IRSA)
IRSA_ROLES = (("AWS_IRSA_ROLE_ARN", BACKEND_SERVICE_ACCOUNT), ("AWS_USER_IRSA_ROLE_ARN", USER_SERVICE_ACCOUNT))


def _irsa_roles(cloud: Cloud) -> list[str]:
    return sorted({cloud.settings[key] for key, _ in IRSA_ROLES})


need("aws", "iam:GetRole", _irsa_roles, "preflight reads the IRSA roles' trust policies", ("GetRole",))


def trust_problems(iam: Any, settings: Settings, issuer: str) -> list[str]:
    """Each IRSA role must trust this cluster's OIDC issuer for its service account in NAMESPACE."""
    issuer = issuer.removeprefix("https://")
    if not issuer:
        return [
            f"EKS cluster {settings.cluster_name} has no OIDC issuer: associate an IAM OIDC provider "
            "(IRSA needs it), e.g. `eksctl utils associate-iam-oidc-provider --approve`"
        ]
    namespace = settings.namespace
    wanted: dict[str, list[str]] = {}
    for key, account in IRSA_ROLES:
        wanted.setdefault(settings[key], []).append(account)
    problems = []
    for arn, accounts in wanted.items():
        role = arn.split(":role/", 1)[-1].split("/")[-1]

        def read(role: str = role) -> Any:
            try:
                return iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
            except iam.exceptions.NoSuchEntityException:
                return None

        document = aws_call(read, f"IAM get_role {role}")
        if document is None:
            problems.append(f"IAM role {role} ({arn}) does not exist: create it with a trust policy for IRSA")
            continue
        if isinstance(document, str):  # the API returns it URL-encoded when not decoded by boto3
            document = json.loads(urllib.parse.unquote(document))
        for account in accounts:
            subject = f"system:serviceaccount:{namespace}:{account}"
            if not trust_admits(document, issuer, subject):
                problems.append(
                    f"IAM role {role} does not trust {subject} through {issuer}: add a statement allowing "
                    f"sts:AssumeRoleWithWebIdentity by that provider where StringEquals {issuer}:sub = {subject}"
                )
    return problems


def trust_admits(document: dict[str, Any], issuer: str, subject: str) -> bool:
    """Whether an IAM trust policy lets `subject` (system:serviceaccount:NS:SA) assume the role through `issuer`."""
    statements = document.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        federated = (statement.get("Principal") or {}).get("Federated") or []
        federated = [federated] if isinstance(federated, str) else federated
        if statement.get("Effect") != "Allow" or not any(
            a in ("sts:AssumeRoleWithWebIdentity", "sts:*", "*") for a in actions
        ):
            continue
        if not any(f.endswith(f":oidc-provider/{issuer}") for f in federated):
            continue
        conditions = statement.get("Condition") or {}
        tests = []
        for operator, match in (("StringEquals", str.__eq__), ("StringLike", fnmatch.fnmatchcase)):
            values = (conditions.get(operator) or {}).get(f"{issuer}:sub")
            if values is not None:
                values = [values] if isinstance(values, str) else values
                tests.append(any(match(subject, v) for v in values))
        if not tests or all(tests):  # no :sub condition admits every service account of the cluster
            return True
    return False


def workload_policies(settings: Settings, database_bucket: str, user_bucket_prefix: str) -> list[tuple[str, str]]:
    """(role, its permission policy as JSON) for the backend's and the user pods' IRSA roles."""
    database, users = f"arn:aws:s3:::{database_bucket}", f"arn:aws:s3:::{user_bucket_prefix}-*"
    objects = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]

    def allow(sid: str, actions: list[str], resource: str) -> dict[str, Any]:
        return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}

    making = ["s3:CreateBucket", "s3:ListBucket", "s3:GetBucketLocation", "s3:PutEncryptionConfiguration"]
    making += ["s3:PutBucketPublicAccessBlock", "s3:PutBucketOwnershipControls"]
    backend = [  # Litestream's replica in the database bucket, and making each user's bucket
        allow("DatabaseReplicaBucket", ["s3:ListBucket", "s3:GetBucketLocation"], database),
        allow("DatabaseReplicaObjects", objects, f"{database}/*"),
        allow("UserBuckets", making, users),
    ]
    user = [  # the user buckets' name pattern only: Mountpoint lists, reads, writes and deletes
        allow("UserBuckets", ["s3:ListBucket", "s3:GetBucketLocation"], users),
        allow("UserObjects", objects, f"{users}/*"),
    ]
    return [
        (
            f"{settings['AWS_IRSA_ROLE_ARN']} (the backend)",
            json.dumps({"Version": "2012-10-17", "Statement": backend}, indent=2),
        ),
        (
            f"{settings['AWS_USER_IRSA_ROLE_ARN']} (user pods)",
            json.dumps({"Version": "2012-10-17", "Statement": user}, indent=2),
        ),
    ]
