"""helm_deploy with the real helm (4 and 3) against the Kubernetes API emulator (kmock, with Helm's
SQL release driver) and a real registry: install, upgrade, --dry-run, a failed upgrade rolled
back, an interrupted deploy recovered, preflight stops, bad input.

kmock has no controllers, so nothing ever becomes ready: deploys that must succeed use
--no-wait, and a deploy that waits fails the way a real one does when its pods never get
ready. Helm needs `--disable-openapi-validation` (and on Helm 4 `--server-side=false`) against
kmock; the tests pass them with helm_deploy's own --helm-flag."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.envfiles import good_env, secret_values, write_env
from tools import helm_deploy, make_secrets
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed
CHART = Path(__file__).parent / "fixtures" / "charts" / "mini"
HELM3 = str(Path(sys.executable).parent / "helm3")


# -- the test bed --------------------------------------------------------------------------------
def push_image(registry: str, repository: str, salt: str) -> str:
    """Push a tiny image (a config blob, no layers) through the registry's v2 API; returns its digest."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"salt": salt}},
        }
    ).encode()
    blob = "sha256:" + hashlib.sha256(config).hexdigest()
    start = urllib.request.urlopen(
        urllib.request.Request(f"http://{registry}/v2/{repository}/blobs/uploads/", method="POST", data=b"")
    )
    location = start.headers["Location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    upload = f"{location}{'&' if '?' in location else '?'}digest={blob}"
    headers = {"Content-Type": "application/octet-stream"}
    urllib.request.urlopen(urllib.request.Request(upload, method="PUT", data=config, headers=headers))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob, "size": len(config)},
        "layers": [],
    }
    put = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{salt}",
        method="PUT",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    return urllib.request.urlopen(put).headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def images_file(registry, tmp_path_factory) -> Path:
    """build_push's output for three images that are really in the registry."""
    salt = uuid.uuid4().hex[:8]
    images = {
        name: {
            "repository": f"{registry}/cmbtest-{name}",
            "tags": [f"c-{salt}"],
            "digest": push_image(registry, f"cmbtest-{name}", f"c-{salt}-{name}"),
        }
        for name in ("backend", "frontend", "user-env")
    }
    path = tmp_path_factory.mktemp("images") / "images.json"
    path.write_text(json.dumps({"registry": registry, "images": images}))
    return path


