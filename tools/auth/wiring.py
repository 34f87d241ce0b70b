"""The sign-in facts the frontend and the providers must agree on, each in one place.

NextAuth.js serves its endpoints under `NEXTAUTH_URL` + `/api/auth`; a provider sends the browser
back to `/api/auth/callback/<provider id>` (https://next-auth.js.org/getting-started/rest-api,
https://next-auth.js.org/configuration/providers/oauth#how-to). The chart gives the frontend
`NEXTAUTH_URL` = FRONTEND_URL (https://BASE_DOMAIN by default).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tools.settings import Settings

AUTH_PATH = "/api/auth"
# The issuer of Google's ID tokens and its discovery document
# (https://developers.google.com/identity/openid-connect/openid-connect#discovery).
GOOGLE_ISSUER = "https://accounts.google.com"
DISCOVERY_PATH = "/.well-known/openid-configuration"
# What NextAuth's Cognito provider asks for: the authorization code flow with `openid email profile`
# (next-auth/providers/cognito); Cognito's own users sign in through the identity provider `COGNITO`
# (https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-app-idp-settings.html).
COGNITO_FLOW = "code"
COGNITO_SCOPES = ("openid", "email")
COGNITO_IDENTITY_PROVIDER = "COGNITO"


def frontend_url(settings: Settings) -> str:
    """The frontend's public base (NEXTAUTH_URL in the chart), without a trailing slash."""
    return settings["FRONTEND_URL"].rstrip("/")


def origin(settings: Settings) -> str:
    """The frontend's origin (scheme and host, the JavaScript origin Google wants registered)."""
    parts = urlsplit(frontend_url(settings))
    return f"{parts.scheme}://{parts.netloc}"


def callback_url(settings: Settings, provider: str) -> str:
    """The redirect URI the provider must allow: where NextAuth receives the code."""
    return f"{frontend_url(settings)}{AUTH_PATH}/callback/{provider}"


def issuer(settings: Settings, provider: str) -> str:
    """The OpenID issuer of `provider` (its discovery document is at issuer + DISCOVERY_PATH)."""
    return GOOGLE_ISSUER if provider == "google" else settings["COGNITO_ISSUER"].rstrip("/")


def client_id(settings: Settings, provider: str) -> str:
    return settings["GOOGLE_CLIENT_ID" if provider == "google" else "COGNITO_CLIENT_ID"]


def cognito_region(settings: Settings) -> str:
    """The user pool's region: the pool id is REGION_ID (us-east-1_AbC...)."""
    return settings["COGNITO_USER_POOL_ID"].partition("_")[0]


def cognito_issuer(region: str, pool_id: str) -> str:
    """A user pool's issuer (https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html)."""
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
