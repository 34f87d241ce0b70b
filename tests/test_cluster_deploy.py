"""helm_deploy, make_secrets and smoke_test on the real cluster of the test bed, with the real chart
(CLOUD=local) and stand-in images the kubelet pulls from the loopback registry: first install,
no-op redeploy, dry run, upgrade, a failed upgrade rolled back, a failed first install removed,
a release left pending by a writer outside the toolkit recovered, preflight stops, bad input; with
Helm 4 (server-side apply, Secrets storage) and Helm 3."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.envfiles import secret_values
from tests.realcluster import RELEASE, Site, ensure_ingress_class
from tests.waiting import eventually
from tools.helm import helm_binary

pytestmark = pytest.mark.testbed
HELM3 = str(Path(sys.executable).parent / "helm3")


@pytest.fixture(params=["helm4", "helm3"])
def helm(request, monkeypatch) -> str:
    if request.param == "helm3":
        assert Path(HELM3).exists(), "helm3 is not installed: python -m tools.install_helm --with-helm3"
        monkeypatch.setenv("HELM_BIN", HELM3)
    else:
        monkeypatch.delenv("HELM_BIN", raising=False)
    return request.param


@pytest.fixture
def site(site: Site, helm: str) -> Site:
    """conftest's new site, with each Helm."""
    return site


