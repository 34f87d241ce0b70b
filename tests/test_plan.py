"""make plan: validate, tag, render; no cloud access; fails only when it cannot render."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.envfiles import good_env, secret_values, write_env
from tools import plan
from tools.settings import REPO_ROOT


def run_plan(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = plan.main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.parametrize("cloud", ["aws", "gcp", "local"])
def test_plan_renders_each_cloud(tmp_path: Path, capfd: pytest.CaptureFixture[str], cloud: str) -> None:
    values = good_env(cloud, auth="both")
    out_dir = tmp_path / "plan"
    code, out, err = run_plan(capfd, "--env-file", str(write_env(tmp_path / "e.env", values)), "--out", str(out_dir))
    assert code == 0, err
    docs = list(yaml.safe_load_all((out_dir / "manifests.yaml").read_text()))
    kinds = {d["kind"] for d in docs if d}
    assert {"Deployment", "Service", "ServiceAccount", "Ingress"} <= kinds
    chart_values = yaml.safe_load((out_dir / "values.yaml").read_text())
    assert chart_values["global"]["cloudProvider"] == cloud
    assert "auth             auto -> google and cognito" in out
    assert "validation       0 error(s)" in out
    for secret in secret_values(values):
        assert secret not in out + err + (out_dir / "manifests.yaml").read_text()


def test_plan_values_keep_account_id_a_string(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    values = good_env("aws", AWS_ACCOUNT_ID="012345678901")
    code, _, err = run_plan(capfd, "--env-file", str(write_env(tmp_path / "e.env", values)), "--out", str(tmp_path))
    assert code == 0, err
    text = (tmp_path / "values.yaml").read_text()
    assert yaml.safe_load(text)["global"]["aws"]["accountId"] == "012345678901"
    helm = Path(sys.executable).parent / "helm"
    subprocess.run(
        [str(helm), "lint", "--strict", str(REPO_ROOT / "helm"), "-f", str(tmp_path / "values.yaml")],
        check=True,
        capture_output=True,
    )


def test_plan_reports_findings_but_still_renders(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    example = REPO_ROOT / "env" / "aws.env.example"
    code, out, err = run_plan(capfd, "--cloud", "aws", "--env-file", str(example), "--out", str(tmp_path))
    assert code == 0
    assert (tmp_path / "manifests.yaml").exists()
    assert "error   SECRET_KEY: is a known placeholder" in err
    assert "a deploy would refuse" in out


def test_plan_refuses_an_unusable_configuration(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    env_file = write_env(tmp_path / "bad.env", good_env("aws", AWS_ACCOUNT_ID="abc"))
    code, _, err = run_plan(capfd, "--env-file", str(env_file), "--out", str(tmp_path / "p"))
    assert code == 1
    assert "AWS_ACCOUNT_ID" in err and not (tmp_path / "p").exists()


def test_plan_fails_clearly_when_it_cannot_render(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELM_BIN", "no-such-helm")
    env_file = write_env(tmp_path / "e.env", good_env("local"))
    code, _, err = run_plan(capfd, "--env-file", str(env_file), "--out", str(tmp_path / "p"))
    assert code == 1
    assert "HELM_BIN=no-such-helm is not an executable" in err and "Traceback" not in err


def test_plan_writes_the_job_summary(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    env_file = write_env(tmp_path / "e.env", good_env("gcp"))
    assert run_plan(capfd, "--env-file", str(env_file), "--out", str(tmp_path / "p"))[0] == 0
    text = summary.read_text()
    assert (
        "### Plan for gcp" in text
        and "| database backup | gs://cmb-project-cmbtest-db/litestream/cmbcluster.db |" in text
    )


def test_make_plan_needs_no_cloud_credentials(tmp_path: Path) -> None:
    """The README's first command, with every cloud credential variable removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_"))}
    env["HOME"] = str(tmp_path)  # no ~/.aws, no ~/.config/gcloud
    proc = subprocess.run(
        ["make", "-s", "plan", "CLOUD=aws"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "render chart:" in proc.stdout
    assert json.loads((REPO_ROOT / "out/plan/aws/values.yaml").read_text().split("\n", 1)[1])["global"]["aws"]


def test_plan_tags_images_by_content_like_build_push(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures.apps import stage_apps
    from tools.content_tag import content_tag

    contexts = stage_apps(tmp_path / "apps")
    overrides = {f"{n.upper().replace('-', '_')}_CONTEXT": str(c) for n, c in contexts.items()}
    env_file = write_env(tmp_path / "e.env", good_env("local", **overrides))
    code, out, err = run_plan(capfd, "--env-file", str(env_file), "--out", str(tmp_path / "p"))
    assert code == 0, err
    expected = content_tag(contexts["backend"], contexts["backend"] / "Dockerfile")
    assert expected.startswith("c-")
    assert f"127.0.0.1:5000/cmbtest-backend:{expected}" in out
    assert yaml.safe_load((tmp_path / "p" / "values.yaml").read_text())["backend"]["image"]["tag"] == expected


def test_plan_shows_the_platforms_and_their_content_tags(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures.apps import stage_apps
    from tools.content_tag import content_tag

    contexts = stage_apps(tmp_path / "apps")
    overrides = {f"{n.upper().replace('-', '_')}_CONTEXT": str(c) for n, c in contexts.items()}
    two = ("linux/amd64", "linux/arm64")
    env_file = write_env(tmp_path / "e.env", good_env("local", IMAGE_PLATFORMS=",".join(two), **overrides))
    code, out, err = run_plan(capfd, "--env-file", str(env_file), "--out", str(tmp_path / "p"))
    assert code == 0, err
    expected = content_tag(contexts["backend"], contexts["backend"] / "Dockerfile", two)
    assert expected != content_tag(contexts["backend"], contexts["backend"] / "Dockerfile")
    assert f"127.0.0.1:5000/cmbtest-backend:{expected}" in out
    assert "for linux/amd64,linux/arm64" in out and "image platforms  linux/amd64,linux/arm64" in out, out


def test_plan_refuses_a_platform_that_is_not_one(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    env_file = write_env(tmp_path / "e.env", good_env("local", IMAGE_PLATFORMS="linux/amd64,arm64"))
    code, out, err = run_plan(capfd, "--env-file", str(env_file), "--out", str(tmp_path / "p"))
    assert code != 0
    (line,) = [line for line in (out + err).splitlines() if "IMAGE_PLATFORMS" in line]
    assert "linux/<arch>[/<variant>], e.g. linux/amd64,linux/arm64" in line, line
    assert "Traceback" not in out + err
