"""Google sign-in before the deploy: what to register by hand, said once.

Google has no API to read an OAuth client's authorised redirect URIs or JavaScript origins
(they are set in the Cloud console: APIs & Services -> Credentials -> the OAuth 2.0 client ID;
https://developers.google.com/identity/protocols/oauth2/web-server#creatingcred), so the toolkit
cannot check them: it prints the exact values. The client id's form is a settings rule
(GOOGLE_CLIENT_ID's pattern in tools/settings.py).
"""

from __future__ import annotations

from tools.auth import wiring
from tools.settings import Settings


def registration(settings: Settings) -> str:
    """The one line saying what the Google OAuth client must list."""
    return (
        f"Google OAuth client {settings['GOOGLE_CLIENT_ID']}: register the authorised redirect URI "
        f"{wiring.callback_url(settings, 'google')} and the JavaScript origin {wiring.origin(settings)} "
        "(Cloud console -> APIs & Services -> Credentials; Google has no API to check them)"
    )
