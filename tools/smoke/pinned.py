"""A requests session that sends HTTPS for a public name to another address (real Host and SNI).

For checks that run before DNS points at the Ingress (`smoke_test --address`): the endpoint
checks and the live sign-in check share it.
"""

from __future__ import annotations

from typing import Any


def pinned_session(hostname: str, address: str) -> Any:
    """A requests session whose HTTPS requests to `address` carry the SNI and Host of `hostname`."""
    import requests
    from requests.adapters import HTTPAdapter

    class PinnedHost(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["server_hostname"] = hostname
            kwargs["assert_hostname"] = hostname
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount(f"https://{address}", PinnedHost())
    return session
