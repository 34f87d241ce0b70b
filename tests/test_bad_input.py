"""Bad arguments and files get one clear line, a non-zero exit and no traceback, before anything
is touched (no network call, no change). Each case here was found by a review of the CLIs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.envfiles import good_env, write_env
from tools.settings import REPO_ROOT


def run(tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", f"tools.{tool}", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        check=False,
        timeout=120,
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("flag", ["--deadline", "--grace", "--request-timeout", "--endpoint-deadline"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "0"])
def test_smoke_durations_must_be_finite_and_positive(flag: str, value: str) -> None:
    proc = run("smoke_test", "--cloud", "local", flag, value)
    assert proc.returncode == 2
    assert f"argument {flag}: " in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory: run helm_deploy with --revision-file first"),
        ("three\n", "'three' is not a revision: give a number from 1, or none"),
    ],
)
def test_smoke_says_what_is_wrong_with_a_handed_on_revision(tmp_path: Path, content: str | None, message: str) -> None:
    handed = tmp_path / "deployed-revision"
    if content is not None:
        handed.write_text(content)
    proc = run("smoke_test", "--cloud", "local", "--revision-file", str(handed))
    assert proc.returncode == 2
    assert one_line(proc).endswith(f"--revision-file {handed}: {message}")


@pytest.mark.parametrize("tool", ["make_secrets", "helm_deploy", "smoke_test", "migrate_database"])
@pytest.mark.parametrize(("flag", "value"), [("--lock-wait", "soon"), ("--lock-wait", "nan"), ("--lock-duration", "0")])
def test_the_lock_flags_of_every_writer_are_checked_first(tool: str, flag: str, value: str) -> None:
    proc = run(tool, "--cloud", "local", flag, value)
    assert proc.returncode == 2
    assert f"argument {flag}: '{value}' " in proc.stderr and "Traceback" not in proc.stderr


def test_helm_deploy_checks_its_arguments_before_any_network_call(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "local.env", good_env("local"))
    # no images file, no cluster: an argument error must come first, alone
    proc = run("helm_deploy", "--cloud", "local", "--env-file", str(env_file), "--values", str(tmp_path))
    assert proc.returncode == 2
    assert f"--values {tmp_path} is a directory: give a YAML file of chart values" in one_line(proc)
    proc = run("helm_deploy", "--cloud", "local", "--env-file", str(env_file), "--chart", str(tmp_path))
    assert proc.returncode == 2 and "has no Chart.yaml" in one_line(proc)


@pytest.mark.parametrize("tool", ["build_push", "make_secrets", "helm_deploy", "smoke_test"])
def test_no_step_deploys_from_the_tracked_example(tool: str) -> None:
    """A fresh clone's `make deploy-aws` falls back to env/aws.env.example: say `cp`, change nothing."""
    proc = run(tool, "--cloud", "aws", "--env-file", "env/aws.env.example")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "env/aws.env.example is the tracked example: cp env/aws.env.example env/aws.env" in line
    assert "Traceback" not in proc.stderr


def test_validate_on_the_example_says_to_copy_it() -> None:
    proc = run("validate_secrets", "--cloud", "local", "--env-file", "env/local.env.example")
    assert proc.returncode == 1
    assert "cp env/local.env.example env/local.env" in proc.stdout + proc.stderr


def test_a_broken_helm_binary_is_named_with_the_fix(tmp_path: Path) -> None:
    broken = tmp_path / "helm"
    broken.write_bytes(b"\x7fELF\x02\x01\x01\x00not-a-real-binary")  # as a binary for another CPU fails
    broken.chmod(0o755)
    env_file = write_env(tmp_path / "aws.env", good_env("aws"))
    proc = run("plan", "--cloud", "aws", "--env-file", str(env_file), env={"HELM_BIN": str(broken)})
    assert proc.returncode == 1
    (line,) = [line for line in proc.stderr.splitlines() if "does not run" in line]
    assert f"{broken} does not run (" in line and "point HELM_BIN at a working helm" in line
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr


def test_build_push_runs_the_configuration_rules_before_touching_a_registry(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "aws.env", good_env("aws", SECRET_KEY="too-short"))
    proc = run("build_push", "--cloud", "aws", "--env-file", str(env_file))
    assert proc.returncode == 1
    assert "SECRET_KEY" in proc.stderr and "nothing was changed" in proc.stderr
    assert "ecr" not in proc.stderr.lower().replace("secret", "") and "Traceback" not in proc.stderr


def test_build_push_needs_no_secret_it_does_not_use(tmp_path: Path) -> None:
    """The CI job that builds gets no application secret (least privilege): the rules judge the rest."""
    from tests.fixtures.apps import stage_apps

    contexts = {f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in stage_apps(tmp_path / "apps").items()}
    values = good_env("local", GOOGLE_CLIENT_SECRET=None, SECRET_KEY=None, NEXTAUTH_SECRET=None, **contexts)
    env_file = write_env(tmp_path / "local.env", {**values, "REGISTRY_URL": "127.0.0.1:9"})
    proc = run("build_push", "--cloud", "local", "--env-file", str(env_file), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would make sure" in proc.stdout
    weak = write_env(tmp_path / "weak.env", {**values, "REGISTRY_URL": "127.0.0.1:9", "NEXTAUTH_SECRET": "short"})
    proc = run("build_push", "--cloud", "local", "--env-file", str(weak), "--dry-run")
    assert proc.returncode == 1 and "NEXTAUTH_SECRET" in proc.stderr  # a secret it was given must be strong


@pytest.mark.parametrize("tool", ["dns", "certs"])
@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_dns_and_certs_timeouts_must_be_finite_and_positive(tool: str, value: str) -> None:
    proc = run(tool, "--cloud", "aws", "--timeout", value)
    assert proc.returncode == 2
    assert one_line(proc) == "error   --timeout must be a positive number of seconds"


def test_a_dns_zone_that_does_not_hold_base_domain_is_refused_before_any_call(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "aws.env", good_env("aws", DNS_ZONE="example.net"))
    proc = run("dns", "--cloud", "aws", "--env-file", str(env_file), env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 1
    assert "DNS_ZONE: example.net does not hold BASE_DOMAIN cmb.example.org: use its zone, or unset it" in proc.stderr
    assert "nothing was changed" in proc.stderr and "Traceback" not in proc.stderr


def test_helm_deploy_refuses_the_gce_ingress_class_before_any_cluster_call(tmp_path: Path) -> None:
    """Issue 18, defect 5: under gce each user environment's Ingress got a load balancer of its own, while
    `make dns` points *.BASE_DOMAIN at the release's. No cluster is reachable here: the refusal comes first."""
    env_file = write_env(tmp_path / "gcp.env", good_env("gcp", INGRESS_CLASS="gce"))
    proc = run("helm_deploy", "--cloud", "gcp", "--env-file", str(env_file), env={"KUBECONFIG": str(tmp_path / "none")})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    first, summary = [line for line in proc.stderr.splitlines() if line.strip()]
    assert first.startswith("error") and "INGRESS_CLASS: gce makes a load balancer per Ingress" in first
    assert "set INGRESS_CLASS=nginx" in first and "nothing was changed" in summary
