"""The live release's sign-in, tried as a browser starts it (smoke_test), and the provider's discovery document.

1. NextAuth's `/api/auth/providers` on the live frontend names exactly the configured providers.
2. Per provider, the issuer's OpenID discovery document (`/.well-known/openid-configuration`) answers
   and names the same issuer (the provider side).
3. Per provider, `/api/auth/csrf` then a form POST to `/api/auth/signin/<provider>` with the token and
   its cookie (what NextAuth's sign-in button does) redirects to the provider's authorization endpoint
   with `redirect_uri` = the registered callback (tools/auth/wiring.py) and the configured client id
   (the frontend side: its NEXTAUTH_URL and client id come from the chart).

The frontend is reached at FRONTEND_URL (through the Ingress; `--address` and `--ca-bundle` apply),
or with `--sign-in-via service` through its Service's cluster IP over plain HTTP with the public Host:
for a host on the cluster network when there is no ingress controller. No password, no account; the
CSRF token and the redirect's `state` are never printed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools.auth import wiring
from tools.kube_client import ApiError, Unreachable, path
from tools.kube_ops import RELEASE_ANNOTATION, status_address
from tools.settings import Settings
from tools.smoke import objects
from tools.smoke.cache import Cluster
from tools.smoke.pinned import pinned_session
from tools.smoke.results import Check, print_check

FRONTEND_COMPONENT = "app.kubernetes.io/component=frontend"
HEADERS = {"User-Agent": "cmbcluster-smoke-test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-sign-in", action="store_true", help="skip the live sign-in check")
    parser.add_argument(
        "--sign-in-via",
        choices=("url", "service"),
        default="url",
        help="reach the frontend for the sign-in check at FRONTEND_URL (default) or through its Service's "
        "cluster IP (a host on the cluster network; a cluster without an ingress controller)",
    )


@dataclass
class Frontend:
    """Where the sign-in requests go, and how."""

    base: str  # scheme://host[:port] the requests are sent to
    session: Any
    headers: dict[str, str]
    verify: Any
    via: str  # for the report: "" or " via ..."


def check_sign_in(cluster: Cluster, settings: Settings, args: argparse.Namespace, healthy: bool) -> list[Check]:
    """The sign-in checks (each printed), or one skipped check saying why not."""
    if args.no_sign_in:
        return [Check("sign-in", "skipped", None, "--no-sign-in")]
    if not healthy:
        return [Check("sign-in", "skipped", None, "not run: an earlier check failed")]
    if args.sign_in_via == "url" and args.no_endpoints:
        return [Check("sign-in", "skipped", None, "--no-endpoints (--sign-in-via service reaches the frontend)")]
    start = time.monotonic()
    deadline_at = start + args.endpoint_deadline
    try:
        frontend = _frontend(cluster, settings, args)
    except LookupError as exc:
        return _printed([Check("sign-in", "failed", time.monotonic() - start, str(exc))])
    with frontend.session:
        checks = [_providers(frontend, settings, args.request_timeout, deadline_at)]
        if checks[0].status == "ok":
            for provider in settings.auth_providers():
                discovery, endpoint = _discovery(settings, provider, args.request_timeout)
                sign_in = _sign_in(frontend, settings, provider, endpoint, args.request_timeout, deadline_at)
                checks += [discovery, sign_in]
    return _printed(checks)


def _printed(checks: list[Check]) -> list[Check]:
    for check in checks:
        print_check(check)
    return checks


def _frontend(cluster: Cluster, settings: Settings, args: argparse.Namespace) -> Frontend:
    import requests

    public = urlsplit(wiring.frontend_url(settings))
    headers = dict(HEADERS)
    if args.sign_in_via == "service":
        address = _service_address(cluster, settings.release)
        headers["Host"] = public.netloc
        return Frontend(f"http://{address}", requests.Session(), headers, True, f" via Service {address}")
    address = args.address
    if address == "ingress":
        found = [status_address(i) for i in cluster.release_objects("ingresses", settings.release)]
        address = next((a for a in found if a), "")
        if not address:
            raise LookupError(f"release {settings.release} has no Ingress address to send the sign-in to")
    base = f"{public.scheme}://{public.netloc}"
    if not address:
        return Frontend(base, requests.Session(), headers, args.ca_bundle or True, "")
    headers["Host"] = public.netloc
    session = pinned_session(public.hostname or "", address)
    return Frontend(f"{public.scheme}://{address}", session, headers, args.ca_bundle or True, f" via {address}")


def _service_address(cluster: Cluster, release: str) -> str:
    try:
        services = cluster.api.get(path("services", cluster.namespace), labelSelector=FRONTEND_COMPONENT)
    except (ApiError, Unreachable) as exc:
        raise LookupError(f"cannot read the frontend Service: {objects.short_error(exc)}") from None
    for service in (services or {}).get("items") or []:
        if objects.annotations(service).get(RELEASE_ANNOTATION) != release:
            continue
        spec = service.get("spec") or {}
        ports = spec.get("ports") or []
        if spec.get("clusterIP") and spec["clusterIP"] != "None" and ports:
            return f"{spec['clusterIP']}:{ports[0]['port']}"
    raise LookupError(f"release {release} has no frontend Service with a cluster IP in namespace {cluster.namespace}")


def _providers(frontend: Frontend, settings: Settings, timeout: float, deadline_at: float) -> Check:
    """NextAuth's provider list names exactly the configured providers (retried until the deadline)."""
    import requests

    start, url, last = time.monotonic(), f"{frontend.base}{wiring.AUTH_PATH}/providers", ""
    while True:
        try:
            response = frontend.session.get(
                url, headers=frontend.headers, timeout=timeout, verify=frontend.verify, allow_redirects=False
            )
            offered = response.json() if response.status_code == 200 else None
            if isinstance(offered, dict):
                break
            last = f"answered HTTP {response.status_code}, not NextAuth's provider list (JSON)"
        except (requests.RequestException, ValueError) as exc:
            last = f"cannot read it: {objects.short_error(exc)}"
        if time.monotonic() >= deadline_at:
            name = f"sign-in providers{frontend.via}"
            return Check(name, "failed", time.monotonic() - start, f"{wiring.AUTH_PATH}/providers {last}")
        time.sleep(min(1.0, max(0.0, deadline_at - time.monotonic())))
    took, configured = time.monotonic() - start, list(settings.auth_providers())
    if sorted(offered) != sorted(configured):
        detail = (
            f"the frontend offers {', '.join(sorted(offered)) or 'none'}, the settings configure "
            f"{', '.join(configured)}: frontend side: deploy the settings again (make helm-deploy)"
        )
        return Check("sign-in providers", "failed", took, detail + frontend.via)
    return Check("sign-in providers", "ok", took, f"{', '.join(configured)}{frontend.via}")


