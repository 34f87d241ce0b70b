"""smoke_test on a real kubelet: each failure state as Kubernetes 1.36 really reports it, the
diagnosis with the container's own last log line, the rollback restoring the good pods, and the
user-storage check's pod. Time to verdict is measured in `make bench-smoke`, not here; the
deadlines below only bound a test that would otherwise hang.

What a real cluster here cannot stage stays on the emulator (tests/test_smoke_test.py): a
bucket volume that fails to mount (no CSI driver in the kit), a cluster autoscaler's
TriggeredScaleUp, and an Ingress that gets an address (no ingress controller)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.realcluster import RELEASE, Site

pytestmark = pytest.mark.testbed


@pytest.fixture
def site(healthy_site: Site, on_cluster: dict[str, str]) -> Site:
    """A healthy release (revision 1) that every test goes back to."""
    return healthy_site


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


def never_pushed(site: Site) -> dict:
    """The backend's image as a tag the registry never had."""
    missing = {"repository": f"{site.stand_ins.registry}/cmbtest-backend", "tag": "never-pushed", "digest": ""}
    return {"backend": {"image": missing}}


LIMITS = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "1", "memory": "24Mi"}}
HUGE = {"requests": {"cpu": "64", "memory": "16Mi"}, "limits": {"cpu": "64", "memory": "1Gi"}}
# Each failure: the backend variant (or values) deployed, smoke_test's arguments, and what its diagnosis says
# (each tuple: one of its texts). The verdict and the rollback are asserted alike for all.
FAILURES = [
    pytest.param(
        "crash",
        None,
        # A deadline shorter than the kubelet's first CrashLoopBackOff state (~15 s): the verdict must
        # come from the second crash itself (restartCount 1, or the BackOff event).
        ("--deadline", "12"),
        [
            ("rollout failed: pod cmbcluster-backend-",),
            ("exited with code 3 again after 1 restart", "Back-off restarting failed container"),
            ("backend cannot start: database is locked",),  # the container's own last log line
        ],
        id="crash",
    ),
    pytest.param(
        "good",
        never_pushed,
        ("--deadline", "60"),
        [("ErrImagePull", "ImagePullBackOff"), ("never-pushed",), ("no logs: the container never started",)],
        id="image-pull",
    ),
    pytest.param(
        "oom",
        {"backend": {"resources": LIMITS}},
        ("--deadline", "60"),
        [("OOMKilled",), ("killed for using more memory than its limit",)],
        id="memory",
    ),
    pytest.param(
        "unready",
        None,
        ("--deadline", "20"),
        [("rollout not finished: not done after 20s",), ("container backend runs but is not ready",)],
        id="readiness-deadline",
    ),
    pytest.param(
        "good",
        {"backend": {"resources": HUGE}},
        ("--deadline", "60", "--grace", "2"),
        [("Unschedulable",), ("Insufficient cpu",), ("no node can take the pod",)],
        id="unschedulable-after-grace",
    ),
]


@pytest.mark.parametrize(("variant", "values", "smoke_args", "diagnosis"), FAILURES)
def test_a_failing_backend_is_diagnosed_and_rolled_back(
    site: Site,
    tmp_path: Path,
    variant: str,
    values: dict | Callable[[Site], dict] | None,
    smoke_args: tuple[str, ...],
    diagnosis: list[tuple[str, ...]],
) -> None:
    deploy_bad(site, tmp_path, variant, values=values(site) if callable(values) else values)
    result = site.smoke(*smoke_args, "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert diagnosis
    for texts in diagnosis:
        assert any(text in out for text in texts), (texts, out)
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
    # judged by the script's ok line, read from its log, not by the phase the kubelet reports a relist later
    assert re.search(r"user storage: .*, run \d+\.\ds \(its ok line\), in the pod", out), out
    assert "overwrite file" in out and "rename file" in out, out  # a local volume renames
    assert site.backend_image() == good_backend(site)
