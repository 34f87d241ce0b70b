"""Google's APIs without gcloud: Application Default Credentials, an access token, one REST call
turned into one clear line on failure (shared by gcp and clouddns)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tools.errors import ToolError


def google_credentials() -> Any:
    """Application Default Credentials for the cloud-platform scope (no gcloud needed), not yet refreshed."""
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ToolError(
            "no Google credentials: run `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS (in CI use google-github-actions/auth)"
        ) from None
    return credentials


def google_access_token() -> str:
    """An OAuth access token from Application Default Credentials (no gcloud needed)."""
    import google.auth.exceptions
    import google.auth.transport.requests

    credentials = google_credentials()
    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.RefreshError as exc:
        raise ToolError(f"Google credentials were refused: {exc.args[0] if exc.args else exc}") from None
    return credentials.token


def google_request(session: Any, method: str, url: str, what: str, **kwargs: Any) -> Any:
    """One Google REST call on an AuthorizedSession: the response, whatever its status, or one clear
    line when the credentials are refused or the API cannot be reached."""
    import google.auth.exceptions  # heavy: only when Google is called, never for --help or plan
    import requests

    try:
        return session.request(method, url, timeout=30, **kwargs)
    except google.auth.exceptions.RefreshError as exc:
        raise ToolError(f"Google credentials were refused: {exc.args[0] if exc.args else exc}") from None
    except requests.RequestException as exc:
        host = urllib.parse.urlsplit(url).hostname
        raise ToolError(f"{what}: cannot reach {host} ({type(exc).__name__}): check the network") from None


def google_error(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"]).splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        return response.reason or "no message"
