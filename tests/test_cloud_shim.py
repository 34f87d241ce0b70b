"""The cloud shim: names, annotations and drivers per cloud, from one place."""

from __future__ import annotations

import pytest

from tests.envfiles import good_env
from tools.cloud import (
    IMAGES,
    check_bucket_name,
    cloud_for,
    database_bucket_name,
    user_bucket_prefix,
)
from tools.settings import load_settings


def cloud(name: str, **overrides: str | None):
    return cloud_for(load_settings(environ=good_env(name, **overrides)))


def test_bucket_names_per_cloud() -> None:
    assert database_bucket_name("gcp", "cmb", project_id="proj-1") == "proj-1-cmb-db"
    assert database_bucket_name("aws", "cmb", account_id="123456789012") == "cmb-db-123456789012"
    assert database_bucket_name("local", "cmb") == "cmb-db"
    assert user_bucket_prefix("cmb") == "cmb-user"
    assert cloud("aws").database_bucket == "cmbtest-db-123456789012"
    assert cloud("gcp").database_bucket == "cmb-project-cmbtest-db"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("cmb-db-123456789012", True),
        ("ab", False),
        ("a" * 64, False),
        ("Upper-db", False),
        ("a--b", False),
        ("-lead", False),
        ("trail-", False),
        ("ok1", True),
    ],
)
def test_bucket_name_check(name: str, valid: bool) -> None:
    assert (check_bucket_name(name) is None) == valid


def test_registries_and_repositories() -> None:
    aws, gcp, local = cloud("aws"), cloud("gcp"), cloud("local")
    assert aws.registry() == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert gcp.registry() == "us-central1-docker.pkg.dev/cmb-project/cmbcluster"
    assert local.registry() == "127.0.0.1:5000"
    assert [i.name for i in aws.images()] == list(IMAGES)
    assert aws.images()[2].repository == "123456789012.dkr.ecr.us-east-1.amazonaws.com/cmbtest-user-env"
    assert cloud("aws", REGISTRY_URL="127.0.0.1:5999").registry() == "127.0.0.1:5999"


def test_every_image_has_a_repository_on_every_cloud() -> None:
    """Defect 10: the user environment image had no ECR repository."""
    for name in ("aws", "gcp", "local"):
        assert {i.name for i in cloud(name).images()} == {"backend", "frontend", "user-env"}


def test_identity_annotations_per_cloud_and_role() -> None:
    """Defect 5: the user service account got only the GCP annotation, on both clouds."""
    aws = cloud("aws", AWS_USER_IRSA_ROLE_ARN="arn:aws:iam::123456789012:role/users")
    assert aws.service_account_annotations("backend") == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cmbtest-backend-irsa"
    }
    assert aws.service_account_annotations("user") == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/users"
    }
    gcp = cloud("gcp")
    assert gcp.service_account_annotations("backend") == {
        "iam.gke.io/gcp-service-account": "cmbtest-sa@cmb-project.iam.gserviceaccount.com"
    }
    assert gcp.service_account_annotations("user") == {  # their own by default, never the backend's
        "iam.gke.io/gcp-service-account": "cmbtest-user@cmb-project.iam.gserviceaccount.com"
    }
    assert cloud("aws").service_account_annotations("user") == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cmbtest-user-irsa"
    }
    assert cloud("local").service_account_annotations("backend") == {}


def test_drivers_and_pod_annotations() -> None:
    aws, gcp, local = cloud("aws"), cloud("gcp"), cloud("local")
    assert (aws.csi_driver, gcp.csi_driver, local.csi_driver) == ("s3.csi.aws.com", "gcsfuse.csi.storage.gke.io", "")
    assert gcp.user_pod_annotations() == {"gke-gcsfuse/volumes": "true"}
    assert aws.user_pod_annotations() == {} and local.user_pod_annotations() == {}


def test_chart_values_follow_the_settings() -> None:
    """Defect 1: the GCP deploy set global.projectId while the templates read global.gcp.projectId."""
    values = cloud("gcp").chart_values()
    assert values["global"]["cloudProvider"] == "gcp"
    assert values["global"]["gcp"]["projectId"] == "cmb-project"
    assert "projectId" not in values["global"]
    assert values["backend"]["config"]["googleClientId"].endswith(".apps.googleusercontent.com")
    aws_values = cloud("aws", auth="cognito").chart_values()
    assert aws_values["global"]["aws"]["accountId"] == "123456789012"
    assert aws_values["backend"]["config"]["cognitoUserPoolId"] == "us-east-1_AbCdEf123"
    assert aws_values["ingress"]["className"] == "alb"


def test_chart_values_never_carry_secrets() -> None:
    env = good_env("aws", auth="both")
    text = repr(cloud_for(load_settings(environ=env)).chart_values())
    for key in (
        "SECRET_KEY",
        "NEXTAUTH_SECRET",
        "FILE_ENCRYPTION_KEY",
        "GOOGLE_CLIENT_SECRET",
        "COGNITO_CLIENT_SECRET",
    ):
        assert env[key] not in text


def test_images_from_build_output_are_pinned() -> None:
    built = {"backend": {"repository": "r/b", "tag": "c-abc", "digest": "sha256:" + "a" * 64}}
    values = cloud("local").chart_values(built)
    assert values["backend"]["image"] == {"repository": "r/b", "tag": "c-abc", "digest": "sha256:" + "a" * 64}
    assert values["frontend"]["image"]["digest"] == ""


def test_ecr_without_credentials_is_one_clear_error(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from tools.errors import ToolError

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ToolError, match="ECR describe cmbtest-backend: no AWS credentials"):
        cloud("aws").ensure_repositories()


def test_ecr_repositories_are_created_once(bed_env: dict[str, str], moto_url: str) -> None:
    import boto3

    aws = cloud("aws", CLUSTER_NAME="ecrshim")
    assert aws.ensure_repositories() == ["ecrshim-backend", "ecrshim-frontend", "ecrshim-user-env"]
    assert aws.ensure_repositories() == []  # a second run converges
    repo = boto3.client("ecr").describe_repositories(repositoryNames=["ecrshim-user-env"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
