"""The public endpoints: the Ingress address, then HTTPS health checks with retries and deadlines."""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tools.kube_ops import status_address
from tools.settings import Settings
from tools.smoke import objects
from tools.smoke.cache import Cluster
from tools.smoke.evidence import describe_event
from tools.smoke.pinned import pinned_session
from tools.smoke.results import Check, print_check

DEFAULT_ENDPOINT_DEADLINE = 180.0  # seconds for the Ingress address and HTTPS checks together
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds for one HTTPS request


# -- endpoints ----------------------------------------------------------------------------------------
def ingress_addresses(cluster: Cluster, release: str, deadline_at: float) -> tuple[Check, list[str]]:
    """Wait (by watch) until every Ingress of the release has an address in its status."""
    start = time.monotonic()
    if "ingresses" in cluster.unavailable:
        return Check("ingress address", "failed", 0.0, f"cannot read Ingresses: {cluster.unavailable['ingresses']}"), []
    while True:
        ingresses = cluster.release_objects("ingresses", release)
        found = {objects.name(i): status_address(i) for i in ingresses}
        if ingresses and all(found.values()):
            addresses = list(dict.fromkeys(a for a in found.values() if a))
            detail = ", ".join(f"{name}: {address}" for name, address in found.items())
            return Check("ingress address", "ok", time.monotonic() - start, detail), addresses
        now = time.monotonic()
        if now >= deadline_at:
            if not ingresses:
                why = f"release {release} has no Ingress in namespace {cluster.namespace}"
            else:
                waiting = [name for name, address in found.items() if not address]
                events = [describe_event(e) for name in waiting for e in cluster.events_for("Ingress", name)[-3:]]
                why = f"no address yet for Ingress {', '.join(waiting)}: check the ingress controller"
                if events:
                    why += " (last events: " + " | ".join(events) + ")"
            return Check("ingress address", "failed", now - start, why), []
        cluster.wait(deadline_at - now)


def check_url(
    url: str,
    *,
    expect_status: str | None,
    deadline_at: float,
    request_timeout: float,
    address: str | None = None,
    ca_bundle: str | None = None,
) -> Check:
    """GET `url` until it answers 200 (and, with `expect_status`, JSON whose `status` is it) or the deadline."""
    import requests

    start = time.monotonic()
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    headers = {"User-Agent": "cmbcluster-smoke-test", "Accept": "application/json"}
    if address:
        target = urlunsplit((parts.scheme, address, parts.path or "/", parts.query, ""))
        session = pinned_session(hostname, address)
        headers["Host"] = parts.netloc
        via = f" via {address}"
    else:
        target, session, via = url, requests.Session(), ""
    attempts, delay, last = 0, 0.5, ""
    with session:
        while True:
            attempts += 1
            remaining = deadline_at - time.monotonic()
            timeout = max(0.1, min(request_timeout, remaining))
            try:
                response = session.get(
                    target, headers=headers, timeout=timeout, verify=ca_bundle or True, allow_redirects=False
                )
            except requests.exceptions.SSLError as exc:
                last = f"TLS verification failed: {objects.short_error(exc)}"
            except requests.exceptions.Timeout:
                last = f"no answer within the request timeout ({timeout:.1f}s)"
            except requests.exceptions.ConnectionError as exc:
                last = f"cannot connect: {objects.short_error(exc)}"
            else:
                last = _judge_response(response, expect_status)
                if not last:
                    detail = f"HTTP {response.status_code}" + (f", status {expect_status}" if expect_status else "")
                    return Check(f"GET {url}", "ok", time.monotonic() - start, detail + via)
            now = time.monotonic()
            if now >= deadline_at - 0.05:
                took = now - start
                return Check(f"GET {url}", "failed", took, f"{last}{via} ({attempts} attempts in {took:.1f}s)")
            time.sleep(min(delay, deadline_at - now))
            delay = min(delay * 2, 5.0)


