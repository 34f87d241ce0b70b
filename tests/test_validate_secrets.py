"""validate_secrets: every rule, all findings at once, one line each, never a secret value."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envfiles import canary, good_env, secret_values, write_env
from tools import validate_secrets
from tools.settings import REPO_ROOT

SHORT = "Sh0rtButRand0m!"  # 15 characters, strong-looking
# 64 characters of two symbols with no repeating pattern
LOW_ENTROPY = "".join("01"[b & 1] for b in hashlib.sha512(b"low").digest())


def fernet(n_bytes: int) -> str:
    return base64.urlsafe_b64encode(bytes(range(n_bytes))).decode()


# (id, cloud, overrides, exit code, variable named in the message, a word of the fix)
BAD_VALUES: list[tuple[str, str, dict[str, str | None], int, str, str]] = [
    ("unknown-cloud-in-file", "aws", {"CLOUD_PROVIDER": "azure"}, 2, "CLOUD_PROVIDER", "use one of"),
    ("unknown-auth-provider", "aws", {"AUTH_PROVIDER": "github"}, 1, "AUTH_PROVIDER", "use one of"),
    ("account-id-11-digits", "aws", {"AWS_ACCOUNT_ID": "12345678901"}, 1, "AWS_ACCOUNT_ID", "12 digits"),
    ("account-id-letters", "aws", {"AWS_ACCOUNT_ID": "12345678901a"}, 1, "AWS_ACCOUNT_ID", "12 digits"),
    ("account-id-missing", "aws", {"AWS_ACCOUNT_ID": None}, 1, "AWS_ACCOUNT_ID", "set AWS_ACCOUNT_ID"),
    ("aws-region-malformed", "aws", {"AWS_REGION": "virginia"}, 1, "AWS_REGION", "us-east-1"),
    ("aws-region-missing", "aws", {"AWS_REGION": None}, 1, "AWS_REGION", "set AWS_REGION"),
    ("project-missing", "gcp", {"PROJECT_ID": None}, 1, "PROJECT_ID", "set PROJECT_ID"),
    ("project-uppercase", "gcp", {"PROJECT_ID": "My_Project"}, 1, "PROJECT_ID", "lowercase"),
    (
        "aws-user-pods-with-the-backends-role",
        "aws",
        {"AWS_USER_IRSA_ROLE_ARN": "arn:aws:iam::123456789012:role/cmbtest-backend-irsa"},
        1,
        "AWS_USER_IRSA_ROLE_ARN",
        "create a separate identity",
    ),
    (
        "gcp-user-pods-with-the-backends-account",
        "gcp",
        {"GCP_USER_SERVICE_ACCOUNT_EMAIL": "cmbtest-sa@cmb-project.iam.gserviceaccount.com"},
        1,
        "GCP_USER_SERVICE_ACCOUNT_EMAIL",
        "reaches only the user buckets",
    ),
    ("gcp-region-missing", "gcp", {"REGION": None}, 1, "REGION", "set REGION"),
    ("base-domain-missing", "local", {"BASE_DOMAIN": None}, 1, "BASE_DOMAIN", "set BASE_DOMAIN"),
    ("base-domain-with-scheme", "aws", {"BASE_DOMAIN": "https://cmb.example.org"}, 1, "BASE_DOMAIN", "without"),
    ("api-url-http", "aws", {"API_URL": "http://api.cmb.example.org"}, 1, "API_URL", "https://"),
    ("frontend-url-http", "gcp", {"FRONTEND_URL": "http://cmb.example.org"}, 1, "FRONTEND_URL", "https://"),
    ("api-url-not-a-url", "aws", {"API_URL": "api.cmb.example.org"}, 1, "API_URL", "https://"),
    (
        "secret-key-seed-placeholder",
        "aws",
        {"SECRET_KEY": "dev-secret-key-change-in-production"},
        1,
        "SECRET_KEY",
        "placeholder",
    ),
    ("secret-key-short", "aws", {"SECRET_KEY": SHORT}, 1, "SECRET_KEY", "32"),
    ("secret-key-one-char", "gcp", {"SECRET_KEY": "a" * 48}, 1, "SECRET_KEY", "single character"),
    ("secret-key-pattern", "gcp", {"SECRET_KEY": "abc123" * 8}, 1, "SECRET_KEY", "pattern"),
    ("secret-key-low-entropy", "local", {"SECRET_KEY": LOW_ENTROPY}, 1, "SECRET_KEY", "entropy"),
    ("secret-key-generic-placeholder", "aws", {"SECRET_KEY": "changeme"}, 1, "SECRET_KEY", "placeholder"),
    (
        "nextauth-seed-placeholder",
        "aws",
        {"NEXTAUTH_SECRET": "your-secret-key-here-replace-in-production"},
        1,
        "NEXTAUTH_SECRET",
        "placeholder",
    ),
    ("nextauth-short", "gcp", {"NEXTAUTH_SECRET": SHORT}, 1, "NEXTAUTH_SECRET", "32"),
    (
        "fernet-not-base64",
        "aws",
        {"FILE_ENCRYPTION_KEY": "not base64 at all, really not!!" * 2},
        1,
        "FILE_ENCRYPTION_KEY",
        "Fernet",
    ),
    ("fernet-16-bytes", "aws", {"FILE_ENCRYPTION_KEY": fernet(16)}, 1, "FILE_ENCRYPTION_KEY", "32 bytes"),
    ("fernet-placeholder", "gcp", {"FILE_ENCRYPTION_KEY": "change-me"}, 1, "FILE_ENCRYPTION_KEY", "generated"),
    (
        "google-secret-placeholder",
        "aws",
        {"AUTH_PROVIDER": "google", "GOOGLE_CLIENT_SECRET": "your-client-secret"},
        1,
        "GOOGLE_CLIENT_SECRET",
        "provider",
    ),
    ("google-secret-short", "gcp", {"GOOGLE_CLIENT_SECRET": "Ab3dE"}, 1, "GOOGLE_CLIENT_SECRET", "provider"),
    (
        "google-id-missing",
        "gcp",
        {"AUTH_PROVIDER": "google", "GOOGLE_CLIENT_ID": None},
        1,
        "GOOGLE_CLIENT_ID",
        "set GOOGLE_CLIENT_ID",
    ),
    (
        "google-id-malformed",
        "gcp",
        {"GOOGLE_CLIENT_ID": "my-client"},
        1,
        "GOOGLE_CLIENT_ID",
        "apps.googleusercontent.com",
    ),
    (
        "cognito-issuer-missing",
        "aws",
        {
            "AUTH_PROVIDER": "cognito",
            "COGNITO_USER_POOL_ID": "us-east-1_AbCdEf123",
            "COGNITO_CLIENT_ID": "1a2b3c4d5e6f7g8h9i0jklmnop",
            "COGNITO_CLIENT_SECRET": canary("COG"),
        },
        1,
        "COGNITO_ISSUER",
        "set COGNITO_ISSUER",
    ),
    (
        "auto-nothing-configured",
        "aws",
        {"AUTH_PROVIDER": "auto", "GOOGLE_CLIENT_ID": None, "GOOGLE_CLIENT_SECRET": None},
        1,
        "AUTH_PROVIDER",
        "needs",
    ),
    (
        "auto-only-partial-cognito",
        "aws",
        {
            "AUTH_PROVIDER": "auto",
            "GOOGLE_CLIENT_ID": None,
            "GOOGLE_CLIENT_SECRET": None,
            "COGNITO_USER_POOL_ID": "us-east-1_AbCdEf123",
        },
        1,
        "AUTH_PROVIDER",
        "COGNITO_CLIENT_SECRET",
    ),
    (
        "cognito-issuer-other-pool",
        "aws",
        {
            "AUTH_PROVIDER": "cognito",
            "COGNITO_USER_POOL_ID": "us-east-1_AbCdEf123",
            "COGNITO_CLIENT_ID": "1a2b3c4d5e6f7g8h9i0jklmnop",
            "COGNITO_CLIENT_SECRET": canary("COG"),
            "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other",
        },
        1,
        "COGNITO_ISSUER",
        "use https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123",
    ),
    (
        "cognito-issuer-http",
        "aws",
        {
            "AUTH_PROVIDER": "cognito",
            "COGNITO_USER_POOL_ID": "us-east-1_AbCdEf123",
            "COGNITO_CLIENT_ID": "1a2b3c4d5e6f7g8h9i0jklmnop",
            "COGNITO_CLIENT_SECRET": canary("COG"),
            "COGNITO_ISSUER": "http://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123",
        },
        1,
        "COGNITO_ISSUER",
        "https://",
    ),
    ("dev-mode-in-production", "aws", {"DEV_MODE": "true"}, 1, "DEV_MODE", "DEV_MODE=false"),
    ("debug-in-production", "gcp", {"DEBUG": "true"}, 1, "DEBUG", "DEBUG=false"),
    ("tls-disabled", "aws", {"TLS_ENABLED": "false"}, 1, "TLS_ENABLED", "must be true"),
    ("tls-not-boolean", "aws", {"TLS_ENABLED": "yes"}, 1, "TLS_ENABLED", "true or false"),
    ("rate-limit-off-in-production", "aws", {"RATE_LIMIT_ENABLED": "false"}, 1, "RATE_LIMIT_ENABLED", "=true"),
    ("token-hours-not-number", "aws", {"TOKEN_EXPIRE_HOURS": "eight"}, 1, "TOKEN_EXPIRE_HOURS", "whole number"),
    ("max-user-pods-zero", "aws", {"MAX_USER_PODS": "0"}, 1, "MAX_USER_PODS", "positive"),
    ("jwt-none", "aws", {"JWT_ALGORITHM": "none"}, 1, "JWT_ALGORITHM", "HS256"),
    ("environment-unknown", "aws", {"ENVIRONMENT": "prod"}, 1, "ENVIRONMENT", "production"),
    ("eks-name-conflict", "aws", {"EKS_CLUSTER_NAME": "other-eks"}, 1, "EKS_CLUSTER_NAME", "set only one"),
    ("cluster-name-underscore", "aws", {"CLUSTER_NAME": "CMB_Cluster"}, 1, "CLUSTER_NAME", "lowercase"),
    ("letsencrypt-missing-on-gcp", "gcp", {"LETSENCRYPT_EMAIL": None}, 1, "LETSENCRYPT_EMAIL", "set it"),
    ("letsencrypt-malformed", "gcp", {"LETSENCRYPT_EMAIL": "ops-at-example"}, 1, "LETSENCRYPT_EMAIL", "@"),
    ("irsa-arn-malformed", "aws", {"AWS_IRSA_ROLE_ARN": "my-role"}, 1, "AWS_IRSA_ROLE_ARN", "arn:aws:iam::"),
    (
        "old-domain-name",
        "aws",
        {"DOMAIN": "cmb.example.org", "BASE_DOMAIN": None},
        1,
        "DOMAIN",
        "rename DOMAIN to BASE_DOMAIN",
    ),
    ("namespace-invalid", "local", {"NAMESPACE": "CMB Cluster"}, 1, "NAMESPACE", "DNS label"),
    ("registry-with-scheme", "local", {"REGISTRY_URL": "http://127.0.0.1:5000"}, 1, "REGISTRY_URL", "no scheme"),
    (
        "bucket-name-too-long",
        "gcp",
        {"PROJECT_ID": "a-very-long-project-id-29chars", "CLUSTER_NAME": "and-a-very-long-cluster-name-of-40-chars"},
        1,
        "CLUSTER_NAME",
        "shorten",
    ),
    ("ingress-class-unknown", "gcp", {"INGRESS_CLASS": "traefik"}, 1, "INGRESS_CLASS", "nginx"),
    # issue 18, defect 5: GKE makes a load balancer per Ingress, one for each user environment
    ("ingress-class-gce", "gcp", {"INGRESS_CLASS": "gce"}, 1, "INGRESS_CLASS", "set INGRESS_CLASS=nginx"),
    ("acm-arn-malformed", "aws", {"AWS_CERTIFICATE_ARN": "my-cert"}, 1, "AWS_CERTIFICATE_ARN", "ACM"),
]


def run_cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = validate_secrets.main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def assert_no_secrets(text: str, values: dict[str, str | None]) -> None:
    for secret in secret_values({k: v for k, v in values.items() if v}):
        assert secret not in text, "a secret value was printed"


@pytest.mark.parametrize(
    ("cloud", "overrides", "code", "variable", "fix"),
    [case[1:] for case in BAD_VALUES],
    ids=[case[0] for case in BAD_VALUES],
)
def test_bad_configuration_gives_one_clear_line(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    cloud: str,
    overrides: dict[str, str | None],
    code: int,
    variable: str,
    fix: str,
) -> None:
    values = good_env(cloud, **overrides)
    env_file = write_env(tmp_path / f"{cloud}.env", {k: v for k, v in values.items() if v is not None})
    exit_code, out, err = run_cli(capfd, "--env-file", str(env_file))
    assert exit_code == code, err
    lines = [line for line in err.splitlines() if line.startswith("error") and f"{variable}:" in line]
    assert lines, f"no error line names {variable}: {err}"
    assert any(fix in line for line in lines), f"no line says how to fix it ({fix!r}): {lines}"
    assert "Traceback" not in out + err
    assert_no_secrets(out + err, values)


def test_at_least_forty_distinct_bad_cases() -> None:
    assert len({case[0] for case in BAD_VALUES}) == len(BAD_VALUES) >= 40


FILE_CASES = [
    ("missing-file", lambda d: d / "absent.env", 2, "does not exist"),
    ("directory", lambda d: d, 2, "is a directory"),
    ("binary-file", lambda d: _write_bytes(d / "bin.env", b"\xff\xfe\x00KEY=1\n"), 2, "not UTF-8"),
    (
        "malformed-line",
        lambda d: _write_bytes(d / "bad.env", b"CLOUD_PROVIDER=aws\nthis is not a line\n"),
        2,
        "bad.env:2: not a KEY=VALUE line",
    ),
    (
        "unterminated-quote",
        lambda d: _write_bytes(d / "q.env", b'SECRET_KEY="abc\nCLOUD_PROVIDER=aws\n'),
        2,
        "not a KEY=VALUE line",
    ),
    (
        "key-without-equals",
        lambda d: _write_bytes(d / "k.env", b"CLOUD_PROVIDER=aws\nSECRET_KEY\n"),
        2,
        "k.env:2: a line with no '='",
    ),
    ("symlink-loop", lambda d: _symlink(d / "loop.env", d / "loop.env"), 2, "loop.env is a symlink loop"),
    ("dangling-symlink", lambda d: _symlink(d / "gone.env", d / "nowhere.env"), 2, "nowhere.env, which does not exist"),
]


def _symlink(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("make", "code", "message"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_unusable_env_file(tmp_path: Path, capfd: pytest.CaptureFixture[str], make, code: int, message: str) -> None:
    exit_code, out, err = run_cli(capfd, "--cloud", "aws", "--env-file", str(make(tmp_path)))
    assert exit_code == code
    assert message in err
    assert "Traceback" not in out + err


def test_conflicting_cloud_flag(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    env_file = write_env(tmp_path / "gcp.env", good_env("gcp"))
    code, _, err = run_cli(capfd, "--cloud", "aws", "--env-file", str(env_file))
    assert code == 2 and "CLOUD_PROVIDER: the env file says 'gcp' but --cloud says 'aws'" in err


def test_no_cloud_at_all(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    env_file = write_env(tmp_path / "x.env", good_env("aws", CLOUD_PROVIDER=None))
    code, _, err = run_cli(capfd, "--env-file", str(env_file))
    assert code == 2 and "pass --cloud aws|gcp|local" in err


def test_unknown_cloud_flag_is_a_usage_error(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        validate_secrets.main(["--cloud", "azure"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'azure'" in capfd.readouterr().err


@pytest.mark.parametrize("cloud", ["aws", "gcp", "local"])
@pytest.mark.parametrize("auth", ["google", "cognito", "both"])
def test_good_configuration_passes(tmp_path: Path, capfd: pytest.CaptureFixture[str], cloud: str, auth: str) -> None:
    values = good_env(cloud, auth=auth)
    code, out, err = run_cli(capfd, "--env-file", str(write_env(tmp_path / "good.env", values)))
    assert code == 0, err
    assert f"is valid for {cloud}" in out
    expected = {"google": "google", "cognito": "cognito", "both": "google and cognito"}[auth]
    assert f"-> {expected}" in out
    assert_no_secrets(out + err, values)


def test_all_findings_at_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    values = good_env("aws", SECRET_KEY="changeme", NEXTAUTH_SECRET=SHORT, DEV_MODE="true", API_URL="http://a.b.org")
    code, out, err = run_cli(capfd, "--env-file", str(write_env(tmp_path / "a.env", values)))
    assert code == 1
    for variable in ("SECRET_KEY", "NEXTAUTH_SECRET", "DEV_MODE", "API_URL"):
        assert f"{variable}:" in err
    assert "4 error(s)" in out


def test_dev_switches_are_warnings_outside_production(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    values = good_env("aws", ENVIRONMENT="staging", DEV_MODE="true", DEBUG="true")
    code, out, _ = run_cli(capfd, "--env-file", str(write_env(tmp_path / "s.env", values)))
    assert code == 0
    assert "warning DEV_MODE: is true in staging" in out and "warning DEBUG:" in out


def test_missing_app_secrets_are_left_to_make_secrets(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    values = good_env("aws", SECRET_KEY=None, NEXTAUTH_SECRET=None, FILE_ENCRYPTION_KEY=None)
    code, out, _ = run_cli(capfd, "--env-file", str(write_env(tmp_path / "g.env", values)))
    assert code == 0
    assert out.count("make_secrets generates it once") == 3


def test_auto_ignores_a_partial_second_provider_with_a_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    values = good_env("gcp", AUTH_PROVIDER="auto", COGNITO_CLIENT_ID="1a2b3c4d5e6f7g8h9i0jklmnop")
    code, out, _ = run_cli(capfd, "--env-file", str(write_env(tmp_path / "p.env", values)))
    assert code == 0
    assert "cognito is partly configured" in out and "auto chose google" in out


def test_secret_copied_from_an_example_file_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from tools.settings import REPO_ROOT, read_env_file

    copied = read_env_file(REPO_ROOT / "env" / "aws.env.example")["COGNITO_CLIENT_SECRET"]
    values = good_env("aws", auth="cognito", COGNITO_CLIENT_SECRET=copied)
    code, _, err = run_cli(capfd, "--env-file", str(write_env(tmp_path / "c.env", values)))
    assert code == 1 and "COGNITO_CLIENT_SECRET:" in err


@pytest.mark.parametrize("cloud", ["aws", "gcp", "local"])
def test_example_files_fail_listing_their_placeholders(capfd: pytest.CaptureFixture[str], cloud: str) -> None:
    code, _, err = run_cli(capfd, "--cloud", cloud, "--env-file", str(REPO_ROOT / "env" / f"{cloud}.env.example"))
    assert code == 1
    for variable in ("SECRET_KEY", "NEXTAUTH_SECRET", "FILE_ENCRYPTION_KEY"):
        assert f"error   {variable}:" in err


def test_github_actions_masks_first_and_annotates(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    values = good_env("aws", NEXTAUTH_SECRET=SHORT + "Q", DEBUG="true")
    code, out, err = run_cli(capfd, "--env-file", str(write_env(tmp_path / "gh.env", values)))
    assert code == 1
    lines = out.splitlines()
    masks = [line for line in lines if line.startswith("::add-mask::")]
    assert {m.removeprefix("::add-mask::") for m in masks} == set(secret_values(values))
    first_other = next(i for i, line in enumerate(lines) if not line.startswith("::add-mask::"))
    assert all(line.startswith("::add-mask::") for line in lines[:first_other])
    assert "::error title=validate_secrets::NEXTAUTH_SECRET: is shorter than 32 characters" in out
    assert "::error title=validate_secrets::DEBUG: is true in production" in out
    assert_no_secrets("\n".join(lines[first_other:]) + err, values)


def test_cli_prints_no_traceback_and_no_secret_in_a_subprocess(tmp_path: Path) -> None:
    values = good_env("aws", SECRET_KEY=SHORT + "Zq", AWS_ACCOUNT_ID="42")
    env_file = write_env(tmp_path / "p.env", values)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.validate_secrets", "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert proc.returncode == 1
    assert "AWS_ACCOUNT_ID: '42' is malformed: use exactly 12 digits" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert_no_secrets(proc.stdout + proc.stderr, values)


def test_help_imports_no_cloud_sdk() -> None:
    code = (
        "import sys, runpy; sys.argv=['validate_secrets','--help']\n"
        "try:\n    runpy.run_module('tools.validate_secrets', run_name='__main__')\nexcept SystemExit: pass\n"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('boto3','botocore','google','kubernetes','pyhelm3')]\n"
        "print('IMPORTED', bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "IMPORTED []" in proc.stdout


# -- hardening: what a review of bad inputs found ----------------------------------------------------------
def test_a_secret_wrapped_onto_its_own_line_is_never_echoed(tmp_path: Path, monkeypatch, capfd) -> None:
    """The value of a long secret pasted with a line break: the continuation line has no '='."""
    secret = canary("WRAPPED_SECRET_VALUE")
    env_file = tmp_path / "aws.env"
    env_file.write_text(f"CLOUD_PROVIDER=aws\nSECRET_KEY=\n{secret}\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err = run_cli(capfd, "--env-file", str(env_file))
    assert code == 2
    assert secret not in out + err and secret[:12] not in out + err
    assert "aws.env:3: a line with no '='" in err


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_USER_PODS", "\u00b2", "is not a positive whole number"),  # superscript two: isdigit() says yes
        ("MAX_USER_PODS", "\u0663", "is not a positive whole number"),  # Arabic-Indic three
        ("TOKEN_EXPIRE_HOURS", "1" + "0" * 26, "is not a positive whole number"),
        ("TOKEN_EXPIRE_HOURS", "10000", "is more than 720, the largest sane value"),
        ("MAX_INACTIVE_HOURS", "0", "is not a positive whole number"),
    ],
)
def test_numbers_are_ascii_digits_within_bounds(tmp_path: Path, capfd, name: str, value: str, message: str) -> None:
    env_file = write_env(tmp_path / "aws.env", good_env("aws", **{name: value}))
    code, out, err = run_cli(capfd, "--env-file", str(env_file))
    assert code == 1, err
    (line,) = [line for line in err.splitlines() if f"{name}:" in line]
    assert message in line
    assert "Traceback" not in out + err and "unexpected" not in err


def test_a_long_value_is_shortened_in_its_error(tmp_path: Path, capfd) -> None:
    env_file = write_env(tmp_path / "aws.env", good_env("aws", AUTH_PROVIDER="x" * 10000))
    code, _, err = run_cli(capfd, "--env-file", str(env_file))
    assert code == 1
    (line,) = [line for line in err.splitlines() if "AUTH_PROVIDER:" in line]
    assert "(10000 characters)" in line and len(line) < 300


def test_a_key_set_twice_is_a_warning_naming_both_lines(tmp_path: Path, capfd) -> None:
    env_file = write_env(tmp_path / "aws.env", good_env("aws"))
    env_file.write_text(env_file.read_text() + "MAX_USER_PODS=20\nMAX_USER_PODS=30\n")
    lines = env_file.read_text().splitlines()
    first, second = (i + 1 for i, line in enumerate(lines) if line.startswith("MAX_USER_PODS="))
    code, out, _ = run_cli(capfd, "--env-file", str(env_file))
    assert code == 0
    assert f"MAX_USER_PODS is set twice (lines {first} and {second}): the last one wins" in out


def test_a_shared_identity_is_only_a_warning_in_dev(tmp_path: Path, capfd) -> None:
    values = good_env(
        "aws", ENVIRONMENT="dev", AWS_USER_IRSA_ROLE_ARN="arn:aws:iam::123456789012:role/cmbtest-backend-irsa"
    )
    code, out, _ = run_cli(capfd, "--env-file", str(write_env(tmp_path / "aws.env", values)))
    assert code == 0 and "AWS_USER_IRSA_ROLE_ARN: is the backend's identity" in out
