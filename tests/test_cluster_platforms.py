"""An image for another CPU on the real cluster (its node is amd64): refused by helm_deploy's
preflight in one line; forced past it, diagnosed by smoke_test by name and rolled back.

The arm64 backend is the stand-in built by build_push with IMAGE_PLATFORMS=linux/arm64: an
index whose only variant is arm64, so the kubelet's containerd finds no variant for its node.
One release, three revisions at most."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.envfiles import good_env, write_env
from tests.realcluster import DOCKER, Site, StandIns, run_tool
from tests.testbed import TestBed

pytestmark = pytest.mark.testbed


def arm64_backend(folder: Path, stand_ins: StandIns, env: dict[str, str]) -> Path:
    """The stand-ins' images file with the backend rebuilt for linux/arm64 only."""
    images = folder / "images-arm64.json"
    shutil.copy(stand_ins.images_file, images)
    env_file = write_env(
        folder / "arm64.env",
        {
            **good_env("local", REGISTRY_URL=stand_ins.registry, CLUSTER_NAME="cmbtest", IMAGE_PLATFORMS="linux/arm64"),
            **{f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in stand_ins.contexts.items()},
        },
    )
    argv = ["--cloud", "local", "--env-file", str(env_file), "--images", "backend", "--output", str(images)]
    run_tool("build_push", *argv, env={**env, "DOCKER": DOCKER})
    return images


def test_an_arm64_image_is_refused_by_preflight_and_forced_is_diagnosed_and_rolled_back(
    testbed: TestBed,
    cluster: str,
    cluster_namespace: str,
    stand_in_images: StandIns,
    on_cluster: dict[str, str],
    tmp_path: Path,
) -> None:
    images = arm64_backend(tmp_path, stand_in_images, testbed.env)
    backend = json.loads(images.read_text())["images"]["backend"]
    assert backend["digest"] != stand_in_images.images()["backend"]["digest"]
    site = Site(tmp_path, cluster, cluster_namespace, stand_in_images)
    assert site.secrets().returncode == 0
    good = site.deploy()
    assert good.returncode == 0, good.stdout + good.stderr

    refused = site.deploy("--no-wait", images=images)
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    (line,) = [line for line in out.splitlines() if "has no linux/amd64 variant" in line]
    assert f"image backend {backend['repository']}@{backend['digest'][:19]} was built for linux/arm64" in line, line
    assert "the architecture of node(s)" in line and "IMAGE_PLATFORMS=linux/amd64" in line, line
    assert "nothing was changed" in out and "Traceback" not in out
    assert site.history() == [(1, "deployed")]

    forced = site.deploy("--no-wait", "--no-platform-check", images=images)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    result = site.smoke("--deadline", "60", "--no-storage-check")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "no match for platform in manifest" in out, out
    assert "hint: the image was built for another CPU architecture" in out, out
    assert "rollback: revision" in out, out
    good_backend = stand_in_images.images()["backend"]
    assert site.backend_image() == f"{good_backend['repository']}@{good_backend['digest']}"
    assert site.history()[-1][1] == "deployed"
