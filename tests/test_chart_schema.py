"""values.schema.json and `helm lint --strict`: good values pass on every cloud, bad ones fail at
helm time with a message naming the value; the schema and values.yaml agree with the shim."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_helpers import CHART, CLOUDS, VALUES_DIR, helm_bin, render, shim_values, write_values
from tools.cloud import AwsCloud, GcpCloud
from tools.settings import VARS_BY_NAME

HELMS = ("helm4", "helm3")
BAD = sorted((VALUES_DIR / "bad").glob("*.yaml"))
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def header(path: Path, key: str) -> str:
    found = re.search(rf"^# {key}: (.+)$", path.read_text(), re.MULTILINE)
    assert found, f"{path.name} has no '# {key}:' line"
    return found.group(1)


def lint(helm: str, *values: str) -> subprocess.CompletedProcess[str]:
    cmd = [helm_bin(helm), "lint", "--strict", str(CHART)]
    for v in values:
        cmd += ["--values", v]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_lint_strict_is_clean_for_every_provider(helm: str, cloud: str) -> None:
    for values in (str(VALUES_DIR / "good" / f"{cloud}.yaml"), write_values(shim_values(cloud, "both"))):
        proc = lint(helm, values)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout
        assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("helm", HELMS)
def test_lint_strict_fails_on_bad_values(helm: str) -> None:
    proc = lint(helm, str(VALUES_DIR / "good" / "aws.yaml"), str(VALUES_DIR / "bad" / "aws-account-id-11-digits.yaml"))
    assert proc.returncode != 0
    assert "/global/aws/accountId" in proc.stdout + proc.stderr


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_good_values_files_render(helm: str, cloud: str) -> None:
    r = render(helm, files=(VALUES_DIR / "good" / f"{cloud}.yaml",))
    assert r.rc == 0, r.err
    assert r.one("Deployment", "cmbcluster-backend")


def test_there_are_enough_bad_values_cases() -> None:
    assert len(BAD) >= 15
    for path in BAD:
        assert header(path, "base") in CLOUDS
        assert header(path, "expect")


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_values_fail_at_helm_time_with_a_readable_message(helm: str, path: Path) -> None:
    base = VALUES_DIR / "good" / f"{header(path, 'base')}.yaml"
    r = render(helm, files=(base, path))
    assert r.rc != 0, f"{path.name} rendered without error"
    assert header(path, "expect") in r.err, r.err
    assert "panic" not in r.err


def _unwrap(pattern: str) -> str:
    """`^(X)?$` (X or empty) -> `^X$`."""
    if pattern.startswith("^(") and pattern.endswith(")?$"):
        return "^" + pattern[2:-3] + "$"
    return pattern


def _prop(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    if "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


@pytest.mark.parametrize(
    ("schema_path", "variable"),
    [
        ("global.clusterName", "CLUSTER_NAME"),
        ("global.registry", "REGISTRY_URL"),
        ("global.gcp.projectId", "PROJECT_ID"),
        ("global.gcp.region", "REGION"),
        ("global.aws.accountId", "AWS_ACCOUNT_ID"),
        ("global.aws.region", "AWS_REGION"),
        ("global.aws.roleArn", "AWS_IRSA_ROLE_ARN"),
        ("global.aws.userRoleArn", "AWS_USER_IRSA_ROLE_ARN"),
        ("ingress.aws.certificateArn", "AWS_CERTIFICATE_ARN"),
        ("backend.config.googleClientId", "GOOGLE_CLIENT_ID"),
        ("backend.config.cognitoUserPoolId", "COGNITO_USER_POOL_ID"),
        ("backend.config.cognitoClientId", "COGNITO_CLIENT_ID"),
    ],
)
def test_schema_patterns_are_the_settings_patterns(schema_path: str, variable: str) -> None:
    assert _unwrap(_prop(schema_path)["pattern"]) == VARS_BY_NAME[variable].pattern


def test_image_tag_pattern_is_the_settings_pattern() -> None:
    assert _unwrap(SCHEMA["definitions"]["image"]["properties"]["tag"]["pattern"]) == VARS_BY_NAME["IMAGE_TAG"].pattern


def _objects(node: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append((where, node))
        for key, value in node.items():
            found += _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _objects(value, f"{where}/{i}")
    return found


def test_every_schema_object_rejects_unknown_keys() -> None:
    objects = _objects(SCHEMA)
    assert len(objects) > 20
    for where, node in objects:
        assert node.get("additionalProperties") is False, where


def _paths(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(_paths(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items()))
    return {prefix}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_values_yaml_has_every_key_chart_values_produces(cloud: str) -> None:
    produced = _paths(shim_values(cloud, "both", digests=True))
    declared = _paths(DEFAULTS)
    assert produced <= declared, produced - declared


def test_values_yaml_defaults_are_the_shims() -> None:
    assert DEFAULTS["storage"]["gcp"] == {"driver": GcpCloud.csi_driver, "mountOptions": GcpCloud.mount_options}
    assert DEFAULTS["storage"]["aws"]["driver"] == AwsCloud.csi_driver
    assert DEFAULTS["storage"]["aws"]["mountOptions"] == AwsCloud.mount_options
    assert DEFAULTS["global"]["cloudProvider"] == "gcp"  # the seed's default
    assert DEFAULTS["backend"]["config"]["authProvider"] == "auto"
    # the seed's structure, with both providers' client settings
    assert {
        "cloudProvider",
        "authProvider",
        "googleClientId",
        "cognitoUserPoolId",
        "cognitoClientId",
        "cognitoIssuer",
    } <= set(DEFAULTS["backend"]["config"])


@pytest.mark.parametrize("helm", HELMS)
def test_aws_region_mount_option_is_added_when_missing(helm: str) -> None:
    """A person writing values by hand need not repeat the region in the mount options."""
    r = render(helm, files=(VALUES_DIR / "good" / "aws.yaml",))
    assert r.rc == 0, r.err
    options = json.loads(r.configmap_data()["USER_POD_MOUNT_OPTIONS"])  # the user buckets' PVs
    assert options == [*AwsCloud.mount_options, "region us-east-1"]
    values = shim_values("aws")
    values["storage"]["aws"]["mountOptions"].append("region eu-west-1")
    values["storage"]["aws"]["mountOptions"].remove("region us-east-1")
    r = render(helm, values)
    options = json.loads(r.configmap_data()["USER_POD_MOUNT_OPTIONS"])
    assert [o for o in options if o.startswith("region")] == ["region eu-west-1"]


@pytest.mark.parametrize("helm", HELMS)
def test_default_values_alone_fail_and_say_what_is_missing(helm: str) -> None:
    r = render(helm)
    assert r.rc != 0
    for needed in ("/global/baseDomain", "/global/registry", "/global/gcp/projectId"):
        assert needed in r.err
