"""The AWS CLI running a set-up script as printed: `make cloud-setup CLOUD=aws`'s bash, unchanged, against moto and
the simulated EKS API.

The CLI is PyPI's `awscli` (v1; it pins its own botocore) in a virtualenv of its own, `make setup-awscli`. It is
pointed at the test bed by the SDKs' documented endpoint variables alone, so the script needs no rewriting:
AWS_ENDPOINT_URL for every service (moto), AWS_ENDPOINT_URL_EKS for EKS (the simulated EKS API, which answers
the access-entry calls moto lacks): https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.skips import unavailable
from tools.settings import REPO_ROOT

AWS_CLI = REPO_ROOT / ".venv-awscli" / "bin" / "aws"


def run_printed_script(
    script: str, folder: Path, *, region: str, moto_url: str, eks_url: str
) -> subprocess.CompletedProcess:
    """`bash` running `script` in `folder` (its JSON files land there) with the AWS CLI first on PATH, the
    test bed's admin keys, and no profile or config of the user's."""
    if not AWS_CLI.exists():
        unavailable(f"the AWS CLI: run `make setup-awscli` (no {AWS_CLI})")
    environment = {
        "PATH": f"{AWS_CLI.parent}:/usr/bin:/bin",
        "HOME": str(folder),
        "AWS_CONFIG_FILE": str(folder / "aws-config-absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "aws-credentials-absent"),
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ENDPOINT_URL_EKS": eks_url,
        "AWS_MAX_ATTEMPTS": "1",  # a refusal is the script's business (`||`), not a retry's
    }
    path = folder / "aws-setup.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)], cwd=folder, env=environment, capture_output=True, text=True, check=False, timeout=180
    )