def _discovery(settings: Settings, provider: str, timeout: float) -> tuple[Check, str]:
    """The issuer's discovery document answers and names the issuer; its authorization endpoint."""
    import requests

    start, issuer = time.monotonic(), wiring.issuer(settings, provider)
    name, fix = (
        f"{provider} issuer",
        "provider side: check COGNITO_ISSUER" if provider == "cognito" else "provider side",
    )
    try:
        response = requests.get(issuer + wiring.DISCOVERY_PATH, headers=HEADERS, timeout=timeout)
        document = response.json() if response.status_code == 200 else None
        why = "" if isinstance(document, dict) else f"answered HTTP {response.status_code}"
    except (requests.RequestException, ValueError) as exc:
        document, why = None, objects.short_error(exc)
    took = time.monotonic() - start
    if not isinstance(document, dict):
        return Check(name, "failed", took, f"{issuer}{wiring.DISCOVERY_PATH}: {why}: {fix}"), ""
    named = str(document.get("issuer") or "").rstrip("/")
    if named != issuer:
        detail = f"the discovery document names issuer {named or 'none'}, not {issuer}: {fix}"
        return Check(name, "failed", took, detail), ""
    endpoint = str(document.get("authorization_endpoint") or "")
    return Check(name, "ok", took, f"{issuer} (authorize: {endpoint})"), endpoint


