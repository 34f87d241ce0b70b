"""A fleet offline: the example fleet (two AWS regions and one GCP target) validated and planned, a
target as data in every make step, and collisions between targets refused one line each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.envfiles import good_env, write_env
from tests.make import make
from tools import fleet_deploy, fleet_validate
from tools.fleet import load_fleet
from tools.settings import REPO_ROOT


def run_validate(capfd: pytest.CaptureFixture[str], fleet: Path) -> tuple[int, str, str]:
    code = fleet_validate.main(["--fleet", str(fleet)])
    out, err = capfd.readouterr()
    return code, out, err


def write_fleet(root: Path, waves: dict[str, list[str]], envs: dict[str, dict[str, str]]) -> Path:
    (root / "env").mkdir(exist_ok=True)
    for target, values in envs.items():
        write_env(root / "env" / f"{target}.env", values)
    text = "waves:\n" + "".join(f"  - name: {name}\n    targets: [{', '.join(t)}]\n" for name, t in waves.items())
    (root / "fleet.yaml").write_text(text)
    return root / "fleet.yaml"


def test_the_example_fleet_validates(capfd: pytest.CaptureFixture[str]) -> None:
    fleet = load_fleet(REPO_ROOT / "fleet.yaml")
    assert [w.targets for w in fleet.waves] == [("aws-us",), ("aws-eu", "gcp-eu")]
    code, out, err = run_validate(capfd, REPO_ROOT / "fleet.yaml")
    assert code == 0, out + err
    lines = out.splitlines()
    assert any(
        line.startswith("ok") and "target aws-us: aws production" in line and "(built here)" in line for line in lines
    )
    eu = next(line for line in lines if "target aws-eu:" in line)
    assert "123456789012.dkr.ecr.eu-west-1.amazonaws.com (copied by digest from 123456789012.dkr.ecr.us-east-1" in eu
    assert "europe-west4-docker.pkg.dev/my-gcp-project/cmbcluster (copied by digest" in out
    assert "images: built once for linux/amd64,linux/arm64" in out
    assert "collisions: none among 3 target(s)" in out


@pytest.mark.parametrize("target", ["aws-us", "aws-eu", "gcp-eu"])
def test_make_plan_of_a_target_reads_its_env_file_and_writes_under_its_name(target: str) -> None:
    plan_dir = REPO_ROOT / "out" / "plan" / target
    (plan_dir / "values.yaml").unlink(missing_ok=True)
    proc = make("-s", "plan", f"TARGET={target}", "SETUP=")
    assert proc.returncode == 0, proc.stderr
    assert f"env/{target}.env" in proc.stdout  # its own env file (or its example)
    values = json.loads((plan_dir / "values.yaml").read_text().split("\n", 1)[1])
    expected = {"aws-us": "us.cmbcluster.example.org", "aws-eu": "eu.cmbcluster.example.org"}
    assert values["global"]["baseDomain"] == expected.get(target, "gke.cmbcluster.example.org")


def test_a_target_is_the_unit_of_every_step_and_cloud_stays_the_target_of_its_name() -> None:
    by_target = make("-s", "-n", "helm-deploy", "TARGET=aws-eu", "SETUP=").stdout
    assert "--env-file env/aws-eu.env" in by_target and "--images out/aws-eu/images.json" in by_target
    assert "--cloud" not in by_target  # the cloud is the one its env file names
    by_cloud = make("-s", "-n", "plan", "lint-chart", "CLOUD=aws", "SETUP=").stdout
    assert "--cloud aws --env-file env/aws.env" in by_cloud and "--out out/plan/aws" in by_cloud
    assert "-f out/plan/aws/values.yaml" in by_cloud
    assert "--images out/images.json" in make("-s", "-n", "smoke", "CLOUD=aws", "SETUP=").stdout


def test_collisions_are_refused_one_line_each(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    us = good_env("aws", CLUSTER_NAME="cmb-one", BASE_DOMAIN="cmb.example.org")
    eu = good_env("aws", CLUSTER_NAME="cmb-one", AWS_REGION="eu-west-1", BASE_DOMAIN="eu.cmb.example.org")
    lab = good_env("local", NAMESPACE="lab", BASE_DOMAIN="lab.localtest.me")
    lab2 = good_env("local", NAMESPACE="lab", BASE_DOMAIN="lab2.localtest.me")
    fleet = write_fleet(tmp_path, {"canary": ["aws-us"], "rest": ["aws-eu", "lab", "lab2"]}, {
        "aws-us": us, "aws-eu": eu, "lab": lab, "lab2": lab2
    })  # fmt: skip
    code, out, err = run_validate(capfd, fleet)
    assert code == 1
    errors = [re.sub(r" \(\d+\.\d+s\)$", "", line) for line in out.splitlines() if line.startswith("error")]
    assert errors == [
        "error   targets aws-us and aws-eu both use S3 bucket cmb-one-db-123456789012 (S3 names are global): "
        "give one a CLUSTER_NAME of its own",
        "error   targets aws-us and aws-eu both use S3 bucket cmb-one-user-* (S3 names are global): "
        "give one a CLUSTER_NAME of its own",
        "error   targets aws-us and aws-eu both use S3 bucket cmb-one-user-smoke-123456789012 (S3 names are global): "
        "give one a CLUSTER_NAME of its own",
        # the US wildcard *.cmb.example.org would answer for the EU's host
        "error   targets aws-us and aws-eu both answer on *.cmb.example.org and eu.cmb.example.org: "
        "give each a BASE_DOMAIN of its own",
        "error   targets lab and lab2 are both on local/(current context)/lab: "
        "give one a NAMESPACE (or cluster) of its own",
    ]
    assert "fleet" in err and "5 problem(s)" in err and "Traceback" not in out + err


def test_a_broken_target_is_one_line_and_the_others_are_still_checked(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    good = good_env("gcp", BASE_DOMAIN="gke.example.org")
    fleet = write_fleet(
        tmp_path, {"one": ["gcp-a", "aws-b"]}, {"gcp-a": good, "aws-b": good_env("aws", AWS_REGION=None)}
    )
    code, out, err = run_validate(capfd, fleet)
    assert code == 1
    assert "error   target aws-b: AWS_REGION: required for aws but not set" in out
    assert "1 problem(s)" in err
    assert any(line.startswith("ok") and "target gcp-a: gcp production" in line for line in out.splitlines())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("waves: []\n", "no 'waves:' list"),
        ("waves:\n  - name: a\n    targets: [x1]\n", "target x1: no env file"),
        ("waves:\n  - name: a\n    targets: [Bad_Name]\n", "target 'Bad_Name' in a: use 2-40 lowercase"),
        ("waves:\n  - name: a\n    targets: [lab]\n  - name: b\n    targets: [lab]\n", "target lab is in a and b"),
        ("waves: [\n", "not valid YAML"),
    ],
)
def test_a_bad_fleet_file_is_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    write_fleet(tmp_path, {}, {"lab": good_env("local")})
    (tmp_path / "fleet.yaml").write_text(text)
    code, out, err = run_validate(capfd, tmp_path / "fleet.yaml")
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""  # no target was checked


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--jobs", "0"], "--jobs 0: give 1 or more targets at once"),
        (["--dry-run"], "--dry-run builds nothing to deploy: give the image list to try with --images PATH"),
    ],
)
def test_fleet_deploy_refuses_bad_flags_in_one_line(
    capfd: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code = fleet_deploy.main(["--fleet", str(REPO_ROOT / "fleet.yaml"), *args])
    out, err = capfd.readouterr()
    assert code == 2 and out == "" and expected in err and len(err.strip().splitlines()) == 1


def test_fleet_deploy_touches_nothing_on_a_collision(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Refused before the build: no make runs, no out/<target>/ is written."""
    same = good_env("local", NAMESPACE="lab", BASE_DOMAIN="lab.localtest.me")
    fleet = write_fleet(tmp_path, {"canary": ["lab-one"], "rest": ["lab-two"]}, {"lab-one": same, "lab-two": same})
    code = fleet_deploy.main(["--fleet", str(fleet)])
    out, err = capfd.readouterr()
    assert code == 1
    assert "targets lab-one and lab-two both answer on" in out and "are both on local/(current context)/lab" in out
    assert "fix the problems above; no target was touched" in err
    assert not (REPO_ROOT / "out" / "lab-one").exists() and "build once" not in out
