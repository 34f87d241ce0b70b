"""Sign-in wiring before the deploy (tools/auth): Cognito's user pool and app client read from moto's
Cognito (the test bed's moto server), each mismatch one line; Google's values to register printed once;
the cross-cloud configurations (Google on EKS, Cognito on GKE) through validate --online and preflight."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.envfiles import good_env, write_env
from tools import validate_secrets
from tools.auth import preflight
from tools.cloud import cloud_for
from tools.cloud_permissions import aws_policy
from tools.settings import Settings, load_settings

BASE = "cmb.example.org"
CALLBACK = f"https://{BASE}/api/auth/callback/cognito"
GOOD_CLIENT: dict[str, Any] = {
    "GenerateSecret": True,
    "CallbackURLs": [CALLBACK],
    "LogoutURLs": [f"https://{BASE}"],
    "AllowedOAuthFlows": ["code"],
    "AllowedOAuthScopes": ["openid", "email", "profile"],
    "AllowedOAuthFlowsUserPoolClient": True,
    "SupportedIdentityProviders": ["COGNITO"],
}


def cognito_env(cloud: str, pool: str, client: dict[str, Any], **overrides: str | None) -> dict[str, str]:
    values = {
        "COGNITO_USER_POOL_ID": pool,
        "COGNITO_CLIENT_ID": client["ClientId"],
        "COGNITO_CLIENT_SECRET": client.get("ClientSecret") or "Cnry-a-secret-the-client-does-not-have-0123",
        "COGNITO_ISSUER": f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
    }
    return good_env(cloud, "cognito", **{**values, **overrides})


def make_client(**changes: Any) -> tuple[str, dict[str, Any]]:
    """A user pool on moto and an app client of it: the good one, with `changes` (None drops a field)."""
    import boto3

    idp = boto3.client("cognito-idp", region_name="us-east-1")
    pool = idp.create_user_pool(PoolName="cmbcluster")["UserPool"]["Id"]
    fields = {k: v for k, v in {**GOOD_CLIENT, **changes}.items() if v is not None}
    client = idp.create_user_pool_client(UserPoolId=pool, ClientName="frontend", **fields)["UserPoolClient"]
    return pool, client


@pytest.fixture
def moto_env(moto_url: str, bed_env: dict[str, str]) -> dict[str, str]:
    """This process talks to the test bed's moto server (its Cognito)."""
    return bed_env


def settings(values: dict[str, str], cloud: str = "aws") -> Settings:
    return load_settings(cloud=cloud, environ=values)