@pytest.fixture
def ingress_nginx(kubeconfig, bed_env) -> None:
    """The IngressClass the chart uses on a local cluster (ingress-nginx would create it)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from tools import kube

    body = client.V1IngressClass(
        metadata=client.V1ObjectMeta(name="nginx"), spec=client.V1IngressClassSpec(controller="k8s.io/ingress-nginx")
    )
    try:
        client.NetworkingV1Api(kube.api_client(os.environ["KUBECONFIG"])).create_ingress_class(body)
    except ApiException as exc:
        assert exc.status == 409


@pytest.fixture(params=["helm4", "helm3"])
def helm(request, monkeypatch) -> list[str]:
    """Which helm runs (HELM_BIN), and the flags kmock needs for it."""
    if request.param == "helm3":
        if not os.path.exists(HELM3):
            pytest.skip("helm3 is not installed: python -m tools.install_helm --with-helm3")
        monkeypatch.setenv("HELM_BIN", HELM3)
        return ["--helm-flag=--disable-openapi-validation"]
    monkeypatch.delenv("HELM_BIN", raising=False)
    return ["--helm-flag=--disable-openapi-validation", "--helm-flag=--server-side=false"]


HELM4_FLAGS = ["--helm-flag=--disable-openapi-validation", "--helm-flag=--server-side=false"]


class Site:
    """One namespace of the emulator with its env file, and helpers to deploy into it and look at it."""

    def __init__(self, tmp_path: Path, registry: str, images: Path, flags: list[str]) -> None:
        self.namespace = f"hd-{uuid.uuid4().hex[:10]}"
        self.values = good_env("local", NAMESPACE=self.namespace, REGISTRY_URL=registry)
        self.env = str(write_env(tmp_path / "local.env", self.values))
        self.images, self.flags, self.tmp = images, flags, tmp_path

    def secrets(self) -> None:
        assert make_secrets.main(["--cloud", "local", "--env-file", self.env]) == 0

    def deploy(self, *args: str, values: dict | None = None) -> int:
        extra = []
        if values is not None:
            path = self.tmp / f"values-{uuid.uuid4().hex[:6]}.yaml"
            path.write_text(yaml.safe_dump(values))
            extra = ["--values", str(path)]
        argv = ["--cloud", "local", "--env-file", self.env, "--images", str(self.images), "--chart", str(CHART)]
        return helm_deploy.main([*argv, *self.flags, *extra, *args])

    def argv(self, *args: str) -> list[str]:
        base = ["--cloud", "local", "--env-file", self.env, "--images", str(self.images), "--chart", str(CHART)]
        return [sys.executable, "-m", "tools.helm_deploy", *base, *self.flags, *args]

    def history(self) -> list[tuple[int, str]]:
        from tools.helm import helm_binary

        proc = subprocess.run(
            [helm_binary(), "history", "cmbcluster", "-n", self.namespace, "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if "not found" in proc.stderr:
            return []
        assert proc.returncode == 0, proc.stderr
        return [(r["revision"], r["status"]) for r in json.loads(proc.stdout)]

    def config(self) -> dict[str, str]:
        from kubernetes import client

        from tools import kube

        api = client.CoreV1Api(kube.api_client(os.environ["KUBECONFIG"]))
        return api.read_namespaced_config_map("cmbcluster-config", self.namespace).data

    def backend_image(self) -> str:
        from kubernetes import client

        from tools import kube

        api = client.AppsV1Api(kube.api_client(os.environ["KUBECONFIG"]))
        return (
            api.read_namespaced_deployment("cmbcluster-backend", self.namespace).spec.template.spec.containers[0].image
        )


@pytest.fixture
def site(tmp_path, registry, images_file, helm_sql, bed_env, ingress_nginx, helm) -> Site:
    return Site(tmp_path, registry, images_file, helm)


def output(capfd) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


# -- install, upgrade, dry run ---------------------------------------------------------------------
def test_install_then_dry_run_then_upgrade(site, images_file, capfd):
    site.secrets()
    assert site.deploy("--no-wait") == 0
    assert site.history() == [(1, "deployed")]
    backend = json.loads(images_file.read_text())["images"]["backend"]
    assert site.backend_image() == f"{backend['repository']}@{backend['digest']}"  # pinned by digest
    assert site.config()["message"] == "hello"
    out = output(capfd)
    assert "helm install cmbcluster in " in out and "revision 1 deployed" in out

    token = f"tok-{uuid.uuid4().hex}"
    assert site.deploy("--dry-run", values={"probe": {"message": "second", "token": token}}) == 0
    out = output(capfd)
    assert site.history() == [(1, "deployed")] and site.config()["message"] == "hello"  # nothing changed
    assert "dry run against revision 1: 1 added, 1 changed, 0 removed, 1 unchanged" in out
    assert f"+ Secret {site.namespace}/cmbcluster-token" in out
    assert f"~ ConfigMap {site.namespace}/cmbcluster-config" in out
    assert "-  message: hello" in out and "+  message: second" in out
    assert "dry run: nothing was changed" in out

    assert site.deploy("--no-wait", values={"probe": {"message": "second", "token": token}}) == 0
    assert site.history() == [(1, "superseded"), (2, "deployed")]
    assert site.config()["message"] == "second"

    other = f"tok-{uuid.uuid4().hex}"
    assert site.deploy("--dry-run", values={"probe": {"message": "second", "token": other}}) == 0
    out += output(capfd)
    assert f"~ Secret {site.namespace}/cmbcluster-token" in out
    assert "-  token: (hidden)" in out and "+  token: (hidden, changed)" in out
    for value in [token, other, *secret_values(site.values)]:
        assert value not in out
    import base64

    assert base64.b64encode(token.encode()).decode() not in out


def test_a_failed_upgrade_is_rolled_back(site, capfd):
    site.secrets()
    assert site.deploy("--no-wait") == 0
    capfd.readouterr()
    # Waiting for readiness on an emulator without controllers fails like pods that never get ready.
    assert site.deploy("--timeout", "3s", values={"probe": {"message": "broken"}}) == 1
    err = capfd.readouterr().err
    (reason,) = [line for line in err.splitlines() if "to revision 2 failed" in line]
    assert "context deadline exceeded" in reason or "timed out" in reason
    assert reason.endswith("; rolled back to revision 1")
    assert site.history() == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    assert site.config()["message"] == "hello"  # what revision 1 deployed


def test_a_failed_first_install_is_removed(site, capfd):
    site.secrets()
    assert site.deploy("--timeout", "2s") == 1
    err = capfd.readouterr().err
    assert "install to revision 1 failed" in err and "the failed release was removed" in err
    assert site.history() == []
    assert site.deploy("--no-wait") == 0  # and a later deploy installs cleanly
    assert site.history() == [(1, "deployed")]


# -- an interrupted deploy ------------------------------------------------------------------------
@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_a_release_left_pending_by_an_interrupted_deploy_is_recovered(site, capfd, tmp_path):
    site.secrets()
    assert site.deploy("--no-wait") == 0
    capfd.readouterr()
    # A deploy that waits (as on a real cluster) is killed mid-upgrade: CI cancelled, laptop closed.
    log = open(tmp_path / "interrupted.log", "w")  # noqa: SIM115 - closed below
    victim = subprocess.Popen(
        site.argv("--timeout", "120s", "--values", str(write_values(tmp_path, "interrupted"))),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (2, "pending-upgrade") not in site.history():
            assert victim.poll() is None and time.monotonic() < deadline, (tmp_path / "interrupted.log").read_text()
            time.sleep(0.2)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        log.close()
    assert site.history() == [(1, "deployed"), (2, "pending-upgrade")]

    # Too fresh to be sure nobody is still deploying: refuse, change nothing.
    assert site.deploy("--no-wait", "--timeout", "10m") == 1
    assert "another deploy may still be running" in capfd.readouterr().err
    assert site.history() == [(1, "deployed"), (2, "pending-upgrade")]

    time.sleep(2)
    assert site.deploy("--no-wait", "--timeout", "2s", values={"probe": {"message": "after"}}) == 0
    out = output(capfd)
    assert (
        "release cmbcluster was left pending-upgrade at revision 2 by an interrupted deploy: "
        "rolled back to revision 1, the last deployed one"
    ) in out
    assert site.history() == [(1, "superseded"), (2, "pending-upgrade"), (3, "superseded"), (4, "deployed")]
    assert site.config()["message"] == "after"


def write_values(tmp_path: Path, message: str) -> Path:
    path = tmp_path / f"{message}.yaml"
    path.write_text(yaml.safe_dump({"probe": {"message": message}}))
    return path


# -- preflight and bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_preflight_stops_before_touching_the_release(site, capfd):
    from kubernetes import client

    from tools import kube

    networking = client.NetworkingV1Api(kube.api_client(os.environ["KUBECONFIG"]))
    networking.delete_ingress_class("nginx")
    try:
        assert site.deploy("--no-wait") == 1  # and no make_secrets either
    finally:
        networking.create_ingress_class(
            client.V1IngressClass(
                metadata=client.V1ObjectMeta(name="nginx"),
                spec=client.V1IngressClassSpec(controller="k8s.io/ingress-nginx"),
            )
        )
    err = capfd.readouterr().err
    assert f"Secret {site.namespace}/cmbcluster-backend-secrets does not exist: run make_secrets first" in err
    assert f"Secret {site.namespace}/cmbcluster-frontend-secrets does not exist: run make_secrets first" in err
    assert "IngressClass nginx does not exist: install ingress-nginx" in err
    assert "3 prerequisite(s) missing: nothing was changed" in err
    assert site.history() == []


@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_bad_input_is_one_clear_line(site, tmp_path, capfd):
    def only_error_line() -> str:
        lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1, lines
        return lines[0]

    site.secrets()
    capfd.readouterr()
    missing = tmp_path / "nope.json"
    assert site.deploy("--images", str(missing)) == 1
    assert f"{missing} does not exist: run `python -m tools.build_push` (make build) first" in only_error_line()

    document = json.loads(site.images.read_text())
    document["images"]["frontend"]["digest"] = "sha256:" + "0" * 64
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(document))
    assert site.deploy("--images", str(unknown)) == 1
    err = capfd.readouterr().err
    assert "image frontend " in err and "@sha256:" + "0" * 64 + " is not in the registry: run build_push" in err

    assert site.deploy("--timeout", "soon") == 2
    assert "--timeout 'soon' is not a duration" in only_error_line()
    assert site.history() == []


@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_no_cluster_access_is_one_clear_line(site, tmp_path, monkeypatch, capfd):
    from tests.testbed import free_port

    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for(tmp_path, f"http://127.0.0.1:{port}")))
    assert site.deploy("--no-wait") == 1
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert lines[-1].startswith(
        "error   checking permissions (SelfSubjectAccessReview): cannot reach the Kubernetes API"
    )
    assert f"127.0.0.1:{port}" in lines[-1]


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


class Refusing(BaseHTTPRequestHandler):
    """An API server whose authorizer says no to everything (kmock has no authorization)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/selfsubjectaccessreviews"):
            return self.reply(404, {"kind": "Status", "code": 404})
        body["status"] = {"allowed": False, "reason": "no RBAC policy matched"}
        return self.reply(201, body)

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
def test_a_namespace_the_credentials_cannot_write_is_one_clear_line(site, tmp_path, monkeypatch, capfd):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for(tmp_path, f"http://127.0.0.1:{server.server_port}")))
        assert site.deploy("--no-wait") == 1
    finally:
        server.shutdown()
        server.server_close()
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert lines[-1].startswith(
        "error   these credentials may not create deployments.apps, patch deployments.apps, create configmaps, "
        "patch configmaps in namespace "
    )
    assert "ask a cluster admin" in lines[-1]


# -- the real chart -------------------------------------------------------------------------------
@pytest.mark.parametrize("helm", ["helm4"], indirect=True)
def test_the_real_chart_dry_run_renders_checks_and_changes_nothing(site, capfd):
    """helm/ with the shim's values: preflight asks for every kind it renders; the dry run lists them.

    (kmock says it is Kubernetes 1.26 and the chart needs 1.27 or later, so Helm itself refuses a
    real install there; the dry run renders with Helm's own version.)"""
    site.secrets()
    capfd.readouterr()
    argv = ["--cloud", "local", "--env-file", site.env, "--images", str(site.images), *site.flags, "--dry-run"]
    assert helm_deploy.main(argv) == 0
    out = output(capfd)
    assert "dry run against no release: " in out and "dry run: nothing was changed" in out
    for kind, name in (("Deployment", "cmbcluster-backend"), ("Deployment", "cmbcluster-frontend")):
        assert f"+ {kind} {site.namespace}/{name}" in out
    assert f"+ ServiceAccount {site.namespace}/cmbcluster-user-sa" in out
    assert site.history() == []
    for value in secret_values(site.values):
        assert value not in out
