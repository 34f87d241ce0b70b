"""smoke_test on a real kubelet: each failure state as Kubernetes 1.36 really reports it, the
diagnosis with the container's own last log line, the rollback restoring the good pods, and the
user-storage check's pod. Time to verdict is measured in `make bench-smoke`, not here; the
deadlines below only bound a test that would otherwise hang.

What a real cluster here cannot stage stays on the emulator (tests/test_smoke_test.py): a
bucket volume that fails to mount (no CSI driver in the kit), a cluster autoscaler's
TriggeredScaleUp, and an Ingress that gets an address (no ingress controller)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realcluster import RELEASE, Site, StandIns

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def good(cluster: str, cluster_namespace: str, stand_in_images: StandIns, tmp_path_factory) -> Site:
    """A healthy release (revision 1) that every test goes back to."""
    return Site(tmp_path_factory.mktemp("smoke"), cluster, cluster_namespace, stand_in_images).install_healthy()


@pytest.fixture
def site(good: Site, on_cluster: dict[str, str]) -> Site:
    return good


def good_backend(site: Site) -> str:
    backend = site.stand_ins.images()["backend"]
    return f"{backend['repository']}@{backend['digest']}"


def deploy_bad(site: Site, tmp_path: Path, variant: str, values: dict | None = None) -> None:
    images = site.stand_ins.with_backend(tmp_path, variant) if variant != "good" else None
    result = site.deploy("--no-wait", images=images, values=values)
    assert result.returncode == 0, result.stdout + result.stderr


def assert_rolled_back(site: Site, out: str) -> None:
    assert "rollback: revision" in out, out
    assert "rollback rollout cmbcluster-backend" in out and "1/1 ready" in out, out
    assert site.backend_image() == good_backend(site)
    (pod,) = site.pods("backend")
    assert pod.spec.containers[0].image == good_backend(site)
    assert all(c.ready for c in pod.status.container_statuses)
    assert site.history()[-1][1] == "deployed"


def test_a_crashing_backend_is_diagnosed_with_its_log_and_rolled_back(site: Site, tmp_path: Path) -> None:
    deploy_bad(site, tmp_path, "crash")
    # A deadline shorter than the kubelet's first CrashLoopBackOff state (~15 s): the verdict must
    # come from the second crash itself (restartCount 1, or the BackOff event).
    result = site.smoke("--deadline", "12", "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "rollout failed: pod cmbcluster-backend-" in out, out
    assert "exited with code 3 again after 1 restart" in out or "Back-off restarting failed container" in out, out
    assert "backend cannot start: database is locked" in out  # the container's own last log line
    assert_rolled_back(site, out)


def test_an_image_that_cannot_be_pulled_is_diagnosed(site: Site, tmp_path: Path) -> None:
    missing = {"repository": f"{site.stand_ins.registry}/cmbtest-backend", "tag": "never-pushed", "digest": ""}
    deploy_bad(site, tmp_path, "good", values={"backend": {"image": missing}})
    result = site.smoke("--deadline", "60", "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "ErrImagePull" in out or "ImagePullBackOff" in out, out
    assert "never-pushed" in out and "no logs: the container never started" in out
    assert_rolled_back(site, out)


def test_a_container_killed_for_memory_is_diagnosed(site: Site, tmp_path: Path) -> None:
    limits = {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "1", "memory": "24Mi"}}}
    deploy_bad(site, tmp_path, "oom", values={"backend": limits})
    result = site.smoke("--deadline", "60", "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "OOMKilled" in out and "killed for using more memory than its limit" in out, out
    assert_rolled_back(site, out)


def test_a_readiness_probe_that_never_passes_hits_the_deadline(site: Site, tmp_path: Path) -> None:
    deploy_bad(site, tmp_path, "unready")
    result = site.smoke("--deadline", "20", "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "rollout not finished: not done after 20s" in out, out
    assert "container backend runs but is not ready" in out, out
    assert_rolled_back(site, out)


def test_a_pod_no_node_can_take_is_reported_after_the_grace(site: Site, tmp_path: Path) -> None:
    huge = {"resources": {"requests": {"cpu": "64", "memory": "16Mi"}, "limits": {"cpu": "64", "memory": "1Gi"}}}
    deploy_bad(site, tmp_path, "good", values={"backend": huge})
    result = site.smoke("--deadline", "60", "--grace", "2", "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Unschedulable" in out and "Insufficient cpu" in out, out
    assert "no node can take the pod" in out
    assert_rolled_back(site, out)


def test_a_good_release_after_a_bad_one_passes_with_the_storage_check(site: Site, tmp_path: Path) -> None:
    deploy_bad(site, tmp_path, "crash")
    assert site.smoke("--deadline", "30", "--no-rollback", "--no-storage-check").returncode == 1
    fixed = site.deploy("--no-wait")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    result = site.smoke("--deadline", "120")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"smoke test of release {RELEASE} in {site.namespace} (local): healthy" in out
    # the storage pod ran the stand-in user-env image's shell on a real kubelet
    assert "user storage: bucket" in out and "in the pod: write file" in out, out
    assert "overwrite file" in out and "rename file" in out, out  # a local volume renames
    assert site.backend_image() == good_backend(site)
