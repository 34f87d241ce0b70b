"""The GCP deploy service account set up as `make cloud-setup CLOUD=gcp` and `make rbac` print it, on a simulated GKE.

No installable gcloud runs here: the IAM grants are applied to the simulation's project IAM
(tests/sim/gke_iam.py) from the structured source the printed script is made from
(tools/cloud_permissions.py gcp_grants), each checked to be in the printed script; the Kubernetes rights are
`make rbac`'s manifests for the subject the script names, applied by the cluster admin.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.envfiles import good_env, write_env
from tests.realcluster import build_and_push, ensure_ingress_class
from tests.sim.gke import CLUSTER, LOCATION, PROJECT
from tests.sim.google_apis import CloudDnsProject
from tests.sim.litestream import stand_in_context
from tools.cloud import cloud_for
from tools.cloud_permissions import gcp_grants
from tools.settings import REPO_ROOT, load_settings

RBAC_LINE = re.compile(r'make rbac CLOUD=gcp ARGS="--subject (User:\S+)"')


def account_for(namespace: str) -> str:
    return f"deploy-{namespace}@{PROJECT}.iam.gserviceaccount.com"


def gcp_tool(module: str, environ: dict[str, str], folder: Path, *args: str) -> str:
    """`python -m MODULE --cloud gcp` with `environ` as its env file: its output (exit 0 asserted)."""
    env_file = write_env(folder / "setup-gcp.env", environ)
    command = [sys.executable, "-m", module, "--cloud", "gcp", "--env-file", str(env_file), *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed_script(environ: dict[str, str], folder: Path, account: str) -> str:
    """What `make cloud-setup CLOUD=gcp` prints for the deploy service account `account`."""
    return gcp_tool("tools.cloud_setup", environ, folder, "--repository", "o/r", "--service-account", account)


def grant_printed_iam(sim: Any, environ: dict[str, str], script: str, account: str) -> set[str]:
    """The deploy role(s) of the printed script, created and bound in the simulation's IAM; the
    container.* permissions they hold."""
    cloud = cloud_for(load_settings(cloud="gcp", environ=environ))
    granted: set[str] = set()
    for grant in gcp_grants(cloud):
        role = f"projects/{PROJECT}/roles/{grant.role_id}"
        assert f"gcloud iam roles create {grant.role_id} " in script and f"--role {role}" in script
        sim.iam.create_role(grant.role_id, grant.permissions)
        sim.iam.bind(f"serviceAccount:{account}", role, grant.condition)
        granted |= {p for p in grant.permissions if p.startswith("container.")}
    return granted


def apply_printed_rbac(sim: Any, environ: dict[str, str], script: str, folder: Path) -> str:
    """`make rbac` for the subject the printed script names, applied as the cluster admin; the subject."""
    (subject,) = RBAC_LINE.findall(script)
    manifests = folder / "rbac.yaml"
    manifests.write_text(gcp_tool("tools.rbac", environ, folder, "--subject", subject))
    applied = sim.control_plane.kubectl("apply", "-f", str(manifests))
    assert applied.returncode == 0, applied.stderr
    return subject


CERT_MANAGER = f"cert-manager@{PROJECT}.iam.gserviceaccount.com"
ZONE_DOMAIN = "example.org"  # good_env's BASE_DOMAIN is cmb.example.org
ARTIFACT_REGISTRY = f"{LOCATION}-docker.pkg.dev"  # good_env("gcp")'s REGION


@dataclass
class PreparedProject:
    values: dict[str, str]  # the deploy's settings
    account: str  # the printed deploy service account
    script: str  # what `make cloud-setup CLOUD=gcp` printed for it
    google: CloudDnsProject  # Cloud DNS and Resource Manager of the project, with the public zone


def prepared_project(
    sim: Any, edge: Any, registry: str, docker_host: str, namespace: str, zone: str, folder: Path, **settings: str
) -> PreparedProject:
    """The project for a deploy into `namespace`, as its admin prepares it with DNS_ZONE (the README's
    prerequisites): the public managed zone `zone`, cert-manager's roles/dns.admin, the Litestream stand-in under its
    Artifact Registry name (the registry's path behind the edge and the mirror), the settings (good_env's, with
    `settings` over them), and the printed deploy account's IAM (which holds container.clusters.get alone)."""
    path = f"{PROJECT}/cmbcluster/litestream-stand-in:0.5.17"
    digest = build_and_push({"DOCKER_HOST": docker_host}, stand_in_context(folder), f"{registry}/{path}")
    values = good_env(
        "gcp",
        CLUSTER_NAME=CLUSTER,
        NAMESPACE=namespace,
        GKE_LOCATION=LOCATION,
        LITESTREAM_IMAGE=f"{ARTIFACT_REGISTRY}/{path}@{digest}",
        DATABASE_SIZE="1Gi",  # the test bed's volumes (tests/testbed.py) are 2Gi
        DNS_ZONE=ZONE_DOMAIN,
        CERT_MANAGER_SERVICE_ACCOUNT_EMAIL=CERT_MANAGER,
        **settings,
    )
    google = CloudDnsProject(edge.google, sim.iam)
    google.add_zone(zone, ZONE_DOMAIN)
    sim.iam.bind(f"serviceAccount:{CERT_MANAGER}", "roles/dns.admin")
    account = account_for(namespace)
    script = printed_script(values, folder, account)
    assert grant_printed_iam(sim, values, script, account) == {"container.clusters.get"}
    return PreparedProject(values, account, script, google)


def admin_prepares_namespace(sim: Any, cluster: str, project: PreparedProject, folder: Path) -> None:
    """The cluster admin's part: the namespace, the IngressClass and `make rbac` for the printed account."""
    created = sim.control_plane.kubectl("create", "namespace", project.values["NAMESPACE"])
    assert created.returncode == 0, created.stderr
    ensure_ingress_class(cluster)
    assert apply_printed_rbac(sim, project.values, project.script, folder) == f"User:{project.account}"
