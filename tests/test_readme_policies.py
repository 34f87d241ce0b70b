"""The README's least-privilege grants for the backend's and the user pods' cloud identities are
what the shim says for the example settings (`Cloud.workload_policies()`), word for word, and
each is as narrow as it claims: the user identity reaches the user buckets' name pattern only."""

from __future__ import annotations

import json
import re

import pytest

from tools.cloud import cloud_for
from tools.settings import REPO_ROOT, load_settings

README = REPO_ROOT / "README.md"


def example(cloud: str):
    return cloud_for(load_settings(cloud=cloud, env_file=str(REPO_ROOT / "env" / f"{cloud}.env.example")))


def rendered(cloud: str) -> str:
    """The README block for `cloud`: each identity, then what to apply, in a code block."""
    fence = "json" if cloud == "aws" else "bash"
    parts = [f"{title}:\n\n```{fence}\n{text}\n```" for title, text in example(cloud).workload_policies()]
    return "\n\n".join(parts)


def readme_block(cloud: str) -> str:
    match = re.search(
        rf"<!-- workload-policies:{cloud} -->\n(.*?)\n<!-- /workload-policies:{cloud} -->", README.read_text(), re.S
    )
    assert match, f"README has no workload-policies:{cloud} block"
    return match.group(1)


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_readme_shows_exactly_the_shims_grants(cloud: str) -> None:
    assert readme_block(cloud) == rendered(cloud)


def test_the_aws_user_role_reaches_only_the_user_buckets() -> None:
    c = example("aws")
    (_, backend), (user_title, user) = c.workload_policies()
    assert user_title.startswith(c.settings["AWS_USER_IRSA_ROLE_ARN"])
    resources = {s["Resource"] for s in json.loads(user)["Statement"]}
    pattern = f"arn:aws:s3:::{c.user_bucket_prefix}-*"
    assert resources == {pattern, f"{pattern}/*"}
    assert c.database_bucket not in user
    backend_resources = {s["Resource"] for s in json.loads(backend)["Statement"]}
    assert backend_resources == {f"arn:aws:s3:::{c.database_bucket}", f"arn:aws:s3:::{c.database_bucket}/*", pattern}
    actions = {a for s in json.loads(backend)["Statement"] for a in s["Action"]}
    assert not [a for a in actions if "*" in a or a.startswith(("s3:DeleteBucket", "s3:PutBucketPolicy"))]


def test_the_gcp_user_account_is_conditioned_on_the_user_bucket_prefix() -> None:
    c = example("gcp")
    (_, backend), (_, user) = c.workload_policies()
    condition = f"resource.name.startsWith('projects/_/buckets/{c.user_bucket_prefix}-')"
    assert condition in user and c.database_bucket not in user
    assert f"gs://{c.database_bucket}" in backend and condition in backend
    assert c.settings["GCP_USER_SERVICE_ACCOUNT_EMAIL"] in user and c.settings["GCP_SERVICE_ACCOUNT_EMAIL"] not in user
