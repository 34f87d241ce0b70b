"""The Ingress's certificate for BASE_DOMAIN and *.BASE_DOMAIN, before helm_deploy.

On AWS: an ISSUED ACM certificate covering both names is found, or one is requested with DNS
validation, its validation CNAMEs written into DNS_ZONE (owned as the dns step owns its records)
and the run waits for ISSUED; helm_deploy then finds it and gives its ARN to the chart. An
explicit AWS_CERTIFICATE_ARN wins; without DNS_ZONE the step is skipped. On GCP cert-manager
issues the certificate in the cluster (the chart's Issuer: DNS-01 through Cloud DNS with
DNS_ZONE), so there is nothing to do here. The cloud calls it makes: AWS_ACTIONS in
tools/cloud/acm.py. Exit 0 ok or skipped, 1 failure or timeout, 2 usage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from tools import cli
from tools.cloud import cloud_for
from tools.config_rules import require_valid
from tools.errors import ToolError
from tools.report import REPORTER


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="for the validation records and for ISSUED (1800: DNS validation takes minutes)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.timeout < float("inf"):
        raise ToolError("--timeout must be a positive number of seconds", 2)
    settings = cli.settings_from(args)

    if settings["DNS_ZONE"] and settings.cloud == "aws" and not settings["AWS_CERTIFICATE_ARN"]:
        require_valid(settings, "certs", uses_secrets=False)
    start = time.monotonic()
    status, done = cloud_for(settings).ensure_certificate(dry_run=args.dry_run, timeout=args.timeout)
    REPORTER.line(status, f"certificate: {done}", time.monotonic() - start)
    if status == "ok":
        REPORTER.summary(f"### certs\n{done}")
    if args.dry_run:
        REPORTER.info("dry run: nothing was changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
