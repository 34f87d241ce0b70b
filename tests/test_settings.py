"""Settings: precedence, defaults, and the example files documenting every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.envfiles import good_env, write_env
from tools.settings import CLOUDS, REPO_ROOT, VARS, ConfigError, load_settings


def test_process_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "aws.env", good_env("aws", CLUSTER_NAME="fromfile"))
    settings = load_settings(env_file=env_file, environ={"CLUSTER_NAME": "fromenv"})
    assert settings.cluster_name == "fromenv"
    assert settings.cloud == "aws"


def test_empty_process_value_does_not_hide_the_file_value(tmp_path: Path) -> None:
    """GitHub passes an unset secret as an empty string."""
    env_file = write_env(tmp_path / "aws.env", good_env("aws"))
    settings = load_settings(env_file=env_file, environ={"SECRET_KEY": ""})
    assert settings["SECRET_KEY"] == good_env("aws")["SECRET_KEY"]


def test_defaults_follow_other_values() -> None:
    settings = load_settings(environ=good_env("aws", CLUSTER_NAME=None, EKS_CLUSTER_NAME="eks-one"))
    assert settings.cluster_name == "eks-one"
    assert settings["API_URL"] == "https://api.cmb.example.org"
    assert settings["FRONTEND_URL"] == "https://cmb.example.org"
    assert settings["AWS_IRSA_ROLE_ARN"] == "arn:aws:iam::123456789012:role/eks-one-backend-irsa"
    assert (
        settings["AWS_USER_IRSA_ROLE_ARN"] == "arn:aws:iam::123456789012:role/eks-one-user-irsa"
    )  # never the backend's
    assert settings.namespace == "cmbcluster" and settings.release == "cmbcluster"


def test_another_clouds_settings_are_ignored() -> None:
    settings = load_settings(environ=good_env("gcp", AWS_ACCOUNT_ID="not-checked-on-gcp"))
    assert settings["AWS_ACCOUNT_ID"] == ""
    assert settings["GCP_SERVICE_ACCOUNT_EMAIL"] == "cmbtest-sa@cmb-project.iam.gserviceaccount.com"


def test_settings_are_frozen() -> None:
    settings = load_settings(environ=good_env("local"))
    with pytest.raises(AttributeError):
        settings.cloud = "aws"  # type: ignore[misc]


def test_every_problem_is_reported_at_once() -> None:
    env = good_env("aws", AWS_ACCOUNT_ID="12345", AWS_REGION="nowhere", MAX_USER_PODS="many", BASE_DOMAIN=None)
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    named = {p.split(":", 1)[0] for p in err.value.problems}
    assert named == {"AWS_ACCOUNT_ID", "AWS_REGION", "MAX_USER_PODS", "BASE_DOMAIN"}


def test_auth_auto_offers_every_complete_provider() -> None:
    assert load_settings(environ=good_env("aws", auth="both")).auth_providers() == ("google", "cognito")
    assert load_settings(environ=good_env("aws", auth="cognito", AUTH_PROVIDER="auto")).auth_providers() == ("cognito",)
    assert load_settings(environ=good_env("gcp", auth="google")).auth_providers() == ("google",)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_example_file_documents_every_variable_of_its_cloud(cloud: str) -> None:
    text = (REPO_ROOT / "env" / f"{cloud}.env.example").read_text()
    mentioned = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    expected = {v.name for v in VARS if cloud in v.clouds}
    # Variables with a fixed meaning elsewhere are not needed in every example.
    optional = {"EKS_CLUSTER_NAME"} if cloud != "aws" else set()
    assert expected - optional - mentioned == set(), "undocumented variables"
    assert mentioned - {v.name for v in VARS} == set(), "example names a variable the toolkit does not read"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_example_files_parse(cloud: str) -> None:
    settings = load_settings(env_file=REPO_ROOT / "env" / f"{cloud}.env.example")
    assert settings.cloud == cloud