def _sign_in(
    frontend: Frontend, settings: Settings, provider: str, endpoint: str, timeout: float, deadline_at: float
) -> Check:
    """CSRF token, then the sign-in form POST; the redirect must go to the provider with the registered callback.

    A connection that cannot be made is tried again until the deadline, as the provider list is: right after a
    rollout a Service or load balancer may still send one connection to a pod that is gone."""
    import requests

    start, name = time.monotonic(), f"{provider} sign-in"
    while True:
        try:
            response = _post_sign_in(frontend, settings, provider, timeout)
            break
        except (requests.ConnectionError, requests.Timeout) as exc:
            if time.monotonic() >= deadline_at:
                return Check(name, "failed", time.monotonic() - start, f"{objects.short_error(exc)}{frontend.via}")
        except (requests.RequestException, ValueError) as exc:
            return Check(name, "failed", time.monotonic() - start, f"{objects.short_error(exc)}{frontend.via}")
        time.sleep(min(1.0, max(0.0, deadline_at - time.monotonic())))
    if isinstance(response, str):
        return Check(name, "failed", time.monotonic() - start, response + frontend.via)
    status, detail = _judge_redirect(settings, provider, endpoint, response)
    return Check(name, status, time.monotonic() - start, detail + frontend.via)


def _post_sign_in(frontend: Frontend, settings: Settings, provider: str, timeout: float) -> Any:
    """The browser's two requests: the CSRF token, then the sign-in form. The answer, or why there is none."""
    csrf = frontend.session.get(
        f"{frontend.base}{wiring.AUTH_PATH}/csrf", headers=frontend.headers, timeout=timeout, verify=frontend.verify
    )
    token = (csrf.json() or {}).get("csrfToken") if csrf.status_code == 200 else None
    if not token:
        return f"{wiring.AUTH_PATH}/csrf answered HTTP {csrf.status_code} without a token: frontend side"
    cookie = "; ".join(f"{c.name}={c.value}" for c in csrf.cookies)
    return frontend.session.post(
        f"{frontend.base}{wiring.AUTH_PATH}/signin/{provider}",
        data={"csrfToken": token, "callbackUrl": wiring.frontend_url(settings)},
        headers={**frontend.headers, "Cookie": cookie},
        timeout=timeout,
        verify=frontend.verify,
        allow_redirects=False,
    )


def _judge_redirect(settings: Settings, provider: str, endpoint: str, response: Any) -> tuple[str, str]:
    """(status, detail) of the sign-in's answer; the query (state, ...) is never shown whole."""
    location = response.headers.get("Location") or ""
    target = urlsplit(location)
    where = f"{target.scheme}://{target.netloc}{target.path}" if target.netloc else location.split("?")[0]
    if not response.is_redirect or not location:
        answered = f"POST {wiring.AUTH_PATH}/signin/{provider} answered HTTP {response.status_code}"
        return "failed", f"{answered}, not a redirect: frontend side"
    if endpoint and where != endpoint:
        return "failed", f"sign-in redirected to {where}, not the authorization endpoint {endpoint}: frontend side"
    query = parse_qs(target.query)
    sent = (query.get("redirect_uri") or [""])[0]
    expected = wiring.callback_url(settings, provider)
    if sent != expected:
        return "failed", (
            f"sign-in sends redirect_uri {sent or 'none'}, the provider has {expected} registered: frontend side: "
            "its NEXTAUTH_URL is another environment's; deploy it with this FRONTEND_URL (make helm-deploy)"
        )
    client = (query.get("client_id") or [""])[0]
    if client != wiring.client_id(settings, provider):
        configured = wiring.client_id(settings, provider)
        return "failed", f"sign-in sends client_id {client or 'none'}, not {configured}: frontend side"
    return "ok", f"redirects to {where} with redirect_uri {sent}"
