"""Fixtures for the real test bed: one per part, started once per session, on loopback only.

A part that cannot be installed on this machine makes its tests skip with the reason; under
CI (CI=true) that is a failure instead, because .ci/run installs every part.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realcluster import Site, create_namespace, delete_namespace
from tests.skips import unavailable
from tests.testbed import PartUnavailable, TestBed
from tools.report import REPORTER


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the test bed, even through another fixture, is marked `testbed`: `make test-quick`
    (`-m "not testbed"`) then starts no part of it."""
    for item in items:
        if "testbed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.testbed)


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestBed]:
    bed = TestBed()
    yield bed
    bed.stop()


def _part(bed: TestBed, name: str) -> str:
    try:
        return getattr(bed, name)()
    except PartUnavailable as exc:
        unavailable(f"test bed part: {exc}")


@pytest.fixture(scope="session")
def docker_host(testbed: TestBed) -> str:
    return _part(testbed, "docker")


@pytest.fixture(scope="session")
def registry(testbed: TestBed) -> str:
    return _part(testbed, "registry")


@pytest.fixture(scope="session")
def second_registry(testbed: TestBed) -> str:
    """Another registry (another account's or project's): copies between registries."""
    return _part(testbed, "second_registry")


@pytest.fixture(scope="session")
def moto_url(testbed: TestBed) -> str:
    return _part(testbed, "moto")


@pytest.fixture(scope="session")
def moto_acm_stuck_url(testbed: TestBed, moto_url: str) -> str:
    """A moto whose ACM never validates (point AWS_ENDPOINT_URL_ACM at it; the rest stays on moto_url)."""
    return _part(testbed, "moto_acm_stuck")


@pytest.fixture(scope="session")
def moto_iam_url(testbed: TestBed) -> str:
    """moto that enforces IAM policies (a server of its own: the shared one allows everything)."""
    return _part(testbed, "moto_iam")


@pytest.fixture(scope="session")
def gcs_url(testbed: TestBed) -> str:
    return _part(testbed, "gcs")


@pytest.fixture(scope="module")
def kubeconfig(testbed: TestBed) -> str:
    """An empty Kubernetes API emulator for this test module (kmock slows down as it fills up)."""
    return _part(testbed, "fresh_kubernetes")


@pytest.fixture(scope="module")
def helm_sql(testbed: TestBed, kubeconfig: str) -> str:
    """Helm's SQL release store, empty for this module's emulator."""
    return _part(testbed, "helm_sql")


