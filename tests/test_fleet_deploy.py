"""`make fleet-deploy` and `make status` on the real cluster: two local targets (two namespaces) in one
wave, the images built once (the stand-ins: nothing to rebuild) and copied by digest into the second
target's registry, deployed in parallel and smoke-tested, then both healthy in `make status`
until a hand-edited Deployment is named as drift; a failing canary leaves the later wave untouched.
The cluster has no ingress controller, so smoke skips the HTTPS checks (SMOKE_ARGS=--no-endpoints)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.envfiles import write_env
from tests.make import make
from tests.realcluster import Site, apps, create_namespace, delete_namespace
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed


def fleet_args(fleet: Path, images: Path | None) -> list[str]:
    given = [f"FLEET_ARGS=--images {images}"] if images else []
    return [f"FLEET={fleet}", *given, "SMOKE_ARGS=--no-endpoints", "SETUP="]


def fleet_deploy(fleet: Path, images: Path | None, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return make("-s", "fleet-deploy", *fleet_args(fleet, images), env=env, timeout=600)


def status(fleet: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return make("-s", "status", f"FLEET={fleet}", "STATUS_ARGS=--no-endpoints", "SETUP=", *args, env=env, timeout=300)


def write_fleet(root: Path, waves: list[list[Site]]) -> Path:
    """A fleet whose targets are the sites' namespaces, each site's env file as env/<namespace>.env."""
    (root / "env").mkdir()
    for site in (s for wave in waves for s in wave):
        write_env(root / "env" / f"{site.namespace}.env", site.values)
    lines = [
        f"  - name: wave{n}\n    targets: [{', '.join(s.namespace for s in wave)}]\n" for n, wave in enumerate(waves)
    ]
    (root / "fleet.yaml").write_text("waves:\n" + "".join(lines))
    return root / "fleet.yaml"


def sites(tmp_path: Path, cluster: str, stand_in_images, count: int, prefix: str) -> list[Site]:
    """Sites whose images build from the stand-in apps (the very images stand_in_images built)."""
    contexts = {f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in stand_in_images.contexts.items()}
    made = []
    for number in range(count):
        namespace = create_namespace(cluster, f"{prefix}{number}")
        folder = tmp_path / namespace
        folder.mkdir()
        made.append(
            Site(folder, cluster, namespace, stand_in_images, BASE_DOMAIN=f"{namespace}.localtest.me", **contexts)
        )
    return made


def test_one_wave_of_two_local_targets_is_deployed_in_parallel_then_status_names_drift(
    tmp_path, cluster, on_cluster, stand_in_images, second_registry
):
    one, two = sites(tmp_path, cluster, stand_in_images, 2, "fleet")
    two.values["REGISTRY_URL"] = second_registry  # another account's registry: a copy by digest, no build
    try:
        fleet = write_fleet(tmp_path, [[one, two]])
        proc = fleet_deploy(fleet, None, on_cluster)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text[-4000:]
        assert "collisions: none among 2 target(s)" in text
        full = stand_in_images.images()["backend"]["digest"]
        digest = full[:19]
        assert f"build once: {stand_in_images.images()['backend']['tag']} (backend {digest}) for linux/amd64" in text
        assert "wave 1 (wave0): 2/2 passed" in text
        for site, registry in ((one, stand_in_images.registry), (two, second_registry)):
            assert f"ok      target {site.namespace}: deployed on " in text and digest in text
            assert [status for _, status in site.history()] == ["deployed"]
            image = site.backend_image()  # the very image, from its own registry
            assert image.startswith(f"{registry}/cmbtest-backend") and image.endswith(full)
            log = (REPO_ROOT / "out" / site.namespace / "deploy.log").read_text()
            assert f"in {site.namespace} (local): healthy" in log  # its own smoke, in its own log
        copied = (REPO_ROOT / "out" / two.namespace / "deploy.log").read_text()
        assert f"3 image(s) by digest in {second_registry}, " in copied
        assert (
            f"images already in {stand_in_images.registry}"
            in (REPO_ROOT / "out" / one.namespace / "deploy.log").read_text()
        )

        healthy = status(fleet, on_cluster)
        text = healthy.stdout + healthy.stderr
        assert healthy.returncode == 0, text[-4000:]
        for site in (one, two):
            assert f"ok      target {site.namespace}: healthy: revision 1 deployed" in text
            assert f"backend@{digest}" in text and "pods 2/2 ready" in text
        assert "2 target(s) healthy, no drift" in text

        # A hand edit the chart does not make: the frontend's Deployment gets a label of its own
        patch = {"metadata": {"labels": {"app.kubernetes.io/name": "edited-by-hand"}}}
        apps(cluster).patch_namespaced_deployment("cmbcluster-frontend", two.namespace, patch)
        summary = tmp_path / "summary.md"
        drifted = status(fleet, {**on_cluster, "GITHUB_STEP_SUMMARY": str(summary)})
        text = drifted.stdout + drifted.stderr
        assert drifted.returncode == 2, text[-4000:]  # make's code for a failed recipe
        assert f"ok      target {one.namespace}: healthy" in text
        assert (
            f"error   target {two.namespace}: drift: Deployment cmbcluster-frontend: "
            "metadata.labels.app.kubernetes.io/name differs"
        ) in text
        table = summary.read_text()  # the job summary's table: one row per target, the drift named
        assert "| target | release | app | images | pods | endpoints | drift |" in table
        assert f"| `{one.namespace}` | revision 1 deployed" in table and "| none |" in table
        assert "metadata.labels.app.kubernetes.io/name differs |" in table
        only = status(fleet, on_cluster, f"TARGET={one.namespace}")
        assert only.returncode == 0 and two.namespace not in only.stdout + only.stderr
    finally:
        for site in (one, two):
            delete_namespace(cluster, site.namespace)
            shutil.rmtree(REPO_ROOT / "out" / site.namespace, ignore_errors=True)


def test_a_failing_canary_leaves_the_later_wave_untouched(tmp_path, cluster, on_cluster, stand_in_images):
    canary, later = sites(tmp_path, cluster, stand_in_images, 2, "canary")
    try:
        canary.values["DEV_MODE"] = "true"  # refused in production by its validate step
        fleet = write_fleet(tmp_path, [[canary], [later]])
        proc = fleet_deploy(fleet, stand_in_images.images_file, on_cluster)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 2, text[-4000:]  # make's code for a failed recipe
        assert f"error   target {canary.namespace}: failed in validate (exit 2), release untouched: see " in text
        assert "wave 1 (wave0): 0/1 passed" in text
        assert f"target {later.namespace}: untouched: not started: wave 1 (wave0) failed on {canary.namespace}" in text
        assert f"not rolled out to {canary.namespace}, {later.namespace}" in text and "Traceback" not in text
        assert later.history() == [] and canary.history() == []
        assert not (REPO_ROOT / "out" / later.namespace / "deploy.log").exists()
    finally:
        for site in (canary, later):
            delete_namespace(cluster, site.namespace)
            shutil.rmtree(REPO_ROOT / "out" / site.namespace, ignore_errors=True)
