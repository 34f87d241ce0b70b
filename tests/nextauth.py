"""NextAuth.js's sign-in endpoints and the providers' discovery documents at the network edge (`responses`),
for smoke_test runs in this process; the stand-in frontend image serves the same (tests/fixtures/apps/frontend/auth).

NextAuth v4's REST API: https://next-auth.js.org/getting-started/rest-api. Google's discovery document
(https://accounts.google.com/.well-known/openid-configuration) names issuer https://accounts.google.com and
authorization endpoint https://accounts.google.com/o/oauth2/v2/auth; a Cognito user pool's
(https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-userpools-server-contract-reference.html)
names https://cognito-idp.REGION.amazonaws.com/POOL and its domain's /oauth2/authorize.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode

import responses

GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
COGNITO_DOMAIN = "https://cmbtest.auth.us-east-1.amazoncognito.com"


def discovery(rsps: responses.RequestsMock, issuer: str, authorize: str, names: str | None = None) -> None:
    """The issuer's discovery document (naming `names` as issuer when given: a mismatch)."""
    document = {"issuer": names or issuer, "authorization_endpoint": authorize, "response_types_supported": ["code"]}
    rsps.get(f"{issuer}/.well-known/openid-configuration", json=document)


def frontend(
    rsps: responses.RequestsMock, base: str, clients: dict[str, tuple[str, str]], nextauth_url: str | None = None
) -> None:
    """NextAuth on `base` offering `clients` {provider: (client id, authorization endpoint)}, its NEXTAUTH_URL
    `nextauth_url` (default `base`: another value is a frontend deployed with another environment's base)."""
    own = (nextauth_url or base).rstrip("/")
    tokens: set[str] = set()
    listing = {
        p: {"id": p, "name": p.title(), "type": "oauth", "signinUrl": f"{own}/api/auth/signin/{p}",
            "callbackUrl": f"{own}/api/auth/callback/{p}"}
        for p in clients
    }  # fmt: skip
    rsps.get(f"{base}/api/auth/providers", json=listing)

    def csrf(_request: Any) -> tuple[int, dict[str, str], str]:
        token = secrets.token_hex(32)
        tokens.add(token)
        cookie = f"__Host-next-auth.csrf-token={token}%7Chash; Path=/; HttpOnly; SameSite=Lax; Secure"
        return 200, {"Set-Cookie": cookie, "Content-Type": "application/json"}, json.dumps({"csrfToken": token})

    def signin(request: Any) -> tuple[int, dict[str, str], str]:
        provider = request.url.rsplit("/", 1)[1]
        sent = (parse_qs(request.body or "").get("csrfToken") or [""])[0]
        if sent not in tokens or f"csrf-token={sent}%7C" not in (request.headers.get("Cookie") or ""):
            return 302, {"Location": f"{own}/api/auth/signin?csrf=true"}, ""
        client, authorize = clients[provider]
        query = urlencode(
            {"client_id": client, "scope": "openid email profile", "response_type": "code",
             "redirect_uri": f"{own}/api/auth/callback/{provider}", "state": secrets.token_hex(8)}
        )  # fmt: skip
        return 302, {"Location": f"{authorize}?{query}"}, ""

    rsps.add_callback("GET", f"{base}/api/auth/csrf", callback=csrf)
    for provider in clients:
        rsps.add_callback("POST", f"{base}/api/auth/signin/{provider}", callback=signin)
