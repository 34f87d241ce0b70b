"""smoke_test's live sign-in check (tools/auth/live.py) in this process: the frontend's NextAuth endpoints and
the issuers' discovery documents at the network edge (`responses`, tests/nextauth.py), each failure naming
the side to fix; on the real cluster: the stand-in frontend through its Service, and a release whose frontend
got another environment's callback base failing and rolled back."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import responses

from tests import nextauth
from tests.envfiles import COGNITO, COMMON, good_env
from tests.realcluster import RELEASE, Site
from tools.auth.live import check_sign_in
from tools.settings import load_settings

BASE = "https://cmb.example.org"
GOOGLE = (COMMON["GOOGLE_CLIENT_ID"], nextauth.GOOGLE_AUTHORIZE)
COGNITO_AUTHORIZE = f"{nextauth.COGNITO_DOMAIN}/oauth2/authorize"
COGNITO_CLIENT = (COGNITO["COGNITO_CLIENT_ID"], COGNITO_AUTHORIZE)
ISSUER = COGNITO["COGNITO_ISSUER"]


def args(**changes: object) -> argparse.Namespace:
    values = {"no_sign_in": False, "sign_in_via": "url", "no_endpoints": False, "address": None, "ca_bundle": None,
              "request_timeout": 5.0, "endpoint_deadline": 2.0, **changes}  # fmt: skip
    return argparse.Namespace(**values)


def run(clients: dict[str, tuple[str, str]], issuer_names: str | None = None, **frontend: str) -> list[tuple[str, ...]]:
    """Both providers configured (Google on EKS and Cognito: the cross-cloud case); the frontend offers `clients`."""
    settings = load_settings(cloud="aws", environ=good_env("aws", "both"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        nextauth.discovery(rsps, "https://accounts.google.com", nextauth.GOOGLE_AUTHORIZE)
        nextauth.discovery(rsps, ISSUER, COGNITO_AUTHORIZE, names=issuer_names)
        nextauth.frontend(rsps, BASE, clients, **frontend)
        checks = check_sign_in(None, settings, args(), healthy=True)  # type: ignore[arg-type]
    return [(c.name, c.status, c.detail) for c in checks]


def test_a_frontend_wired_as_configured_passes() -> None:
    checks = run({"google": GOOGLE, "cognito": COGNITO_CLIENT})
    assert [c[:2] for c in checks] == [
        ("sign-in providers", "ok"),
        ("google issuer", "ok"),
        ("google sign-in", "ok"),
        ("cognito issuer", "ok"),
        ("cognito sign-in", "ok"),
    ]
    assert checks[4][2] == (f"redirects to {COGNITO_AUTHORIZE} with redirect_uri {BASE}/api/auth/callback/cognito")


def test_a_frontend_with_another_environments_callback_base_fails_naming_the_redirect() -> None:
    checks = run({"google": GOOGLE, "cognito": COGNITO_CLIENT}, nextauth_url="https://staging.cmb.example.org")
    failed = [c for c in checks if c[1] == "failed"]
    assert [c[0] for c in failed] == ["google sign-in", "cognito sign-in"]
    assert failed[1][2] == (
        "sign-in sends redirect_uri https://staging.cmb.example.org/api/auth/callback/cognito, the provider has "
        f"{BASE}/api/auth/callback/cognito registered: frontend side: its NEXTAUTH_URL is another environment's; "
        "deploy it with this FRONTEND_URL (make helm-deploy)"
    )


def test_a_missing_provider_a_wrong_client_and_a_foreign_issuer_each_name_their_side() -> None:
    (only,) = run({"google": GOOGLE})
    assert only[1:] == (
        "failed",
        "the frontend offers google, the settings configure google, cognito: frontend side: deploy the settings "
        "again (make helm-deploy)",
    )
    other_pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Else"
    wrong_client = ("999-other.apps.googleusercontent.com", nextauth.GOOGLE_AUTHORIZE)
    checks = run({"google": wrong_client, "cognito": COGNITO_CLIENT}, issuer_names=other_pool)
    by_name = {c[0]: c[1:] for c in checks}
    assert by_name["google sign-in"] == (
        "failed",
        f"sign-in sends client_id {wrong_client[0]}, not {COMMON['GOOGLE_CLIENT_ID']}: frontend side",
    )
    assert by_name["cognito issuer"] == (
        "failed",
        f"the discovery document names issuer {other_pool}, not {ISSUER}: provider side: check COGNITO_ISSUER",
    )


@pytest.mark.parametrize("failures", [1, 99])
def test_a_connection_lost_after_a_rollout_is_tried_again_until_the_deadline(failures: int) -> None:
    """Right after a rollout a Service or load balancer may still send a connection to a pod that is gone: the sign-in
    is tried again until the deadline (one lost connection passes; connections lost past it fail, naming why)."""
    import requests

    settings = load_settings(cloud="aws", environ=good_env("aws"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        nextauth.discovery(rsps, "https://accounts.google.com", nextauth.GOOGLE_AUTHORIZE)
        for _ in range(failures):
            rsps.get(f"{BASE}/api/auth/csrf", body=requests.ConnectTimeout("Connection to the frontend timed out"))
        nextauth.frontend(rsps, BASE, {"google": GOOGLE})
        checks = check_sign_in(None, settings, args(endpoint_deadline=2.0), healthy=True)  # type: ignore[arg-type]
        attempts = sum(1 for call in rsps.calls if call.request.url.endswith("/api/auth/csrf"))
    sign_in = next(c for c in checks if c.name == "google sign-in")
    if failures == 1:
        assert (sign_in.status, attempts) == ("ok", 2), sign_in.detail
    else:
        assert sign_in.status == "failed" and "Connection to the frontend timed out" in sign_in.detail
        assert 2 <= attempts < failures  # tried again, and stopped at the deadline


# -- the real cluster ---------------------------------------------------------------------------------------
@pytest.fixture
def site(healthy_site: Site) -> Site:
    """Google sign-in on a local cluster, revision 1 healthy."""
    return healthy_site


def smoke(site: Site, capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """smoke_test in this process (Google's discovery document from `responses`; the frontend's Service and the
    cluster over plain HTTP pass through), reaching the stand-in frontend through its Service's cluster IP."""
    from tools import smoke_test

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(r"http://"))
        nextauth.discovery(rsps, "https://accounts.google.com", nextauth.GOOGLE_AUTHORIZE)
        argv = site.argv("--no-endpoints", "--sign-in-via", "service", "--no-storage-check", "--deadline", "120")
        code = smoke_test.main(argv)
    out, err = capfd.readouterr()
    return code, out + err


