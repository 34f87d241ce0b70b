"""smoke_test against the Kubernetes API emulator (kmock) and a real helm with its SQL driver,
for what the real cluster of the test bed cannot stage (tests/test_cluster_smoke.py covers the
rest on a real kubelet): an Ingress that gets an address and HTTPS endpoints behind it (the kit
has no ingress controller or load balancer), a bucket volume that fails to mount (no CSI
driver), a cluster autoscaler's TriggeredScaleUp, a rollback that itself fails, and the user
storage pod of the GCP and AWS volume modes.

kmock has no controllers and no kubelet, so `Kubelet` below plays them, as a test must: for
each Deployment revision it replaces the pods and sets their status, events and the
Deployment's status from the image tag (good, crash, pull, ...); it gives the Ingress an
address and runs the storage-check pod to the end the test asks for. The HTTP endpoints are
faked at the network edge with `responses`. Everything else is the real tool: its watches,
its helm calls, its report.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import urllib3

from tests import nextauth
from tests.envfiles import COMMON, canary, good_env, write_env
from tests.skips import unavailable
from tools import smoke_test
from tools.cloud import USER_SERVICE_ACCOUNT, cloud_for
from tools.helm import helm_binary, render
from tools.settings import load_settings
from tools.smoke import storage

CHART = Path(__file__).parent / "fixtures" / "smoke_charts" / "app"
API = "https://api.cmb.example.org/health"
FRONTEND = "https://cmb.example.org/api/health"
LEAKED = canary("LEAKED_IN_AN_EVENT")
pytestmark = pytest.mark.testbed


# -- the stand-in for controllers and kubelet --------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _waiting(reason: str, message: str, restarts: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Pending" if not restarts else "Running",
        "containerStatuses": [
            {
                "name": "NAME",
                "image": "IMAGE",
                "imageID": "",
                "ready": False,
                "restartCount": restarts,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ],
    }
    if restarts:
        status["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return status


# tag -> (pod status, [(event reason, event message)], ready)
BEHAVIOURS: dict[str, tuple[dict[str, Any], list[tuple[str, str]], bool]] = {
    "good": (
        {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "NAME",
                    "image": "IMAGE",
                    "imageID": "IMAGE@sha256:" + "ab" * 32,
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ],
        },
        [("Started", "Started container")],
        True,
    ),
    "crash": (
        _waiting("CrashLoopBackOff", "back-off 40s restarting failed container", restarts=3),
        [("BackOff", "Back-off restarting failed container")],
        False,
    ),
    "pull": (
        _waiting("ImagePullBackOff", 'Back-off pulling image "IMAGE"'),
        [("Failed", 'Failed to pull image "IMAGE": manifest unknown')],
        False,
    ),
    "errpull": (
        _waiting("ErrImagePull", "rpc error: code = NotFound desc = failed to pull and unpack image"),
        [("Failed", "Error: ErrImagePull")],
        False,
    ),
    # runc cannot start a program for another CPU (https://github.com/k3s-io/k3s/issues/2912)
    "execformat": (
        _waiting(
            "RunContainerError", "failed to create containerd task: exec /bin/busybox: exec format error: unknown"
        ),
        [("Failed", "Error: failed to create containerd task: exec /bin/busybox: exec format error: unknown")],
        False,
    ),
    "invalid": (
        _waiting("InvalidImageName", 'Failed to apply default image tag "IMAGE": invalid reference format'),
        [("InspectFailed", "Failed to apply default image tag")],
        False,
    ),
    "config": (
        _waiting("CreateContainerConfigError", "couldn't find key SECRET_KEY in Secret NS/cmbcluster-backend-secrets"),
        [("Failed", "Error: couldn't find key SECRET_KEY in Secret NS/cmbcluster-backend-secrets")],
        False,
    ),
    "mount": (
        _waiting("ContainerCreating", ""),
        [
            (
                "FailedMount",
                'MountVolume.SetUp failed for volume "database" : rpc error: code = PermissionDenied '
                "desc = the sidecar container failed with error: gcsfuse: bucket access denied",
            )
        ],
        False,
    ),
    "unschedulable": (
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                }
            ],
        },
        [("FailedScheduling", "0/3 nodes are available: 3 Insufficient cpu.")],
        False,
    ),
    "slow": (
        {
            "phase": "Running",
            "containerStatuses": [
                {"name": "NAME", "image": "IMAGE", "ready": False, "restartCount": 0, "state": {"running": {}}}
            ],
        },
        [("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503")],
        False,
    ),
    "leak": (
        _waiting("CrashLoopBackOff", "back-off 10s restarting failed container", restarts=1),
        [("BackOff", f"app printed SECRET_KEY={LEAKED} before crashing")],
        False,
    ),
}
BEHAVIOURS["scaleup"] = (
    BEHAVIOURS["unschedulable"][0],
    [*BEHAVIOURS["unschedulable"][1], ("TriggeredScaleUp", "pod triggered scale-up: [{pool-1 1->2 (max: 5)}]")],
    False,
)

# storage-check pod endings: (status updates in order, events)
STORAGE: dict[str, tuple[list[dict[str, Any]], list[tuple[str, str]]]] = {
    "succeed": (
        [
            {"phase": "Running", "containerStatuses": [{"name": "check", "ready": True, "state": {"running": {}}}]},
            {
                "phase": "Succeeded",
                "containerStatuses": [
                    {"name": "check", "ready": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                ],
            },
        ],
        [],
    ),
    "mount": (
        [{"phase": "Pending"}],
        [
            (
                "FailedMount",
                'MountVolume.SetUp failed for volume "user-data" : rpc error: code = PermissionDenied desc = '
                "storage.objects.create access denied for cmbcluster-user-sa",
            )
        ],
    ),
    "fail": (
        [
            {
                "phase": "Failed",
                "containerStatuses": [{"name": "check", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}],
            }
        ],
        [],
    ),
}


def _without_directives(value: Any) -> Any:
    """kmock stores strategic-merge-patch directives ($setElementOrder/...) as they come: drop them."""
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return value


class Kubelet:
    """Plays the Deployment controller, the kubelet and the ingress controller that kmock lacks.

    Objects it creates state metadata.namespace: kmock does not fill it in, and its namespaced
    watches drop the events of objects without one. `delay` makes it act that many seconds
    after a Deployment changes, so that the smoke test sees the change happen while it watches;
    `settle` waits until it has acted (for tests that want a fixed state first).
    """

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        storage: str = "succeed",
        address: str = "203.0.113.7",
        delay: float = 0.0,
    ) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core, self.apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        self.namespace, self.storage, self.address = namespace, storage, address
        self.seen: dict[str, Any] = {}
        self.stopped = threading.Event()
        self.watches: list[Any] = []
        self.counter = itertools.count(1)
        self.failures: list[str] = []
        self.storage_pods: list[dict[str, Any]] = []
        self.delay = delay
        self.handled = threading.Semaphore(0)

    def __enter__(self) -> Kubelet:
        for lister, handler in (
            (self.apps.list_namespaced_deployment, self.on_deployment),
            (self.core.list_namespaced_pod, self.on_pod),
            (self.networking.list_namespaced_ingress, self.on_ingress),
        ):
            threading.Thread(target=self._follow, args=(lister, handler), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for w in self.watches:
            w.stop()
        assert not self.failures, "\n".join(f[-3000:] for f in self.failures)

    def _follow(self, lister: Callable[..., Any], handler: Callable[[dict[str, Any]], None]) -> None:
        from kubernetes import watch

        while not self.stopped.is_set():
            w = watch.Watch()
            self.watches.append(w)
            try:
                for event in w.stream(lister, self.namespace, deserialize=False, _request_timeout=(5, 30)):
                    if self.stopped.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handler(event["object"])
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                continue  # an idle watch timed out (or we stopped it): watch again
            except Exception:
                if not self.stopped.is_set():
                    self.failures.append(traceback.format_exc())
                    return

    def event(self, kind: str, name: str, reason: str, message: str) -> None:
        self.core.create_namespaced_event(
            self.namespace,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{name}.{next(self.counter)}", "namespace": self.namespace},
                "involvedObject": {"kind": kind, "name": name, "namespace": self.namespace},
                "reason": reason,
                "message": message,
                "type": "Normal" if reason in ("Started", "TriggeredScaleUp") else "Warning",
                "count": 2 if reason == "BackOff" else 1,
                "lastTimestamp": _now(),
            },
            _preload_content=False,
        )

    def pods(self) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
        return json.loads(response.data)["items"]

    def on_deployment(self, deployment: dict[str, Any]) -> None:
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        images = [c["image"] for c in template["spec"]["containers"]]
        if self.seen.get(name) == images:
            return  # our own status update, or nothing new
        self.seen[name] = images
        time.sleep(self.delay)
        selector = deployment["spec"]["selector"]["matchLabels"]
        for pod in self.pods():  # the old revision goes
            if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items()):
                self.core.delete_namespaced_pod(pod["metadata"]["name"], self.namespace, _preload_content=False)
        status, events, ready = BEHAVIOURS[images[0].rpartition(":")[2].split("-")[0]]
        pod_name = f"{name}-{next(self.counter)}"
        text = json.dumps(status).replace("IMAGE", images[0]).replace("NAME", template["spec"]["containers"][0]["name"])
        spec = _without_directives(template["spec"])
        self.core.create_namespaced_pod(
            self.namespace,
            {
                "metadata": {"name": pod_name, "namespace": self.namespace, "labels": template["metadata"]["labels"]},
                "spec": spec,
            },
            _preload_content=False,
        )
        for reason, message in events:
            self.event("Pod", pod_name, reason, message.replace("IMAGE", images[0]).replace("NS", self.namespace))
        self.core.patch_namespaced_pod_status(
            pod_name, self.namespace, {"status": json.loads(text)}, _preload_content=False
        )
        self.apps.patch_namespaced_deployment_status(
            name,
            self.namespace,
            {
                "status": {
                    "observedGeneration": deployment["metadata"].get("generation", 0),
                    "replicas": 1,
                    "updatedReplicas": 1,
                    "readyReplicas": 1 if ready else 0,
                    "availableReplicas": 1 if ready else 0,
                    "unavailableReplicas": 0 if ready else 1,
                }
            },
            _preload_content=False,
        )
        self.handled.release()

    def settle(self, deployments: int = 2) -> None:
        for _ in range(deployments):
            assert self.handled.acquire(timeout=10), "the stand-in kubelet did not act"

    def on_pod(self, pod: dict[str, Any]) -> None:
        labels = pod["metadata"].get("labels") or {}
        name = pod["metadata"]["name"]
        if labels.get("app.kubernetes.io/component") != "storage-check" or name in self.seen:
            return
        self.seen[name] = True
        self.storage_pods.append(pod)
        updates, events = STORAGE[self.storage]
        for reason, message in events:
            self.event("Pod", name, reason, message)
        from kubernetes.client.exceptions import ApiException

        for update in updates:
            time.sleep(0.05)
            try:
                self.core.patch_namespaced_pod_status(name, self.namespace, {"status": update}, _preload_content=False)
            except ApiException as exc:
                if exc.status != 404:  # the smoke test may have deleted it already
                    raise

    def on_ingress(self, ingress: dict[str, Any]) -> None:
        if self.address and not (ingress.get("status") or {}).get("loadBalancer", {}).get("ingress"):
            status = {"loadBalancer": {"ingress": [{"ip": self.address}]}}
            self.networking.patch_namespaced_ingress_status(
                ingress["metadata"]["name"], self.namespace, {"status": status}, _preload_content=False
            )


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture
def release(
    kubeconfig: str, helm_sql: str, bed_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Release]:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    yield Release(kubeconfig, tmp_path)


class Release:
    """One release of the test chart in its own namespace, and the smoke test's CLI on it."""

    def __init__(self, kubeconfig: str, tmp_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = f"smoke-{uuid.uuid4().hex[:8]}"
        self.name = "cmbcluster"
        self.env_file = write_env(
            tmp_path / "local.env", good_env("local", NAMESPACE=self.namespace, RELEASE_NAME=self.name)
        )
        self.summary = tmp_path / "summary.md"

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        binary = helm_binary()
        command = [binary, *args, "-n", self.namespace, "--kubeconfig", self.kubeconfig]
        if args[0] == "upgrade":  # what kmock needs (REAL_PARTS.md)
            v4 = subprocess.run([binary, "version", "--short"], capture_output=True, text=True).stdout.startswith("v4")
            command += ["--disable-openapi-validation", *(["--server-side=false"] if v4 else [])]
        return subprocess.run(command, capture_output=True, text=True, check=True)

    def deploy(self, backend: str = "good", frontend: str = "good", **values: str) -> None:
        sets = [f"backend.image=registry.example/cmbcluster-backend:{backend}"]
        sets += [f"frontend.image=registry.example/cmbcluster-frontend:{frontend}"]
        sets += [f"{k.replace('__', '.')}={v}" for k, v in values.items()]
        self.helm("upgrade", "--install", self.name, str(CHART), *itertools.chain(*(("--set", s) for s in sets)))

    def history(self) -> list[dict[str, Any]]:
        return json.loads(self.helm("history", self.name, "-o", "json").stdout)

    def smoke(self, capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
        start = time.monotonic()
        code = smoke_test.main(["--env-file", str(self.env_file), *args])
        took = time.monotonic() - start
        out, err = capfd.readouterr()
        return code, out, err, took


def healthy_endpoints(rsps: responses.RequestsMock) -> None:
    rsps.get(API, json={"status": "healthy", "version": "1.0.0", "uptime": 3})
    rsps.get(FRONTEND, json={"status": "ok"})
    nextauth.discovery(rsps, "https://accounts.google.com", nextauth.GOOGLE_AUTHORIZE)
    google = (COMMON["GOOGLE_CLIENT_ID"], nextauth.GOOGLE_AUTHORIZE)
    nextauth.frontend(rsps, "https://cmb.example.org", {"google": google})


# -- healthy -----------------------------------------------------------------------------------------------
def test_healthy_rollout_passes_every_check(release: Release, capfd: pytest.CaptureFixture[str]) -> None:
    release.deploy()
    with Kubelet(release.kubeconfig, release.namespace) as kubelet, responses.RequestsMock() as rsps:
        kubelet.settle()
        healthy_endpoints(rsps)
        code, out, err, _ = release.smoke(capfd, "--deadline", "20", "--storage-bucket", "cmbtest-user-probe")
    assert code == 0, out + err
    assert re.search(r"ok\s+rollout cmbcluster-backend: 1/1 ready", out)
    assert re.search(r"ok\s+rollout cmbcluster-frontend: 1/1 ready", out)
    assert "ingress address: cmbcluster: 203.0.113.7" in out
    assert f"GET {API}: HTTP 200, status healthy" in out
    assert f"GET {FRONTEND}: HTTP 200" in out
    assert "google sign-in: redirects to https://accounts.google.com/o/oauth2/v2/auth with redirect_uri" in out
    # the storage pod was built from the chart's user-environment ConfigMap
    (pod,) = kubelet.storage_pods
    assert pod["spec"]["serviceAccountName"] == USER_SERVICE_ACCOUNT
    assert pod["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
    assert pod["spec"]["containers"][0]["image"] == "registry.example/cmbcluster-user-env:good"
    volume = pod["spec"]["volumes"][0]["csi"]
    assert volume["driver"] == "gcsfuse.csi.storage.gke.io"
    assert volume["volumeAttributes"] == {
        "bucketName": "cmbtest-user-probe",
        "mountOptions": "implicit-dirs,uid=1000,gid=1000",
    }
    storage_line = next(line for line in out.splitlines() if "user storage:" in line)
    assert re.search(r"create [\d.]+s, schedule\+mount\+start [\d.]+s, run [\d.]+s", storage_line)
    assert "in-pod timings unavailable (logs unavailable: the API server answered application/json" in storage_line
    assert re.search(r"delete [\d.]+s", storage_line)
    assert not [p for p in kubelet.pods() if "storage-check" in p["metadata"]["name"]]
    assert len(release.history()) == 1  # no rollback
    summary = release.summary.read_text()
    assert "| check | result | time | detail |" in summary
    assert re.search(r"\| rollout cmbcluster-backend \| ok \| [\d.]+s \| 1/1 ready \|", summary)
    assert "| user storage | ok |" in summary
    assert "revision 1 (deployed), chart smoke-app-0.1.0" in summary
    assert "| backend | registry.example/cmbcluster-backend:good | sha256:abab" in summary
    assert "https://cmb.example.org, https://api.cmb.example.org (Ingress address: 203.0.113.7)" in summary


# -- failure states ---------------------------------------------------------------------------------------
FAILURES = [
    ("invalid", "InvalidImageName", "invalid reference format", "no logs: the container never started"),
    ("execformat", "RunContainerError", "exec format error", "hint: the image was built for another CPU architecture"),
    ("config", "CreateContainerConfigError", "couldn't find key SECRET_KEY in Secret", "run make_secrets"),
    ("mount", "FailedMount", "bucket access denied", "the bucket volume 'database' cannot be mounted"),
]


@pytest.mark.parametrize(("tag", "reason", "evidence", "more"), FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_state_is_detected_with_its_reason(
    release: Release, capfd: pytest.CaptureFixture[str], tag: str, reason: str, evidence: str, more: str
) -> None:
    release.deploy(backend=tag)
    with Kubelet(release.kubeconfig, release.namespace, delay=1.0):  # the state changes while watched
        code, _out, err, _took = release.smoke(capfd, "--no-rollback", "--deadline", "60", "--grace", "1")
    assert code == 1
    # fail-fast: the state itself is the diagnosis, long before the 60 s deadline (speed: make bench-smoke)
    assert "not done after" not in err, "waited for the deadline instead of failing on the state"
    headline = next(line for line in err.splitlines() if line.startswith("error   rollout failed:"))
    assert "pod cmbcluster-backend-" in headline and f": {reason}" in headline
    assert "last events of pod cmbcluster-backend-" in err
    assert evidence in err
    assert more in err
    summary = release.summary.read_text()
    assert re.search(r"\| rollback \| skipped \|  \| --no-rollback: the release is left as it is \|", summary)
    assert "| endpoints | skipped |  | not run: the rollout failed |" in summary
    assert len(release.history()) == 1


def test_scale_up_lifts_the_grace_and_the_deadline_tells_what_waits(
    release: Release, capfd: pytest.CaptureFixture[str]
) -> None:
    release.deploy(backend="scaleup")
    with Kubelet(release.kubeconfig, release.namespace):
        code, _, err, took = release.smoke(capfd, "--no-rollback", "--grace", "0.5", "--deadline", "2")
    assert code == 1 and took >= 2
    assert "rollout not finished: not done after 2s" in err
    assert "cmbcluster-backend: 0 of 1 updated replicas available" in err
    assert "PodScheduled: Unschedulable 0/3 nodes are available" in err
    assert "TriggeredScaleUp: pod triggered scale-up" in err


# -- rollback ---------------------------------------------------------------------------------------------
def test_a_rollback_that_fails_too_is_reported(release: Release, capfd: pytest.CaptureFixture[str]) -> None:
    release.deploy(backend="pull")
    release.deploy(backend="crash")
    with Kubelet(release.kubeconfig, release.namespace):
        code, _, err, _ = release.smoke(capfd, "--no-endpoints", "--no-storage-check")
    assert code == 1, err
    assert "rollout failed: pod cmbcluster-backend-" in err and "CrashLoopBackOff" in err
    assert "rollback rollout failed: pod cmbcluster-backend-" in err and "ImagePullBackOff" in err
    assert "| rollback rollout cmbcluster-backend | failed |" in release.summary.read_text()


def test_no_earlier_revision_means_no_rollback(release: Release, capfd: pytest.CaptureFixture[str]) -> None:
    release.deploy(backend="crash")
    with Kubelet(release.kubeconfig, release.namespace):
        code, _, err, _ = release.smoke(capfd, "--no-endpoints", "--no-storage-check")
    assert code == 1
    assert "rollback: no earlier deployed revision than 1 to roll back to (first install?)" in err
    assert len(release.history()) == 1


@pytest.mark.parametrize("told", ["--revision none", "a handed-on file"])
def test_a_run_that_made_no_revision_rolls_nothing_back(
    release: Release, capfd: pytest.CaptureFixture[str], tmp_path: Path, told: str
) -> None:
    release.deploy()
    release.deploy(backend="crash")
    handed = tmp_path / "deployed-revision"
    handed.write_text("none\n")  # as helm_deploy --revision-file writes it after a no-op (make deploy)
    how = ["--revision", "none"] if told.startswith("--") else ["--revision-file", str(handed)]
    with Kubelet(release.kubeconfig, release.namespace):
        code, out, err, _ = release.smoke(capfd, "--no-endpoints", "--no-storage-check", *how)
    assert code == 1
    assert "this run made no new revision of release cmbcluster: nothing to roll back" in out + err
    assert [h["status"] for h in release.history()] == ["superseded", "deployed"]


def test_no_rollback_leaves_the_failed_revision(release: Release, capfd: pytest.CaptureFixture[str]) -> None:
    release.deploy()
    release.deploy(frontend="config")
    with Kubelet(release.kubeconfig, release.namespace):
        code, out, err, _ = release.smoke(capfd, "--no-rollback")
    assert code == 1 and "CreateContainerConfigError" in err
    assert "rolling back" not in out
    assert [h["status"] for h in release.history()] == ["superseded", "deployed"]


# -- endpoints ----------------------------------------------------------------------------------------------
ENDPOINT_FAILURES = [
    ("500", {"status": 500, "body": "Internal Server Error"}, "answered HTTP 500 Internal Server Error"),
    ("timeout", {"body": requests.exceptions.ReadTimeout("read timed out")}, "no answer within the request timeout"),
    ("wrong-json", {"json": {"status": "starting"}}, "answered JSON with status 'starting', expected 'healthy'"),
    ("not-json", {"body": "<html>default backend</html>"}, "answered 200 but not with JSON: <html>default backend"),
]


@pytest.mark.parametrize(("kind", "answer", "message"), ENDPOINT_FAILURES, ids=[e[0] for e in ENDPOINT_FAILURES])
def test_unhealthy_endpoint_fails_with_a_clear_message_and_rolls_back(
    release: Release,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    answer: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    release.deploy()
    release.deploy(frontend="good-v2")
    with Kubelet(release.kubeconfig, release.namespace), responses.RequestsMock() as rsps:
        rsps.get(API, **answer)
        rsps.get(FRONTEND, json={"status": "ok"})
        code, out, err, _took = release.smoke(capfd, "--endpoint-deadline", "1.5", "--no-storage-check")
    assert code == 1
    line = next(line for line in err.splitlines() if f"GET {API}:" in line)
    assert message in line and re.search(r"\(\d+ attempts in [\d.]+s\)", line)
    assert f"::error title=GET https%3A//api.cmb.example.org/health::GET {API}: {message}" in out
    assert re.search(r"ok\s+rollback: revision 2 -> 1", out)
    assert [h["description"] for h in release.history()][-1] == "Rollback to 1"


def test_address_option_sends_the_real_host_to_the_ingress_address(
    release: Release, capfd: pytest.CaptureFixture[str]
) -> None:
    release.deploy()
    with Kubelet(release.kubeconfig, release.namespace), responses.RequestsMock() as rsps:
        api = rsps.get(
            "https://203.0.113.7/health",
            json={"status": "healthy"},
            match=[responses.matchers.header_matcher({"Host": "api.cmb.example.org"})],
        )
        rsps.get(
            "https://203.0.113.7/api/health",
            json={},
            match=[responses.matchers.header_matcher({"Host": "cmb.example.org"})],
        )
        code, out, err, _ = release.smoke(capfd, "--address", "ingress", "--no-storage-check", "--no-sign-in")
    assert code == 0, err
    assert api.call_count == 1
    assert f"GET {API}: HTTP 200, status healthy via 203.0.113.7" in out


# -- storage check --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ending", "message"),
    [
        ("mount", 'FailedMount: MountVolume.SetUp failed for volume "user-data"'),
        ("fail", "Error: exited with code 3"),
    ],
)
def test_storage_check_failure_is_reported_and_cleaned_up(
    release: Release, capfd: pytest.CaptureFixture[str], ending: str, message: str
) -> None:
    release.deploy()
    with Kubelet(release.kubeconfig, release.namespace, storage=ending) as kubelet:
        code, _out, err, _took = release.smoke(capfd, "--no-endpoints", "--no-rollback")
        left = [p["metadata"]["name"] for p in kubelet.pods()]
    assert code == 1
    assert "not done after" not in err  # the pod's end was the answer, not the storage deadline
    assert message in err
    assert "storage check failed: pod cmbcluster-storage-check-" in err
    assert not [name for name in left if "storage-check" in name]
    assert re.search(
        r"\| user storage \| failed \| [\d.]+s \| pod cmbcluster-storage-check-", release.summary.read_text()
    )


@pytest.mark.parametrize("shell", [["sh"], ["busybox", "sh"]])
@pytest.mark.parametrize("rename", ["1", "0"])
def test_storage_script_writes_reads_and_removes_a_file(tmp_path: Path, shell: list[str], rename: str) -> None:
    """The pod's script, run here on a plain folder: its output is what the report shows. It saves
    the file twice (users re-save their files: on EKS that needs Mountpoint's allow-overwrite) and
    renames it where the mount can (RENAME=1); Mountpoint for S3 cannot rename in general-purpose
    buckets, so on EKS (RENAME=0) a check that did would fail every healthy release."""
    if not shutil.which(shell[0]):
        unavailable(f"{shell[0]} is not installed (apt-get install busybox-static)")
    env = {"PATH": "/usr/bin:/bin", "MOUNT": str(tmp_path), "TOKEN": "abc123", "PREFIX": storage.STORAGE_PREFIX}
    env["RENAME"] = rename
    done = subprocess.run([*shell, "-c", storage.STORAGE_SCRIPT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(storage.OK_LINE)  # its last line: the verdict smoke reads
    assert list(tmp_path.iterdir()) == []
    renamed = r"rename file \d+ms, " if rename == "1" else ""
    assert re.fullmatch(
        rf"in the pod: write file \d+ms, overwrite file \d+ms, {renamed}read file \d+ms, delete file \d+ms",
        storage.in_pod_timings(done.stdout.splitlines()),
    )
    env["MOUNT"] = str(tmp_path / "not-mounted")
    failed = subprocess.run([*shell, "-c", storage.STORAGE_SCRIPT], env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "storage-check ok" not in failed.stdout


@pytest.mark.parametrize("cloud", ["gcp", "aws", "local"])
def test_storage_pod_follows_the_real_charts_user_environment(cloud: str) -> None:
    """The real chart's ConfigMap (rendered from the shim's values) gives each cloud's pod its volume."""
    settings = load_settings(environ=good_env(cloud))
    shim = cloud_for(settings)
    docs = render("cmbcluster", "cmbcluster", shim.chart_values())
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-user-environment")]
    (backend,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-backend")]
    env = {e["name"]: e.get("value") for e in backend["spec"]["template"]["spec"]["containers"][0]["env"]}
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == env["USER_POD_SA_NAME"]]
    bindings = ("iam.gke.io/gcp-service-account", "eks.amazonaws.com/role-arn")  # the chart adds others too
    identity = {k: v for k, v in (account["metadata"].get("annotations") or {}).items() if k in bindings}
    assert identity == shim.service_account_annotations("user")
    objects = storage.storage_check_manifests(
        config["data"], env["USER_POD_SA_NAME"], "cmbcluster", "cmbcluster", shim.smoke_bucket, "abc123", 60,
        rename=shim.renames_files,
    )  # fmt: skip
    pod = objects[-1]
    script_env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert script_env["RENAME"] == ("0" if cloud == "aws" else "1")  # Mountpoint for S3 cannot rename
    assert pod["spec"]["serviceAccountName"] == USER_SERVICE_ACCOUNT
    assert pod["metadata"]["annotations"] == shim.user_pod_annotations()
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "user-data", "mountPath": "/mnt/storage-check"}]
    volume = pod["spec"]["volumes"][0]
    if cloud == "gcp":
        assert len(objects) == 1
        assert volume["csi"]["driver"] == shim.csi_driver == "gcsfuse.csi.storage.gke.io"
        assert volume["csi"]["volumeAttributes"] == {
            "bucketName": "cmbtest-user-smoke-cmb-project",  # a user bucket, never the database's
            "mountOptions": ",".join(shim.mount_options),
        }
        assert pod["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
    elif cloud == "aws":
        pv, pvc, _ = objects
        assert "csi" not in volume, "Mountpoint for S3 has no inline volumes"
        assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
        assert pv["spec"]["claimRef"] == {"namespace": "cmbcluster", "name": pvc["metadata"]["name"]}
        assert pv["spec"]["csi"]["driver"] == shim.csi_driver == "s3.csi.aws.com"
        assert pv["spec"]["csi"]["volumeAttributes"] == {
            "bucketName": "cmbtest-user-smoke-123456789012",
            "authenticationSource": "pod",
        }
        assert pv["spec"]["mountOptions"] == shim.storage_values()["aws"]["mountOptions"]
        assert "region us-east-1" in pv["spec"]["mountOptions"]
    else:
        assert len(objects) == 1 and volume == {"name": "user-data", "emptyDir": {"sizeLimit": "16Mi"}}


# -- report and secrets --------------------------------------------------------------------------------------
def test_images_are_compared_with_build_push_output(release: Release, capfd: pytest.CaptureFixture[str]) -> None:
    digest = "sha256:" + "cd" * 32
    images = release.summary.parent / "images.json"
    images.write_text(
        json.dumps(
            {
                "registry": "registry.example",
                "images": {
                    "backend": {
                        "repository": "registry.example/cmbcluster-backend",
                        "tags": ["good"],
                        "digest": digest,
                    },
                    "frontend": {
                        "repository": "registry.example/cmbcluster-frontend",
                        "tags": ["v9"],
                        "digest": digest,
                    },
                },
            }
        )
    )
    release.deploy()
    with Kubelet(release.kubeconfig, release.namespace) as kubelet:
        kubelet.settle()
        code, out, _, _ = release.smoke(capfd, "--images", str(images), "--no-endpoints", "--no-storage-check")
    assert code == 0, "a mismatch is a warning, not a failure"
    assert (
        "cmbcluster-frontend runs registry.example/cmbcluster-frontend:good, "
        f"but build_push built registry.example/cmbcluster-frontend:v9@{digest}"
    ) in out
    summary = release.summary.read_text()
    assert "| backend | registry.example/cmbcluster-backend:good | sha256:abab" in summary
    assert f"registry.example/cmbcluster-backend:good@{digest} |" in summary
    assert "| images | warning |" in summary


def test_github_annotations_and_no_secret_in_any_output(
    release: Release, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    release.deploy(backend="leak")
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=release.kubeconfig))
    core.create_namespaced_secret(
        release.namespace,
        {"metadata": {"name": "cmbcluster-backend-secrets"}, "stringData": {"SECRET_KEY": LEAKED, "DEBUG": "false"}},
    )
    with Kubelet(release.kubeconfig, release.namespace):
        code, out, err, _ = release.smoke(capfd, "--no-rollback")
    assert code == 1
    annotation = next(line for line in out.splitlines() if line.startswith("::error title=rollout failed::"))
    assert "CrashLoopBackOff" in annotation and "%0A" in annotation
    assert "app printed SECRET_KEY=*** before crashing" in err
    everything = out + err + release.summary.read_text()
    assert f"::add-mask::{LEAKED}" in out  # the runner is told to mask it; nothing else shows it
    assert everything.count(LEAKED) == 1
    for value in good_env("local").values():
        if len(value) > 30 and value.startswith("Cnry"):
            assert everything.count(value) == everything.count(f"::add-mask::{value}")


def test_missing_release_is_a_clear_error(
    kubeconfig: str, bed_env: dict[str, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    env_file = write_env(tmp_path / "local.env", good_env("local", NAMESPACE="smoke-nothing-here"))
    code = smoke_test.main(["--env-file", str(env_file)])
    _, err = capfd.readouterr()
    assert code == 1
    assert "no Deployments of release cmbcluster in namespace smoke-nothing-here: run helm_deploy first" in err


def test_help_imports_no_cloud_sdk() -> None:
    code = (
        "import sys\nfrom tools import smoke_test\n"
        "try:\n    smoke_test.build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'google', 'kubernetes'}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent, check=True
    )
    assert proc.stdout.strip().endswith("[]")


def test_bad_usage_exits_2(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        smoke_test.main(["--deadline", "soon"])
    assert exc.value.code == 2
    assert "'soon' is not a number of seconds" in capfd.readouterr().err
