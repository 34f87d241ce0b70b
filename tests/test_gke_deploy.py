"""Issue 18: `make deploy-gcp` whole, as the printed deploy service account, on the simulated GKE on the real cluster.

The deploy service account is set up as `make cloud-setup CLOUD=gcp` and `make rbac` print it
(tests/sim/gke_setup.py); the test writes an env file, gives `make deploy-gcp` the account's key file
(GOOGLE_APPLICATION_CREDENTIALS) and the network edge's client environment, and nothing else: every Google
call goes to its real host name through the edge (oauth2 and container.googleapis.com, storage.googleapis.com,
us-central1-docker.pkg.dev), one issuer's access tokens are accepted by GCS, Artifact Registry, GKE's cluster
API and GKE's authenticator (tests/sim/edge.py), and the tools' kubeconfig points at the simulated GKE's
apiserver (tests/sim/controlplane.py, on the kit's etcd): what the account makes runs on the kit's kubelet,
which pulls the images by their Artifact Registry names through containerd's mirror, and the storage check
mounts the smoke bucket with the stand-in `gcsfuse.csi.storage.gke.io` driver (tests/sim/csi.py).

Ran: validate, build (pushed through the edge), secrets, certs (GKE's is cert-manager's: skipped by the tool),
helm-deploy (preflight, reading cert-manager's roles/dns.admin through Resource Manager; the database bucket in
the GCS emulator; the release), dns (the Cloud DNS stand-in of tests/sim/google_apis.py, with the Ingress's
address written as ingress-nginx would, tests/sim/ingress_status.py) and smoke (rollout, images by digest, user
storage). Not run, and why: the HTTPS endpoints and what the names resolve to (SMOKE_ARGS=--no-endpoints: no
ingress controller or load balancer answers at the address); cert-manager (not on the kit: the chart's
existing-ClusterIssuer option, as tests/test_cluster_user_environment.py does, so no Issuer is made and no
certificate issued); Litestream (a stand-in image, tests/sim/litestream.py: pods have no route to the bucket).
Where a stand-in says "yes" and Google might not: the GCS emulator and the registry take any token the edge's
issuer issued, whatever the account's storage or Artifact Registry roles; only its Kubernetes rights (RBAC and
GKE's IAM), Cloud DNS's and Resource Manager's permissions and clusters.get are checked against the printed IAM.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.envfiles import write_env
from tests.fixtures.apps import stage_apps
from tests.realcluster import RELEASE, core, delete_namespace
from tests.sim.edge import containerd_mirror
from tests.sim.edge_routes import CLOUD_DNS, GKE, RESOURCE_MANAGER
from tests.sim.gke import CLUSTER, CLUSTER_NAME, PROJECT
from tests.sim.gke_iam import ProjectIam
from tests.sim.gke_setup import ARTIFACT_REGISTRY, ZONE_DOMAIN, admin_prepares_namespace, prepared_project
from tests.sim.google_apis import CloudDnsProject
from tests.sim.ingress_status import ADDRESS, publishing
from tests.testbed import recycle_test_volumes
from tools.cloud import cloud_for
from tools.cloud.clouddns import CloudDnsZone
from tools.dnsrecords import Change, Record
from tools.errors import ToolError
from tools.helm import helm_binary
from tools.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.testbed
ZONE = "cmb-zone"
STEPS = ("validate_secrets", "build_push", "make_secrets", "certs", "helm_deploy", "dns", "smoke_test")


def make_deploy_gcp(env_file: Path, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    values = folder / "values.json"
    # the kit has no cert-manager: the chart's option for an existing ClusterIssuer, so it makes no Issuer
    values.write_text(json.dumps({"ingress": {"certManager": {"email": "", "clusterIssuer": "existing-issuer"}}}))
    args = [
        f"ENV_FILE={env_file}",
        f"IMAGES_FILE={folder / 'images.json'}",
        f"HELM_DEPLOY_ARGS=--values {values} --timeout 3m",
        "SMOKE_ARGS=--no-endpoints",
    ]
    return subprocess.run(
        ["make", "--no-print-directory", "deploy-gcp", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def running(kubeconfig: str, namespace: str) -> dict[str, str]:
    """uid -> component of the release's backend and frontend pods, each asserted Running."""
    pods = core(kubeconfig).list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}")
    found = {}
    for pod in pods.items:
        component = pod.metadata.labels.get("app.kubernetes.io/component", "")
        if component in ("backend", "frontend") and not pod.metadata.deletion_timestamp:
            assert pod.status.phase == "Running", (pod.metadata.name, pod.status.phase)
            found[pod.metadata.uid] = component
    assert sorted(found.values()) == ["backend", "frontend"], found
    return found


