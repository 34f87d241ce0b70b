"""The deploy identity on the simulated EKS, configured as the toolkit prints it: `make cloud-setup CLOUD=aws`'s
script run whole by the AWS CLI (tests/sim/aws_cli.py) and `make rbac`'s RBAC applied by a cluster admin.

Shared by the access tests (tests/test_eks_access.py) and the whole deploy (tests/test_sim_deploy_aws.py).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.envfiles import good_env, write_env
from tests.realcluster import build_and_push
from tests.sim.alb_controller import ensure_alb_class
from tests.sim.aws_cli import run_printed_script
from tests.sim.eks import ACCOUNT, CLUSTER, MOTO_KEYS, REGION
from tests.sim.litestream import stand_in_context
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


@dataclass
class PreparedAccount:
    values: dict[str, str]  # the deploy's settings (its env file's)
    env_file: Path
    role_arn: str  # the printed deploy role
    zone: str  # the public hosted zone DNS_ZONE names
    zone_id: str


def prepared_account(
    sim: Any,
    moto_url: str,
    registry: str,
    docker_host: str,
    cluster: str,
    namespace: str,
    folder: Path,
    **settings: str,
) -> PreparedAccount:
    """The account and the cluster for a deploy into `namespace`, as their admins prepare them: a public hosted zone,
    the Litestream stand-in image in the registry, the settings (good_env's, with `settings` over them), the printed
    set-up run whole by the AWS CLI, `make rbac` applied, the ALB controller's IngressClass."""
    zone = f"z{uuid.uuid4().hex[:8]}.example.org"
    route53 = boto3.client("route53", endpoint_url=moto_url, region_name=REGION, **MOTO_KEYS)
    zone_id = route53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    reference = f"{registry}/cmbsim-litestream:stand-in"
    digest = build_and_push({"DOCKER_HOST": docker_host}, stand_in_context(folder), reference)
    values = good_env(
        "aws",
        CLUSTER_NAME=CLUSTER,
        NAMESPACE=namespace,
        BASE_DOMAIN=f"cmb.{zone}",
        DNS_ZONE=zone,
        LITESTREAM_IMAGE=f"{reference}@{digest}",
        DATABASE_SIZE="1Gi",  # the test bed's volumes hold 2Gi (tests/testbed.py), EBS would make any size
        **settings,
    )
    env_file = write_env(folder / "aws.env", values)
    (folder / "setup").mkdir()
    role_arn, _ = printed_setup(sim, moto_url, folder / "setup", env_file, f"{CLUSTER}-deploy-{namespace}")
    apply_rbac(sim, env_file, folder / "setup")
    ensure_alb_class(cluster)
    return PreparedAccount(values, env_file, role_arn, zone, zone_id)


def remove_rbac(sim: Any, folder: Path) -> None:
    """What the admin applied from `make rbac` (its ClusterRole and binding are named per namespace), if anything."""
    if (folder / "setup" / "rbac.yaml").exists():
        sim.control_plane.kubectl("delete", "--ignore-not-found", "-f", str(folder / "setup" / "rbac.yaml"))