def _judge_response(response: Any, expect_status: str | None) -> str:
    """Why the answer is not healthy, or '' when it is."""
    body = response.text[:200].strip().replace("\n", " ")
    if response.status_code != 200:
        where = f" to {response.headers.get('Location')}" if response.is_redirect else ""
        return f"answered HTTP {response.status_code} {response.reason or ''}".rstrip() + where + objects.colon(body)
    if expect_status is None:
        return ""
    try:
        document = response.json()
    except ValueError:
        return "answered 200 but not with JSON" + objects.colon(body)
    status = document.get("status") if isinstance(document, dict) else None
    if status != expect_status:
        return f"answered JSON with status {status!r}, expected {expect_status!r}" + objects.colon(body)
    return ""


def resolved_names(urls: list[str], ingress_addresses: list[str]) -> Check:
    """What the public names resolve to here, against the Ingress's address: the DNS records the
    checks went through (a warning when they point elsewhere; the HTTPS checks judge the service)."""
    import socket

    def addresses(host: str) -> set[str]:
        try:
            return {str(info[4][0]) for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)}
        except OSError:
            return set()

    start = time.monotonic()
    ingress = set().union(*(addresses(a) for a in ingress_addresses)) if ingress_addresses else set()
    hosts = list(dict.fromkeys(urlsplit(u).hostname or "" for u in urls))
    found = {host: addresses(host) for host in hosts}
    detail = "; ".join(f"{h} -> {', '.join(sorted(a)) or 'does not resolve'}" for h, a in found.items())
    elsewhere = [h for h, a in found.items() if not (a & ingress)]
    if elsewhere and ingress:
        detail += f" (the Ingress is at {', '.join(sorted(ingress))}: {', '.join(elsewhere)} not; run make dns)"
    status = "warning" if elsewhere else "ok"
    return Check("dns records", status, time.monotonic() - start, detail)


def served_certificate(url: str, *, address: str | None, ca_bundle: str | None, timeout: float) -> Check:
    """The certificate `url` serves, verified as the HTTPS checks verify it: issuer, names, expiry."""
    import socket
    import ssl

    import certifi

    start = time.monotonic()
    host = urlsplit(url).hostname or ""
    target = address or urlsplit(url).netloc
    name, _, port = target.rpartition(":") if ":" in target else (target, "", "443")
    context = ssl.create_default_context(cafile=ca_bundle or certifi.where())
    try:
        with (
            socket.create_connection((name, int(port or 443)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            served: dict[str, Any] = tls.getpeercert() or {}
    except (OSError, ValueError) as exc:
        return Check(
            "certificate", "warning", time.monotonic() - start, f"{host}: not read: {objects.short_error(exc)}"
        )
    issuer = dict(pair[0] for pair in served.get("issuer") or ())
    names = [value for kind, value in served.get("subjectAltName") or () if kind == "DNS"]
    by = issuer.get("organizationName") or issuer.get("commonName") or "?"
    detail = f"{host}: issued by {by} for {', '.join(names)}, valid until {served.get('notAfter', '?')}"
    return Check("certificate", "ok", time.monotonic() - start, detail)


def check_endpoints(cluster: Cluster, settings: Settings, args: argparse.Namespace) -> tuple[list[Check], list[str]]:
    deadline_at = time.monotonic() + args.endpoint_deadline
    ingress_check, addresses = ingress_addresses(cluster, settings.release, deadline_at)
    checks = [ingress_check]
    print_check(ingress_check)
    address = args.address
    if address == "ingress":
        if not addresses:
            return checks, addresses
        address = addresses[0]
    urls = [
        (settings["API_URL"].rstrip("/") + "/health", "healthy"),
        (settings["FRONTEND_URL"].rstrip("/") + "/api/health", None),
    ]
    for url, expect in urls:
        check = check_url(
            url,
            expect_status=expect,
            deadline_at=deadline_at,
            request_timeout=args.request_timeout,
            address=address,
            ca_bundle=args.ca_bundle,
        )
        checks.append(check)
        print_check(check)
    extra = []
    if not settings["DNS_ZONE"]:  # the dns step made no records: nothing more to show
        return checks, addresses
    if not address:  # the real names, through DNS: say where they point
        extra.append(resolved_names([u for u, _ in urls], addresses))
    if all(c.status == "ok" for c in checks):
        extra.append(
            served_certificate(urls[0][0], address=address, ca_bundle=args.ca_bundle, timeout=args.request_timeout)
        )
    for check in extra:
        checks.append(check)
        print_check(check)
    return checks, addresses