def out(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def revision_age(site: Site, revision: int) -> float:
    """Seconds since helm last updated `revision`: the age by which helm_deploy judges a pending revision no
    lock names."""
    proc = subprocess.run(
        [helm_binary(), "history", RELEASE, "-n", site.namespace, "-o", "json", "--kubeconfig", site.kubeconfig],
        capture_output=True,
        text=True,
        check=True,
    )
    updated = next(r["updated"] for r in json.loads(proc.stdout) if r["revision"] == revision)
    return (datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(updated)).total_seconds()


def uids(site: Site) -> dict[str, str]:
    return {p.metadata.name: p.metadata.uid for c in ("backend", "frontend") for p in site.pods(c)}


# -- install, no-op, upgrade --------------------------------------------------------------------------
def test_first_install_then_a_noop_redeploy_restarts_nothing(site: Site) -> None:
    assert site.secrets().returncode == 0
    generated = site.secret("cmbcluster-backend-secrets")
    first = site.deploy()
    assert first.returncode == 0, out(first)
    assert "helm install cmbcluster in " in out(first) and "revision 1 deployed" in out(first)
    assert site.history() == [(1, "deployed")]
    backend = site.stand_ins.images()["backend"]
    assert site.backend_image() == f"{backend['repository']}@{backend['digest']}"  # pinned by digest
    smoke = site.smoke()
    assert smoke.returncode == 0, out(smoke)
    pods = uids(site)
    assert len(pods) == 2

    assert site.secrets().returncode == 0  # secrets kept
    assert site.secret("cmbcluster-backend-secrets") == generated
    again = site.deploy()
    assert again.returncode == 0, out(again)
    assert "release cmbcluster: unchanged (revision 1), nothing to upgrade" in again.stdout
    assert "helm upgrade" not in out(again)
    assert site.history() == [(1, "deployed")]  # no new revision
    checked = site.smoke("--revision", "none")
    assert checked.returncode == 0, out(checked)
    assert uids(site) == pods  # a no-op redeploy restarts no pod


def test_drift_is_repaired_by_an_upgrade_that_names_it(site: Site) -> None:
    from tests.realcluster import apps, core

    assert site.secrets().returncode == 0
    assert site.deploy("--no-wait").returncode == 0
    apps(site.kubeconfig).patch_namespaced_deployment_scale(
        "cmbcluster-backend", site.namespace, {"spec": {"replicas": 2}}
    )  # someone scaled it by hand
    core(site.kubeconfig).delete_namespaced_config_map("cmbcluster-user-environment", site.namespace)
    repaired = site.deploy("--no-wait")
    assert repaired.returncode == 0, out(repaired)
    text = out(repaired)
    assert "drift from revision 1: Deployment cmbcluster-backend: spec.replicas differs" in text
    assert "drift from revision 1: ConfigMap cmbcluster-user-environment: missing" in text
    assert "2 live object(s) drifted from revision 1: upgrading to repair" in text
    assert site.history() == [(1, "superseded"), (2, "deployed")]
    assert apps(site.kubeconfig).read_namespaced_deployment("cmbcluster-backend", site.namespace).spec.replicas == 1
    assert core(site.kubeconfig).read_namespaced_config_map("cmbcluster-user-environment", site.namespace).data
    again = site.deploy("--no-wait")  # repaired: nothing left to do
    assert "release cmbcluster: unchanged (revision 2), nothing to upgrade" in again.stdout, out(again)
    assert site.history()[-1] == (2, "deployed")


def test_dry_run_shows_the_change_and_changes_nothing_then_upgrade(site: Site) -> None:
    assert site.secrets().returncode == 0
    assert site.deploy("--no-wait").returncode == 0
    dry = site.deploy("--dry-run", values={"backend": {"config": {"maxUserPods": 7}}})
    assert dry.returncode == 0, out(dry)
    text = out(dry)
    assert "dry run against revision 1: 0 added, 1 changed, 0 removed" in text
    assert f"~ Deployment {site.namespace}/cmbcluster-backend" in text
    assert "dry run: nothing was changed" in text
    assert site.history() == [(1, "deployed")]
    for value in secret_values(site.values):
        assert value not in text

    up = site.deploy("--no-wait", values={"backend": {"config": {"maxUserPods": 7}}})
    assert up.returncode == 0, out(up)
    assert site.history() == [(1, "superseded"), (2, "deployed")]
    from tests.realcluster import apps

    deployment = apps(site.kubeconfig).read_namespaced_deployment("cmbcluster-backend", site.namespace)
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["MAX_USER_PODS"] == "7"


def test_a_failed_upgrade_is_rolled_back_to_the_running_release(site: Site, tmp_path: Path) -> None:
    assert site.secrets().returncode == 0
    assert site.deploy().returncode == 0
    good = site.backend_image()
    # helm waits for a backend that crashes: the upgrade fails, and the tool goes back
    failed = site.deploy("--timeout", "25s", images=site.stand_ins.with_backend(tmp_path, "crash"))
    assert failed.returncode == 1, out(failed)
    (reason,) = [line for line in failed.stderr.splitlines() if "to revision 2 failed" in line]
    assert reason.endswith("; rolled back to revision 1"), reason
    assert site.history() == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    assert site.backend_image() == good


def test_a_failed_first_install_is_removed(site: Site, tmp_path: Path) -> None:
    assert site.secrets().returncode == 0
    failed = site.deploy("--timeout", "20s", images=site.stand_ins.with_backend(tmp_path, "crash"))
    assert failed.returncode == 1
    assert "install to revision 1 failed" in failed.stderr and "the failed release was removed" in failed.stderr
    assert site.history() == []
    assert site.deploy("--no-wait").returncode == 0  # and a later deploy installs cleanly
    assert site.history() == [(1, "deployed")]


# -- an interrupted writer outside the toolkit ----------------------------------------------------------
def test_a_release_left_pending_outside_the_toolkit_is_recovered_by_its_age(site: Site, tmp_path: Path) -> None:
    """A pending revision no lock names (helm by hand, an older toolkit): only its age says its writer is
    gone. (The toolkit's own interrupted revisions are recovered at once: tests/test_cluster_writers.py.)"""
    assert site.secrets().returncode == 0
    assert site.deploy("--no-wait").returncode == 0
    crash = site.stand_ins.with_backend(tmp_path, "crash")
    assert site.deploy("--no-wait", images=crash).returncode == 0
    assert site.deploy("--no-wait").returncode == 0
    # By hand: back to the crashing revision 2, waiting for it; killed mid-rollback (a closed laptop).
    log = open(tmp_path / "by-hand.log", "w")  # noqa: SIM115 - closed below
    by_hand = subprocess.Popen(
        [
            helm_binary(),
            "rollback",
            "cmbcluster",
            "2",
            "-n",
            site.namespace,
            "--wait",
            "--timeout",
            "120s",
            "--kubeconfig",
            site.kubeconfig,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def pending() -> bool:
        if (4, "pending-rollback") in site.history():
            return True
        assert by_hand.poll() is None, (tmp_path / "by-hand.log").read_text()
        return False

    try:
        eventually(pending, lambda: f"revision 4 pending-rollback: {(tmp_path / 'by-hand.log').read_text()}", 90)
    finally:
        os.killpg(by_hand.pid, signal.SIGKILL)
        by_hand.wait()
        log.close()

    # Too fresh to be sure nobody is still deploying: refuse, change nothing.
    refused = site.deploy("--no-wait", "--timeout", "10m")
    assert refused.returncode == 1 and "made outside the toolkit (no lock names it)" in refused.stderr
    assert "another deploy may still be running" in refused.stderr
    assert site.history()[-1] == (4, "pending-rollback")

    eventually(lambda: revision_age(site, 4) > 2, "revision 4 older than 2s (--timeout 2s)", 10)
    recovered = site.deploy("--no-wait", "--timeout", "2s")
    assert recovered.returncode == 0, out(recovered)
    assert (
        "release cmbcluster was left pending-rollback at revision 4 by an interrupted deploy: "
        "rolled back to revision 3, the last deployed one"
    ) in out(recovered)
    assert site.history()[3:] == [(4, "pending-rollback"), (5, "superseded"), (6, "deployed")]


# -- preflight and bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_preflight_stops_before_touching_the_release(site: Site, cluster: str) -> None:
    from kubernetes import client

    from tests.realcluster import api

    client.NetworkingV1Api(api(cluster)).delete_ingress_class("nginx")
    try:
        result = site.deploy("--no-wait")  # and no make_secrets either
    finally:
        ensure_ingress_class(cluster)
    assert result.returncode == 1
    err = result.stderr
    assert f"Secret {site.namespace}/cmbcluster-backend-secrets does not exist: run make_secrets first" in err
    assert f"Secret {site.namespace}/cmbcluster-frontend-secrets does not exist: run make_secrets first" in err
    assert "IngressClass nginx does not exist: install ingress-nginx" in err
    assert "3 prerequisite(s) missing: nothing was changed" in err
    assert site.history() == []


@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_bad_input_is_one_clear_line(site: Site, tmp_path: Path) -> None:
    def only_error_line(result: subprocess.CompletedProcess) -> str:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        return lines[0]

    assert site.secrets().returncode == 0
    missing = tmp_path / "nope.json"
    result = site.deploy(images=missing)
    assert result.returncode == 1
    assert f"{missing} does not exist: run `python -m tools.build_push` (make build) first" in only_error_line(result)

    document = json.loads(site.stand_ins.images_file.read_text())
    document["images"]["frontend"]["digest"] = "sha256:" + "0" * 64
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(document))
    result = site.deploy(images=unknown)
    assert result.returncode == 1
    assert "image frontend " in result.stderr
    assert "@sha256:" + "0" * 64 + " is not in the registry: run build_push" in result.stderr

    result = site.deploy("--timeout", "soon")
    assert result.returncode == 2 and "--timeout 'soon' is not a duration" in only_error_line(result)
    assert site.history() == []


def kubeconfig_for(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_no_cluster_access_is_one_clear_line(site: Site, tmp_path: Path, monkeypatch) -> None:
    from tests.testbed import free_port

    assert site.secrets().returncode == 0
    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for(tmp_path, f"http://127.0.0.1:{port}")))
    result = site.deploy("--no-wait")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(
        "error   checking permissions (SelfSubjectAccessReview): cannot reach the Kubernetes API"
    )
    assert f"127.0.0.1:{port}" in lines[-1]


class NoVerdict(BaseHTTPRequestHandler):
    """An API server (or a proxy in front of one) that answers a SelfSubjectAccessReview without a
    verdict. A real API server always gives one, so this is staged at the network edge."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reply(201 if self.path.endswith("/selfsubjectaccessreviews") else 404, body)

    def do_GET(self) -> None:
        self.reply(404, {"kind": "Status", "code": 404})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_a_permission_check_without_a_verdict_is_an_error_not_a_yes(site: Site, tmp_path: Path, monkeypatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoVerdict)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for(tmp_path, f"http://127.0.0.1:{server.server_port}")))
        result = site.deploy("--no-wait")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "answered the permission check for get " in lines[-1] and "without a verdict" in lines[-1], lines
    assert "Traceback" not in result.stderr
    assert site.history() == []  # nothing deployed