@pytest.fixture
def bed_env(testbed: TestBed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The started parts' environment, applied to this test's process (and its subprocesses)."""
    for key, value in testbed.env.items():
        monkeypatch.setenv(key, value)
    return dict(testbed.env)


@pytest.fixture(autouse=True)
def _no_ambient_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own cloud settings or credentials."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_", "GITHUB_")) or key in (
            "KUBECONFIG",
            "CLOUD_PROVIDER",
            "DEBUG",
            "DEV_MODE",
            "NAMESPACE",
            "REGION",
            "CI_FORCE_COLOR",
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    REPORTER.forget_secrets()
    import boto3

    boto3.DEFAULT_SESSION = None  # a session caches credentials across tests
    monkeypatch.setenv("NO_COLOR", "1")


# -- the real Kubernetes cluster --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cluster(testbed: TestBed) -> str:
    """A real Kubernetes cluster (the kit, or $CMB_TEST_KUBECONFIG): the path of an admin kubeconfig."""
    return _part(testbed, "cluster")


@pytest.fixture(scope="module")
def cluster_namespace(cluster: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the real cluster for this test module, deleted after it (volumes recycled first)."""
    from tests.realcluster import create_namespace, delete_namespace
    from tests.testbed import recycle_test_volumes

    recycle_test_volumes(cluster)
    name = create_namespace(cluster, request.module.__name__.rpartition(".")[2])
    yield name
    delete_namespace(cluster, name)


@pytest.fixture
def on_cluster(testbed: TestBed, cluster: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's process (and its subprocesses) talks to the real cluster, helm with its default storage."""
    env = testbed.cluster_env()
    for key in testbed.env.keys() - env.keys():  # the emulator's settings (kmock, Helm's SQL driver)
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def site(
    tmp_path: Path, cluster: str, on_cluster: dict[str, str], stand_in_images: Any, request: pytest.FixtureRequest
) -> Iterator[Site]:
    """A local-cloud site in a namespace of its own for this test (deleted after), nothing installed yet."""
    namespace = create_namespace(cluster, request.module.__name__.rpartition(".")[2].removeprefix("test_"))
    yield Site(tmp_path, cluster, namespace, stand_in_images)
    delete_namespace(cluster, namespace)


@pytest.fixture(scope="module")
def healthy_site(
    cluster: str, cluster_namespace: str, stand_in_images: Any, tmp_path_factory: pytest.TempPathFactory
) -> Site:
    """A site in the module's namespace with revision 1 of the release healthy: the state its tests go back to."""
    return Site(tmp_path_factory.mktemp("site"), cluster, cluster_namespace, stand_in_images).install_healthy()


@pytest.fixture(scope="session")
def stand_in_images(testbed: TestBed, cluster: str, docker_host: str, registry: str, tmp_path_factory) -> Any:
    """The three stand-in images built by build_push into the loopback registry, plus failing variants."""
    from tests.realcluster import StandIns

    return StandIns.build(tmp_path_factory.mktemp("stand-ins"), dict(testbed.env), registry)


# -- the simulated EKS access path (tests/sim) ------------------------------------------------------------
@pytest.fixture(scope="session")
def simulated_eks(moto_url: str) -> Iterator[Any]:
    """EKS's authentication and access policies on a control-plane-only apiserver of the kit (see tests/sim)."""
    from tests.sim.eks import SimulatedEks
    from tests.testbed import kit_dir

    kit = kit_dir()
    if kit is None:
        unavailable("the simulated EKS needs the Kubernetes kit (../shared/k8s or CMB_K8S_KIT)")
    sim = SimulatedEks(kit, moto_url)
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def simulated_gke() -> Iterator[Any]:
    """GKE's token server, cluster API, authenticator and IAM authorizer on a control-plane-only apiserver."""
    from tests.sim.gke import SimulatedGke
    from tests.testbed import kit_dir

    kit = kit_dir()
    if kit is None:
        unavailable("the simulated GKE needs the Kubernetes kit (../shared/k8s or CMB_K8S_KIT)")
    sim = SimulatedGke(kit)
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def simulated_eks_cluster(testbed: TestBed, cluster: str, moto_url: str) -> Iterator[Any]:
    """The simulated EKS on the real cluster: its access path is a second apiserver on the kit's etcd, so what
    the deploy role makes runs on the kit's kubelet (tests/sim/controlplane.py)."""
    from tests.sim.controlplane import kit_home
    from tests.sim.eks import SimulatedEks
    from tests.testbed import kit_dir

    kit, home = kit_dir(), kit_home(cluster, testbed.env.get("K8S_HOME"))
    if kit is None or home is None:
        unavailable("the simulated EKS on the real cluster needs the kit's cluster (not CMB_TEST_KUBECONFIG's)")
    sim = SimulatedEks(kit, moto_url, storage=home)
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def simulated_gke_cluster(testbed: TestBed, cluster: str, network_edge: Any) -> Iterator[Any]:
    """The simulated GKE on the real cluster (a second apiserver on the kit's etcd, as for EKS above), taking
    the access tokens of the network edge's one Google token issuer."""
    from tests.sim.controlplane import kit_home
    from tests.sim.gke import SimulatedGke
    from tests.testbed import kit_dir

    kit, home = kit_dir(), kit_home(cluster, testbed.env.get("K8S_HOME"))
    if kit is None or home is None:
        unavailable("the simulated GKE on the real cluster needs the kit's cluster (not CMB_TEST_KUBECONFIG's)")
    sim = SimulatedGke(kit, storage=home, tokens=network_edge.google)
    try:
        yield sim.start()
    finally:
        sim.stop()


# -- the stand-in bucket drivers (tests/sim/csi.py) ------------------------------------------------------
@pytest.fixture(scope="module")
def stand_in_csi(testbed: TestBed, cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """s3.csi.aws.com and gcsfuse.csi.storage.gke.io registered with the cluster's kubelet for this module only."""
    from tests.envfiles import good_env
    from tests.sim.csi import StandInCsi, kubelet_dir

    folder = kubelet_dir(cluster, testbed.env.get("K8S_HOME"))
    if folder is None:
        unavailable("the stand-in CSI drivers need the kit's kubelet (no data/kubelet/plugins_registry beside it)")
    csi = StandInCsi(cluster, folder, tmp_path_factory.mktemp("csi"), good_env("gcp")["PROJECT_ID"])
    try:
        yield csi.start()
    finally:
        csi.stop()


# -- the network edge: the providers' real host names, intercepted (tests/sim/edge.py) -------------------
@pytest.fixture(scope="session")
def network_edge(moto_url: str, registry: str, gcs_url: str, tmp_path_factory) -> Iterator[Any]:
    """The test CA and the intercepting proxy in front of moto, the registry and the GCS emulator."""
    from tests.sim.edge import NetworkEdge

    edge = NetworkEdge(tmp_path_factory.mktemp("edge"), moto=moto_url, registry=registry, gcs=gcs_url)
    yield edge
    edge.stop()


@pytest.fixture
def kit_certs(cluster: str, testbed: TestBed) -> Path:
    """The kit's containerd registry-host folder, where the registries' real names are mapped (tests/sim/edge.py)."""
    from tests.sim.edge import containerd_certs_dir

    certs = containerd_certs_dir(cluster, testbed.env.get("K8S_HOME"))
    if certs is None:
        unavailable("the cluster is not the kit's: no containerd hosts.toml folder to map registry hosts in")
    return certs


@pytest.fixture(scope="session")
def edge_docker(testbed: TestBed, network_edge: Any) -> str:
    """A private dockerd that reaches registries through the network edge (its proxy and CA). DOCKER_HOST."""
    try:
        return testbed.dockerd("edge-docker", network_edge.client_env())
    except PartUnavailable as exc:
        unavailable(f"test bed part: {exc}")
