"""moto's server, for the IAM-enforcing part of the test bed, with one fix to moto 5's signature check.

moto checks a request's SigV4 signature by signing it again. For a request with neither a body
nor a query string (a GET such as EKS's `GET /clusters/NAME`) moto's parsed data falls back to the request's
headers, and its check signs those as if they were the body: every such call answers
SignatureDoesNotMatch whatever the credentials. The fix signs an empty body, as the client did.
Everything else, and every policy decision, is moto's own.

    python -m tests.moto_iam_server -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys
from typing import Any


def _sign_the_empty_body_that_was_sent() -> None:
    from moto.iam.access_control import IAMRequest

    original = IAMRequest._create_aws_request

    def create_aws_request(self: Any) -> Any:
        if not self._body and self._method in ("GET", "HEAD", "DELETE"):
            self._data = {}
        return original(self)

    IAMRequest._create_aws_request = create_aws_request  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    _sign_the_empty_body_that_was_sent()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
