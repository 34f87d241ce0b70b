"""ECR: the images' repositories (immutable tags, scanned on push) and docker's login to them.

The pushes themselves are docker's and the registry client's (tools/registry.py); what ECR asks
of them is declared here, beside the login they push with, so the shim alone knows ECR.
"""

from __future__ import annotations

import base64
from typing import Any

from tools.cloud.arns import arn
from tools.cloud.awscall import aws_call
from tools.cloud.base import Cloud
from tools.cloud_permissions import everywhere, need
from tools.errors import ToolError
from tools.report import REPORTER
from tools.settings import IMAGES


def ecr_repositories(cloud: Cloud) -> list[str]:
    """The ARNs of the three images' ECR repositories."""
    return [arn(cloud.settings, "ecr", f"repository/{cloud.repository_name(image)}") for image in IMAGES]


need("aws", "ecr:GetAuthorizationToken", everywhere, "docker login to ECR (granted on * only)",
     ("GetAuthorizationToken",))  # fmt: skip


def login(ecr: Any) -> tuple[str, str]:
    """(user, password) for `docker login` to ECR; the password is registered as a secret."""
    token = aws_call(lambda: ecr.get_authorization_token(), "ECR get_authorization_token")
    data = token["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    REPORTER.register_secrets([password])
    return user, password


need("aws", "ecr:DescribeRepositories", ecr_repositories, "does each image's repository exist",
     ("DescribeRepositories",))  # fmt: skip
need("aws", "ecr:CreateRepository", ecr_repositories, "create a missing repository", ("CreateRepository",))


def ensure_repositories(ecr: Any, names: list[str]) -> list[str]:
    """Create each missing repository (immutable tags, scanned, encrypted); the names created."""
    created = []
    for name in names:
        try:
            aws_call(lambda n=name: ecr.describe_repositories(repositoryNames=[n]), f"ECR describe {name}")
        except ToolError as missing:
            if missing.code != "RepositoryNotFoundException":
                raise
            aws_call(
                lambda n=name: ecr.create_repository(
                    repositoryName=n,
                    imageTagMutability="IMMUTABLE",
                    imageScanningConfiguration={"scanOnPush": True},
                    encryptionConfiguration={"encryptionType": "AES256"},
                ),
                f"ECR create_repository {name}",
            )
            created.append(name)
    return created


# `docker push` (the build_push step, with the login above) uploads the layers and the manifest; the
# registry client's own ECR calls are declared beside them in tools/registry.py
need(
    "aws",
    (
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
    ),
    ecr_repositories,
    "docker push: upload the image layers",
)
