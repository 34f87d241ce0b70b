"""Google's OAuth 2.0 token endpoint for service accounts, as a server of the test bed.

google-auth's service-account credentials sign a JWT with the account's key and exchange it at the
key file's `token_uri` (https://developers.google.com/identity/protocols/oauth2/service-account#httprest,
"Preparing to make an authorized API call": JWT bearer grant, RS256, `iss` the account's email, `aud`
Google's token endpoint, at most one hour between `iat` and `exp`). The key file names this server as its
`token_uri`, a field of every key file google-auth honours: the tools read Application Default
Credentials (GOOGLE_APPLICATION_CREDENTIALS) unmodified. Access tokens are opaque and expire after
an hour, as Google's do (`expires_in` 3599); `lookup` is what Google's services (GKE's authenticator,
its cluster API) do with a bearer token: resolve it to the account, or refuse it.
"""

from __future__ import annotations

import datetime
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as google_exceptions
from google.auth import jwt

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LIFETIME = datetime.timedelta(seconds=3599)  # Google's access tokens: "expires_in": 3599
MAX_ASSERTION = datetime.timedelta(hours=1)  # "exp ... maximum of 1 hour after the issued time"
# the assertion's `aud` is always Google's token endpoint (same page: "aud ... always
# https://oauth2.googleapis.com/token"), wherever the key file's token_uri sends it
AUDIENCE = "https://oauth2.googleapis.com/token"


class TokenRefused(Exception):
    """A bearer token Google would not accept (unknown, or expired)."""


@dataclass
class AccessToken:
    email: str
    expires: datetime.datetime
    scopes: tuple[str, ...]


class GoogleTokenServer:
    """Issues access tokens for the service-account keys it registered (its public halves, as Google keeps them)."""

    def __init__(self) -> None:
        self.public_keys: dict[str, tuple[str, bytes]] = {}  # key id -> (email, public key PEM)
        self.tokens: dict[str, AccessToken] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.token_uri = self.url + "/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def key_file(
        self, folder: Path, email: str, project: str, registered: bool = True, token_uri: str | None = None
    ) -> Path:
        """A service-account key file (the JSON `gcloud iam service-accounts keys create` writes), its
        public key registered with the server unless `registered` is False (a key Google never issued).
        `token_uri`: Google's real endpoint when the network edge forwards it here (tests/sim/edge.py)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        if registered:
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            self.public_keys[key_id] = (email, public)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = folder / f"{email.split('@')[0]}-{key_id[:6]}.json"
        path.touch(mode=0o600)
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": project,
                    "private_key_id": key_id,
                    "private_key": private,
                    "client_email": email,
                    "client_id": str(int(key_id[:12], 16)),
                    "token_uri": token_uri or self.token_uri,
                }
            )
        )
        return path

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: (HTTP status, body), Google's `invalid_grant` answers for a bad assertion."""
        if form.get("grant_type") != JWT_GRANT:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        assertion = form.get("assertion", "")
        try:
            header = jwt.decode_header(assertion)
            email, public = self.public_keys[header.get("kid", "")]
            claims = jwt.decode(assertion, certs={header["kid"]: public}, audience=AUDIENCE)
        except (KeyError, ValueError, google_exceptions.GoogleAuthError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims.get("iss") != email:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: iss is not the key's account."}
        if int(claims["exp"]) - int(claims["iat"]) > MAX_ASSERTION.total_seconds():
            return 400, {
                "error": "invalid_grant",
                "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            }
        token = "ya29.sim-" + secrets.token_urlsafe(48)
        scopes = tuple(str(claims.get("scope", "")).split())
        now = datetime.datetime.now(datetime.UTC)
        self.tokens[token] = AccessToken(email, now + LIFETIME, scopes)
        return 200, {"access_token": token, "expires_in": int(LIFETIME.total_seconds()), "token_type": "Bearer"}

    def issued(self, token: str) -> bool:
        """Whether `token` is a live access token of this issuer (what a Google API checks first)."""
        try:
            self.lookup(token)
        except TokenRefused:
            return False
        return True

    def lookup(self, token: str) -> AccessToken:
        """The account behind a bearer token, or TokenRefused (unknown or expired, as Google's tokeninfo says)."""
        issued = self.tokens.get(token)
        if issued is None:
            raise TokenRefused("invalid_token: the access token is not one Google issued")
        if datetime.datetime.now(datetime.UTC) >= issued.expires:
            raise TokenRefused("invalid_token: the access token expired")
        return issued

    def expire(self, token: str) -> None:
        """The token's hour has passed (the server's clock, not the client's)."""
        self.tokens[token].expires = datetime.datetime.now(datetime.UTC)


def _handler(server: GoogleTokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            status, answer = (
                server.grant(dict(urllib.parse.parse_qsl(body)))
                if self.path.split("?")[0] == "/token"
                else (404, {"error": "not_found"})
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(answer).encode())

        def log_message(self, *_: Any) -> None:
            pass

    return Handler