@pytest.mark.testbed
def test_a_correct_client_passes_and_validate_online_says_so(
    moto_env: dict[str, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pool, client = make_client()
    values = cognito_env("aws", pool, client)
    assert preflight.check(settings(values)) == []
    code = validate_secrets.main(["--online", "--env-file", str(write_env(tmp_path / "aws.env", values))])
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert f"Cognito user pool {pool} and app client" in out and "is valid for aws" in out
    assert client["ClientSecret"] not in out + err


CONSOLE = "in the Cognito console (App client -> Hosted UI -> Edit)"
MISMATCHES = [
    ("callback-missing", {"CallbackURLs": ["https://other.example.org/api/auth/callback/cognito"]}, {},
     f"Cognito app client callback URLs lack {CALLBACK}: add it {CONSOLE}"),
    ("callback-of-another-provider", {"CallbackURLs": [f"https://{BASE}/api/auth/callback/google"]}, {},
     f"Cognito app client callback URLs lack {CALLBACK}: add it {CONSOLE}"),
    ("sign-out-missing", {"LogoutURLs": ["https://other.example.org"]}, {},
     f"Cognito app client sign-out URLs lack https://{BASE}: add it {CONSOLE}"),
    ("implicit-flow-only", {"AllowedOAuthFlows": ["implicit"]}, {},
     f"Cognito app client does not allow the OAuth authorization code grant: enable it {CONSOLE}"),
    ("oauth-off", {"AllowedOAuthFlowsUserPoolClient": False, "AllowedOAuthFlows": None, "AllowedOAuthScopes": None,
                   "CallbackURLs": [CALLBACK]}, {},
     None),  # several lines: checked below
    ("scope-email-missing", {"AllowedOAuthScopes": ["openid", "profile"]}, {},
     f"Cognito app client does not allow the scope(s) email: add them {CONSOLE}"),
    ("identity-provider-off", {"SupportedIdentityProviders": []}, {},
     f"Cognito app client does not enable the identity provider Cognito user pool: enable it {CONSOLE}"),
    ("public-client", {"GenerateSecret": False}, {},
     "COGNITO_CLIENT_SECRET is set but app client has no secret (a public client): create an app client with a "
     "client secret (a secret cannot be added to an existing client) and use its id and secret"),
    ("wrong-secret", {}, {"COGNITO_CLIENT_SECRET": "Cnry-not-this-clients-secret-0123456789abcdef"},
     "COGNITO_CLIENT_SECRET is not the secret of client {client}: copy it from there"),
    ("issuer-of-another-pool", {}, {"COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other1"},
     "COGNITO_ISSUER: the user pool's issuer is https://cognito-idp.us-east-1.amazonaws.com/{pool}: "
     "set COGNITO_ISSUER=https://cognito-idp.us-east-1.amazonaws.com/{pool}"),
]  # fmt: skip


@pytest.mark.testbed
@pytest.mark.parametrize(("changes", "overrides", "line"), [m[1:] for m in MISMATCHES], ids=[m[0] for m in MISMATCHES])
def test_each_cognito_mismatch_is_one_line_with_the_fix(
    moto_env: dict[str, str], changes: dict[str, Any], overrides: dict[str, str], line: str | None
) -> None:
    pool, client = make_client(**changes)
    found = preflight.check(settings(cognito_env("aws", pool, client, **overrides)))
    if line is None:  # the client is not an OAuth client at all: the grant and the scopes are named
        assert found == [
            f"Cognito app client does not allow the OAuth authorization code grant: enable it {CONSOLE}",
            f"Cognito app client does not allow the scope(s) openid, email: add them {CONSOLE}",
        ]
        return
    assert found == [line.format(pool=pool, client=client["ClientId"])]


@pytest.mark.testbed
def test_a_missing_pool_and_a_client_of_another_pool_are_named(moto_env: dict[str, str]) -> None:
    _, client = make_client()
    other, _ = make_client()
    found = preflight.check(settings(cognito_env("aws", other, client)))
    assert found == [
        f"COGNITO_CLIENT_ID: app client {client['ClientId']} does not exist in user pool {other} (deleted, or a "
        "client of another pool): use an app client of this pool"
    ]
    gone = "us-east-1_Gone0000"
    found = preflight.check(settings(cognito_env("aws", gone, client)))
    assert found == [f"COGNITO_USER_POOL_ID: user pool {gone} does not exist in us-east-1: use the pool's id"]


@pytest.mark.testbed
def test_cognito_on_gke_is_checked_with_an_aws_identity_and_skipped_in_one_line_without(
    moto_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    pool, client = make_client(LogoutURLs=["https://elsewhere.example.org"])
    gke = settings(cognito_env("gcp", pool, client), cloud="gcp")
    assert preflight.check(gke) == [f"Cognito app client sign-out URLs lack https://{BASE}: add it {CONSOLE}"]
    capfd.readouterr()
    import boto3

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    boto3.DEFAULT_SESSION = None
    assert preflight.check(gke) == []
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if "not checked" in line]
    assert len(lines) == 1 and "make cloud-setup CLOUD=gcp` prints a read-only AWS identity" in lines[0], out + err


def test_google_on_eks_prints_the_redirect_uri_and_origin_once(capfd: pytest.CaptureFixture[str]) -> None:
    """Nothing to read from Google: no network at all, the values to register, once."""
    eks = settings(good_env("aws", "google", FRONTEND_URL=f"https://{BASE}/"))
    assert preflight.check(eks) == []
    out, _ = capfd.readouterr()
    assert out.count("register the authorised redirect URI") == 1
    assert f"redirect URI https://{BASE}/api/auth/callback/google and the JavaScript origin https://{BASE} " in out


def test_google_client_id_form_is_checked(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    values = good_env("aws", "google", GOOGLE_CLIENT_ID="123456789012-abc")  # the suffix left out
    code = validate_secrets.main(["--online", "--env-file", str(write_env(tmp_path / "aws.env", values))])
    _, err = capfd.readouterr()
    assert code != 0
    assert "GOOGLE_CLIENT_ID" in err and "apps.googleusercontent.com" in err


def test_the_deploy_policy_reads_the_pool_and_gke_gets_a_read_only_identity(tmp_path: Path) -> None:
    values = good_env("aws", "cognito")
    policy = aws_policy(cloud_for(settings(values)))
    pool_arn = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEf123"
    cognito = [s for s in policy["Statement"] if s["Resource"] == [pool_arn]]
    assert cognito and cognito[0]["Action"] == ["cognito-idp:DescribeUserPool", "cognito-idp:DescribeUserPoolClient"]
    assert not any(a.startswith("cognito-idp:") for s in aws_policy(cloud_for(settings(good_env("aws"))))["Statement"]
                   for a in s["Action"])  # fmt: skip

    env_file = write_env(tmp_path / "gcp.env", good_env("gcp", "both"))
    command = [sys.executable, "-m", "tools.cloud_setup", "--cloud", "gcp", "--env-file", str(env_file)]
    result = subprocess.run([*command, "--repository", "a/b"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    document = re.search(r"cat > cognito-reader.json <<'JSON'\n(.*?)\nJSON", result.stdout, re.S)
    assert document, result.stdout
    statement = json.loads(document.group(1))["Statement"]
    assert statement == [
        {
            "Sid": "ReadSignInClient",
            "Effect": "Allow",
            "Action": ["cognito-idp:DescribeUserPool", "cognito-idp:DescribeUserPoolClient"],
            "Resource": ["arn:aws:cognito-idp:us-east-1:*:userpool/us-east-1_AbCdEf123"],
        }
    ]


@pytest.mark.testbed
def test_the_read_only_identity_is_enough_and_each_of_its_actions_is_needed(
    moto_iam_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the IAM-enforcing moto: the printed read-only policy runs the check; without one action the check
    fails naming it (moto's own AccessDenied message: it answers Cognito's JSON protocol with an XML 403, so the
    declaration's hint is not reached here)."""
    import boto3

    from tests.test_cloud_setup import _post, for_moto
    from tools.auth.cognito import reader_policy
    from tools.errors import ToolError

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_iam_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    _post(f"{moto_iam_url}/moto-api/reset-auth", "inf")
    try:
        boto3.DEFAULT_SESSION = None
        pool, client = make_client()
        gke = settings(cognito_env("gcp", pool, client, AWS_ACCOUNT_ID="123456789012"), cloud="gcp")
        iam = boto3.client("iam")
        policy = reader_policy(gke)
        keys = {}
        for name, document in (
            ("reader", policy),
            ("half", {**policy, "Statement": [{**policy["Statement"][0], "Action": ["cognito-idp:DescribeUserPool"]}]}),
        ):
            iam.create_user(UserName=f"{name}-{pool[-6:]}")
            document = for_moto(document)  # moto decides on actions only (test_cloud_setup's docstring)
            iam.put_user_policy(UserName=f"{name}-{pool[-6:]}", PolicyName="p", PolicyDocument=json.dumps(document))
            keys[name] = iam.create_access_key(UserName=f"{name}-{pool[-6:]}")["AccessKey"]
        _post(f"{moto_iam_url}/moto-api/reset-auth", "0")
        for name in ("reader", "half"):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[name]["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[name]["SecretAccessKey"])
            boto3.DEFAULT_SESSION = None
            if name == "reader":
                assert preflight.check(gke) == []
            else:
                with pytest.raises(ToolError, match="cognito-idp:DescribeUserPoolClient"):
                    preflight.check(gke)
    finally:
        _post(f"{moto_iam_url}/moto-api/reset-auth", "inf")