def secret_data(kubeconfig: str, namespace: str) -> dict[str, str]:
    return core(kubeconfig).read_namespaced_secret(f"{RELEASE}-backend-secrets", namespace).data or {}


def test_make_deploy_gcp_as_the_printed_service_account_runs_whole_and_converges(
    simulated_gke_cluster: Any,
    network_edge: Any,
    edge_docker: str,
    docker_host: str,
    registry: str,
    cluster: str,
    kit_certs: Path,
    testbed: Any,
    stand_in_csi: Any,
    tmp_path: Path,
) -> None:
    sim = simulated_gke_cluster
    recycle_test_volumes(cluster)
    namespace = f"cmb-gke-deploy-{os.urandom(3).hex()}"
    contexts = stage_apps(tmp_path / "apps")
    project = prepared_project(
        sim,
        network_edge,
        registry,
        docker_host,
        namespace,
        ZONE,
        tmp_path,
        **{f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in contexts.items()},
    )
    environ, account, google = project.values, project.account, project.google
    env_file = write_env(tmp_path / "gcp.env", environ)
    key_file = network_edge.google_service_account(account, PROJECT)
    # the CI job's environment: the edge's proxy and CA, the key file; no emulator or cluster variable of the bed
    env = {k: v for k, v in os.environ.items() if k not in testbed.env and k != "KUBECONFIG"}
    env.update(
        network_edge.client_env(),
        GOOGLE_APPLICATION_CREDENTIALS=str(key_file),
        DOCKER_HOST=edge_docker,
        DOCKER="/usr/bin/docker",
        DOCKER_BUILDKIT="0",
        NO_COLOR="1",
    )
    seen = len(sim.hooks.log)
    try:
        admin_prepares_namespace(sim, cluster, project, tmp_path)
        with (
            network_edge.routed(GKE, sim.api.serve_http()),
            network_edge.routed(CLOUD_DNS, google.serve_http()),
            network_edge.routed(RESOURCE_MANAGER, google.serve_http()),
            containerd_mirror(kit_certs, [ARTIFACT_REGISTRY], registry),
            publishing(cluster, namespace),
        ):
            first = make_deploy_gcp(env_file, tmp_path, env)
            text = first.stdout + first.stderr
            assert first.returncode == 0, text[-5000:] + "\n" + "\n".join(sim.hooks.log[-10:])
            pods = running(cluster, namespace)
            secrets = secret_data(cluster, namespace)
            second = make_deploy_gcp(env_file, tmp_path, env)
            again = second.stdout + second.stderr
            assert second.returncode == 0, again[-5000:]

        smoke = cloud_for(load_settings(cloud="gcp", environ=environ)).smoke_bucket
        # each step ran and said its result in a line
        for step in STEPS:
            assert f"tools.{step} " in text and f"tools.{step} " in again
        for line in (
            "is valid for gcp",
            "3 image(s) ready, 3 built",
            f"secrets in namespace {namespace}: 13 created, 0 updated, 0 rotated",
            "skipped certificate: cert-manager issues the certificate in the cluster",
            f"ok      preflight of gcp cluster, namespace {namespace}",
            "ok      database bucket: gs://cmb-project-cmbsim-db ",
            f"helm install cmbcluster in {namespace}: revision 1 deployed",
            f"Ingress {namespace}/cmbcluster address: {ADDRESS}",
            f"ok      6 change(s) in Cloud DNS managed zone {ZONE} ({ZONE_DOMAIN}), waiting until in sync: change 1 ",
            f"ok      user storage: bucket {smoke}: ",
            f"smoke test of release cmbcluster in {namespace} (gcp): healthy",
        ):
            assert line in text, f"{line!r} not in:\n{text[-4000:]}"
        assert text.count(f"image backend: {ARTIFACT_REGISTRY}/{PROJECT}/cmbcluster/{CLUSTER}-backend@sha256:") == 1
        # the records in the zone, each name with its ownership TXT record; preflight read cert-manager's role
        records = google.records(ZONE)
        for name in ("cmb.example.org.", "api.cmb.example.org.", "*.cmb.example.org."):
            assert records[(name, "A")]["rrdatas"] == [ADDRESS], records
        assert sum(kind == "TXT" for _, kind in records) == 3, records
        assert "roles/dns.admin" not in text, text[-4000:]
        # the storage check's pod mounted the smoke bucket through the stand-in gcsfuse driver
        assert "gcsfuse.csi.storage.gke.io: published " in stand_in_csi.log()
        # the account did it: through GKE's cluster API and authenticator, its rights from RBAC alone
        assert CLUSTER_NAME in sim.api.calls
        log = sim.hooks.log[seen:]
        assert f"authenticated {account}" in log and not any(line.startswith("allowed by IAM") for line in log)
        hosts = {host for host, _, _ in network_edge.proxy.seen}
        google_hosts = {"oauth2.googleapis.com", "container.googleapis.com", "storage.googleapis.com"}
        assert google_hosts | {ARTIFACT_REGISTRY} <= hosts
        assert any(h == ARTIFACT_REGISTRY and m == "PUT" and "/manifests/" in p for h, m, p in network_edge.proxy.seen)

        # the second run converges: nothing built, no secret rotated, no pod restarted
        assert "3 image(s) ready, 0 built" in again, again[-3000:]
        assert "dns: 3 records in sync, nothing to change" in again and google.records(ZONE) == records, again[-3000:]
        assert "0 created, 0 updated, 0 rotated, 13 kept" in again, again[-3000:]
        assert "release cmbcluster: unchanged (revision 1), nothing to upgrade" in again, again[-3000:]
        assert secret_data(cluster, namespace) == secrets
        assert running(cluster, namespace) == pods
    finally:
        google.stop()
        subprocess.run(
            [helm_binary(), "uninstall", RELEASE, "-n", namespace, "--kubeconfig", cluster, "--wait"],
            capture_output=True,
            check=False,
            timeout=300,
        )
        delete_namespace(cluster, namespace)


