"""`make demo` as a newcomer runs it, on the real cluster (the cluster of KUBECONFIG: the test
run's own kit already holds the machine's one kubelet): the whole chain deploys the stand-ins,
a second run is a no-op deploy, DEMO_FAIL=crash is diagnosed and rolled back, `make demo-down`
stops what it started. The kit-absent path (release binaries, checksum-verified) is
tests/test_k8s_kit.py's: it lays the kit out through the demo's own function."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.make import make
from tests.realcluster import Site, ensure_ingress_class
from tests.skips import unavailable
from tools.errors import ToolError
from tools.kit import lay_out_from_release, running_kubelets
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def test_make_demo_deploys_converges_rolls_back_a_crash_and_stops(
    tmp_path: Path, cluster: str, cluster_namespace: str, stand_in_images
) -> None:
    ensure_ingress_class(cluster)  # the session's: the demo must leave an IngressClass it did not make alone
    namespace = cluster_namespace
    folder = tmp_path / "demo"
    args = f"ARGS=--dir {folder} --namespace {namespace}"
    env = {"KUBECONFIG": cluster}
    try:
        first = make("demo", args, env=env)
        text = first.stdout + first.stderr
        assert first.returncode == 0, text[-4000:]
        for step in ("validate_secrets", "build_push", "make_secrets", "helm_deploy", "smoke_test"):
            assert f"-m tools.{step} --cloud local --env-file {folder}/local.env" in text
        assert "3 image(s) ready, 3 built" in text and f"in {namespace} (local): healthy" in text
        assert f"demo: release cmbcluster revision 1 deployed in namespace {namespace}" in text
        assert "port-forward svc/cmbcluster-frontend 8501:8501" in text and "make demo-down" in text
        config = (folder / "local.env").read_text()
        assert (folder / "local.env").stat().st_mode & 0o077 == 0
        generated = next(
            line.split("=", 1)[1] for line in config.splitlines() if line.startswith("GOOGLE_CLIENT_SECRET")
        )
        assert generated not in text
        (tmp_path / "inspect").mkdir()
        site = Site(tmp_path / "inspect", cluster, namespace, stand_in_images)
        pods = {p.metadata.uid for c in ("backend", "frontend") for p in site.pods(c)}
        for secret in ("SECRET_KEY", "FILE_ENCRYPTION_KEY"):
            assert site.secret("cmbcluster-backend-secrets")[secret] not in text

        again = make("demo", args, env=env)
        text = again.stdout + again.stderr
        assert again.returncode == 0, text[-4000:]
        assert "test bed: running under" in text and "(reused)" in text
        assert "3 image(s) ready, 0 built" in text and "0 created, 0 updated, 0 rotated" in text
        assert {p.metadata.uid for c in ("backend", "frontend") for p in site.pods(c)} == pods  # nothing restarted
        figures = json.loads((folder / "figures.json").read_text())
        assert list(figures) == ["first deploy", "no-op redeploy"]
        assert [step for step, _ in figures["no-op redeploy"]] == [step for step, _ in figures["first deploy"]]
        assert figures["first deploy"][0][0] == "validate_secrets" and figures["first deploy"][-1][0] == "smoke_test"
        assert "figures (seconds per step)" in text and "no-op redeploy" in text

        good = site.backend_image()
        crash = make("demo", args, "DEMO_FAIL=crash", env=env)
        text = crash.stdout + crash.stderr
        assert crash.returncode != 0, text[-4000:]
        # the diagnosis: the crash loop and the exit code (the crashed instance's log line is shown when
        # the kubelet still has it; it may already have removed it: "failed to try resolving symlinks")
        assert "rollout failed: pod cmbcluster-backend-" in text, text[-4000:]
        assert re.search(r"exit(ed with)? code 3", text), text[-4000:]
        assert "rollback rollout cmbcluster-backend: 1/1 ready" in text
        assert "the crashing backend was diagnosed and rolled back; the good one runs again" in text
        assert site.backend_image() == good
        assert site.history()[-1][1] == "deployed"

        bed = folder / "bed"
        pids = [int(p.read_text()) for p in bed.glob("*.pid") if p.name != "docker.pid"]
        assert pids and all(alive(pid) for pid in pids)
        stop = make("demo-down", args, env=env)
        text = stop.stdout + stop.stderr
        assert stop.returncode == 0, text[-3000:]
        assert "IngressClass" not in text  # not the demo's
        assert not any(alive(pid) for pid in pids)
        assert not (folder / "state.json").exists()
        again = make("demo-down", args, env=env)  # safe to re-run
        assert again.returncode == 0, again.stderr
    finally:
        make("demo-down", args, env=env)


def test_make_demo_refuses_a_kubelet_it_did_not_start(tmp_path: Path, cluster: str) -> None:
    if not running_kubelets():
        unavailable("no kubelet runs on this machine (the test cluster is not the kit)")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.demo", "up", "--dir", str(tmp_path / "demo")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "a kubelet the demo did not start runs here" in line and "KUBECONFIG=" in line
    assert not (tmp_path / "demo" / "bed").exists()  # nothing started


def test_without_a_kit_or_the_tools_to_download_one_the_demo_says_what_it_needs(tmp_path: Path, monkeypatch) -> None:
    # (the download itself, checksum-verified, is tests/test_k8s_kit.py's, through the same function)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolError, match=r"curl, zstd, sha256sum, tar missing.*apt-get install curl zstd.*KUBECONFIG"):
        lay_out_from_release(tmp_path / "kit")
    assert not (tmp_path / "kit").exists()