@pytest.mark.testbed
def test_the_live_sign_in_passes_and_another_environments_callback_base_is_rolled_back(
    site: Site, on_cluster: dict[str, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out = smoke(site, capfd)
    assert code == 0, out
    assert re.search(r"ok\s+sign-in providers: google via Service [\d.]+:8501", out), out
    assert (
        f"google sign-in: redirects to {nextauth.GOOGLE_AUTHORIZE} with redirect_uri {BASE}/api/auth/callback/google"
        in out
    )

    staging = "https://staging.cmb.example.org"
    deployed = site.deploy("--no-wait", values={"global": {"frontendUrl": staging}})
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    code, out = smoke(site, capfd)
    assert code == 1, out
    assert (
        f"google sign-in: sign-in sends redirect_uri {staging}/api/auth/callback/google, the provider has "
        f"{BASE}/api/auth/callback/google registered: frontend side" in out
    ), out
    assert re.search(r"ok\s+rollback: revision 2 -> 1", out), out
    assert site.history()[-1][1] == "deployed"
    from tests.realcluster import apps

    deployment = apps(site.kubeconfig).read_namespaced_deployment(f"{RELEASE}-frontend", site.namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["NEXTAUTH_URL"] == BASE


@pytest.mark.testbed
def test_helm_deploys_preflight_reads_cognito_from_a_cluster_off_aws(
    site: Site, on_cluster: dict[str, str], moto_url: str, testbed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Cognito sign-in on a local cluster: preflight reads the app client from moto's Cognito (the test bed's AWS
    settings) and refuses a client whose callback is another environment's, before anything changes."""
    import boto3

    from tests.test_auth_preflight import make_client

    for key, value in testbed.env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    boto3.DEFAULT_SESSION = None
    pool, client = make_client(CallbackURLs=["https://staging.cmb.example.org/api/auth/callback/cognito"])
    cognito = Site(
        tmp_path,
        site.kubeconfig,
        site.namespace,
        site.stand_ins,
        AUTH_PROVIDER="cognito",
        COGNITO_USER_POOL_ID=pool,
        COGNITO_CLIENT_ID=client["ClientId"],
        COGNITO_CLIENT_SECRET=client["ClientSecret"],
        COGNITO_ISSUER=f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
    )
    before = site.history()
    result = cognito.deploy()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Cognito app client callback URLs lack {BASE}/api/auth/callback/cognito: add it" in result.stderr
    assert "prerequisite(s) missing: nothing was changed" in result.stderr
    assert client["ClientSecret"] not in result.stdout + result.stderr
    assert site.history() == before