def test_the_cloud_dns_stand_in_refuses_as_cloud_dns_does(
    network_edge: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in's refusals that `make dns` relies on meeting (its "yes" above means something): a change
    from an account without roles/dns.admin's permissions (403), a deletion that does not match the record
    set (412) and an addition that exists (409), each refused whole; tools/cloud/clouddns.py, through the edge."""
    iam = ProjectIam(PROJECT)
    google = CloudDnsProject(network_edge.google, iam)
    google.add_zone(ZONE, ZONE_DOMAIN)
    admin, reader = (f"{n}@{PROJECT}.iam.gserviceaccount.com" for n in ("dns-admin", "dns-reader"))
    iam.bind(f"serviceAccount:{admin}", "roles/dns.admin")
    iam.create_role("dnsReader", ("dns.managedZones.list", "dns.resourceRecordSets.list"))
    iam.bind(f"serviceAccount:{reader}", f"projects/{PROJECT}/roles/dnsReader")
    for key, value in network_edge.client_env().items():
        monkeypatch.setenv(key, value)
    record = Record("cmb.example.org", "A", ("203.0.113.10",))
    moved = Record("cmb.example.org", "A", ("203.0.113.11",))

    def as_account(email: str) -> CloudDnsZone:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(network_edge.google_service_account(email, PROJECT)))
        return CloudDnsZone(ZONE_DOMAIN, PROJECT)

    try:
        with network_edge.routed(CLOUD_DNS, google.serve_http()):
            with pytest.raises(ToolError, match=r"^Cloud DNS changing example.org: .* grant roles/dns.admin"):
                as_account(reader).apply([Change("create", record)], "refused")
            zone = as_account(admin)
            zone.wait(zone.apply([Change("create", record)], "made"), timeout=10)
            with pytest.raises(ToolError, match="HTTP 409"):
                zone.apply([Change("create", record)], "exists")
            with pytest.raises(ToolError, match="HTTP 412"):
                zone.apply(
                    [
                        Change("update", moved, before=moved),
                        Change("create", Record("api.cmb.example.org", "A", ("1.2.3.4",))),
                    ],
                    "",
                )
            found = zone.records(["cmb.example.org", "api.cmb.example.org"])
    finally:
        google.stop()
    assert found == {"cmb.example.org": {"A": record}}  # the refused changes changed nothing
