"""The kubeconfig's exec credential plugin for EKS: prints an ExecCredential with a fresh token.

    python -m tools.eks_token --cluster NAME --region REGION

helm, kubectl and the tools' own client run it when they need a token and again when the last
one expires, so a run longer than one token (15 minutes) keeps working. The credentials are
whatever boto3 finds (a profile, SSO, the CI job's OIDC role). No aws CLI is needed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence

from tools.cli import main_boundary
from tools.cloud.eks import EKS_TOKEN_LIFETIME, EXEC_API_VERSION, eks_token
from tools.report import REPORTER


@main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True, help="the EKS cluster's name")
    parser.add_argument("--region", required=True, help="its AWS region")
    args = parser.parse_args(argv)

    REPORTER.print_to_stderr()  # stdout is the ExecCredential the caller parses, and nothing else

    token = eks_token(args.cluster, args.region)
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=EKS_TOKEN_LIFETIME)
    credential = {
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    sys.stdout.write(json.dumps(credential) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
