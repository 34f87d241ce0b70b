"""The deploy identity on the simulated EKS, configured as the toolkit prints it: `make cloud-setup CLOUD=aws`'s
script run whole by the AWS CLI (tests/sim/aws_cli.py) and `make rbac`'s RBAC applied by a cluster admin.

Shared by the access tests (tests/test_eks_access.py) and the whole deploy (tests/test_sim_deploy_aws.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.sim.aws_cli import run_printed_script
from tests.sim.eks import ACCOUNT, REGION
from tools.settings import REPO_ROOT


def tool(module: str, env: Path, *args: str) -> str:
    """`python -m MODULE --cloud aws --env-file ENV ARGS`'s output (what `make cloud-setup`/`make rbac` print)."""
    command = [sys.executable, "-m", module, "--cloud", "aws", "--env-file", str(env), *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed_setup(
    sim: Any, moto_url: str, folder: Path, env: Path, role: str, drop: str = ""
) -> tuple[str, subprocess.CompletedProcess]:
    """The printed set-up script for `env` (less `drop`), whole, run by bash with the AWS CLI against moto and the
    simulated EKS API: the deploy role, its policy, the access entry, the IRSA roles.
    Returns the deploy role's ARN and the finished run."""
    script = tool("tools.cloud_setup", env, "--repository", "o/r", "--role-name", role)
    if drop:
        assert drop in script
        script = script.replace(drop, "")
    ran = run_printed_script(script, folder, region=REGION, moto_url=moto_url, eks_url=sim.api.url)
    assert ran.returncode == 0, f"the printed set-up stopped:\n{ran.stderr[-3000:]}"
    return f"arn:aws:iam::{ACCOUNT}:role/{role}", ran


def apply_rbac(sim: Any, env: Path, folder: Path) -> None:
    """A cluster admin applies what `make rbac CLOUD=aws` prints for `env`."""
    rbac = folder / "rbac.yaml"
    rbac.write_text(tool("tools.rbac", env))
    applied = sim.control_plane.kubectl("apply", "-f", str(rbac))
    assert applied.returncode == 0, applied.stderr
