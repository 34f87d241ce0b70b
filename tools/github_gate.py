"""Fail closed: refuse a deploy whose GitHub environment would not stop anyone.

Runs in a job with no secrets and no cloud token, before the job that names `<target>-<environment>`
(the only one that may hold the target's credentials; without a fleet the target is the cloud). A
job naming an environment that does not exist creates it with no protection, and an environment's
rules are what stand between a pushed branch and the cloud, so this reads the environment through
GitHub's REST API and refuses, one line per missing protection with its fix, unless it is what
tools/github_environments.py (and so `make github-setup`) describes:

    python -m tools.github_gate --cloud aws --environment production
    python -m tools.github_gate --cloud aws --environment staging --refs tag:v*,branch:main
    python -m tools.github_gate --target aws-eu --environment production
    python -m tools.github_gate --target aws-eu --environment status

GITHUB_TOKEN (read access: the job's `actions: read`), GITHUB_REPOSITORY and GITHUB_API_URL come
from the runner. Exit 0 when the environment is protected, 1 when it is not, 2 for bad usage.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from tools import cli
from tools.errors import ToolError, UsageError
from tools.fleet import TARGET_NAME, TARGET_NAME_HELP
from tools.github_environments import (
    PRODUCTION,
    REF_TYPES,
    RELEASE_TAGS,
    STATUS,
    TAG_RULES,
    Protection,
    Ref,
    parse_refs,
    protection,
)
from tools.report import REPORTER, markdown_table

API = "https://api.github.com"
API_VERSION = "2022-11-28"
TIMEOUT = (5, 20)
TITLE = "github gate"
# https://docs.github.com/en/actions/reference/deployments-and-environments : "If you are on a GitHub
# Free, GitHub Pro, or GitHub Team plan, required reviewers are only available for public repositories."
# The REST API shows no plan to a job's token; it shows the visibility, and an environment without the
# rule (GitHub refuses to create it on those plans). `internal` repositories exist on Enterprise only.
PLAN_DOCS = "https://docs.github.com/en/actions/reference/deployments-and-environments"


@dataclass(frozen=True)
class Target:
    """What the REST API says about one environment: None when it does not exist."""

    environment: dict[str, Any] | None
    policies: list[dict[str, Any]]
    visibility: str
    tag_rulesets: list[dict[str, Any]] = field(default_factory=list)  # active tag rulesets, in full


class GitHub:
    """GET-only REST client: one line per failure, the token never printed."""

    def __init__(self, api: str, token: str) -> None:
        self.api = api.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {token}",
                "User-Agent": "cmbcluster-deploy",
            }
        )

    def get(self, path: str, missing_ok: bool = False, forbidden_ok: bool = False) -> Any:
        url = f"{self.api}/{path}"
        try:
            response = self.session.get(url, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ToolError(f"GitHub API {url}: {type(exc).__name__}: check GITHUB_API_URL and the network") from exc
        if (response.status_code == 404 and missing_ok) or (response.status_code == 403 and forbidden_ok):
            return None
        if response.status_code in (401, 403, 404):
            raise ToolError(
                f"GitHub API GET {path}: HTTP {response.status_code}: the token cannot read it; give the job "
                "`permissions: actions: read` (GITHUB_TOKEN) and check GITHUB_REPOSITORY"
            )
        if not response.ok:
            raise ToolError(f"GitHub API GET {path}: HTTP {response.status_code}: try again later")
        return response.json()


def read_target(github: GitHub, repository: str, want: Protection) -> Target:
    """The environment, its deployment branch policies, the repository's visibility and, when the
    environment deploys release tags, the rulesets that guard tags."""
    name = want.name
    # https://docs.github.com/en/rest/repos/repos#get-a-repository : `visibility` public|private|internal
    repo = github.get(f"repos/{repository}") or {}
    visibility = repo.get("visibility") or ("private" if repo.get("private") else "public")
    # https://docs.github.com/en/rest/deployments/environments#get-an-environment : 404 when it does not exist
    environment = github.get(f"repos/{repository}/environments/{name}", missing_ok=True)
    policies: list[dict[str, Any]] = []
    branch_policy = (environment or {}).get("deployment_branch_policy") or {}
    if branch_policy.get("custom_branch_policies"):
        # https://docs.github.com/en/rest/deployments/branch-policies#list-deployment-branch-policies
        page = 1
        while True:
            listed = github.get(
                f"repos/{repository}/environments/{name}/deployment-branch-policies?per_page=100&page={page}"
            )
            batch = (listed or {}).get("branch_policies", [])
            policies += batch
            if len(batch) < 100:
                break
            page += 1
    rulesets = []
    if environment is not None and Ref("tag", RELEASE_TAGS) in want.refs:
        # https://docs.github.com/en/rest/repos/rules#get-all-repository-rulesets (the list has no
        # conditions or rules: https://docs.github.com/en/rest/repos/rules#get-a-repository-ruleset has)
        # 403 on a private repository whose plan has no rulesets ("Upgrade to GitHub Pro or make this
        # repository public"): no ruleset guards its tags
        path = f"repos/{repository}/rulesets?targets=tag&includes_parents=true&per_page=100"
        listed = github.get(path, forbidden_ok=True) or []
        for ruleset in listed:
            if ruleset.get("target") == "tag" and ruleset.get("enforcement") == "active":
                rulesets.append(github.get(f"repos/{repository}/rulesets/{ruleset['id']}") or {})
    return Target(environment, policies, visibility, rulesets)


def problems(want: Protection, target: Target) -> list[str]:
    """Every way the environment falls short, one line each with its fix (empty: protected)."""
    fix = "(make github-setup prints the calls)"
    if target.environment is None:
        # https://docs.github.com/en/actions/deployment/targeting-different-environments/using-environments-for-deployment
        # : "Referencing an environment that does not exist will create an environment with the referenced name"
        # (and no protection rules)
        return [f"environment {want.name} does not exist: a job naming it would create it unprotected; create it {fix}"]
    rules = {rule.get("type"): rule for rule in target.environment.get("protection_rules") or []}
    reviewers = rules.get("required_reviewers")
    out = []
    if want.reviewers_required and not (reviewers and reviewers.get("reviewers")):
        if target.visibility == "private":
            return [
                f"environment {want.name}: this private repository's plan cannot require reviewers (GitHub Free, "
                f"Pro and Team protect environments of public repositories only, {PLAN_DOCS}): a {PRODUCTION} "
                "deploy needs GitHub Enterprise Cloud or a public repository"
            ]
        # https://docs.github.com/en/rest/deployments/environments#create-or-update-an-environment : reviewers
        out.append(f"environment {want.name} has no required reviewers: add up to 6 users or teams {fix}")
    # same page: prevent_self_review "Whether or not a user who created the job is prevented from approving their
    # own job"
    if want.prevent_self_review and not (reviewers and reviewers.get("prevent_self_review")):
        out.append(
            f"environment {want.name} lets the person who started the run approve it: set prevent_self_review {fix}"
        )
    out += _ref_problems(want, target)
    if Ref("tag", RELEASE_TAGS) in want.refs and not any(_guards_release_tags(r) for r in target.tag_rulesets):
        out.append(
            f"release tags {RELEASE_TAGS} are not guarded by an active tag ruleset: anyone who can push could "
            f"create a tag {want.name} admits; add one restricting their creation, update and deletion {fix}"
        )
    return out


def _guards_release_tags(ruleset: dict[str, Any]) -> bool:
    """An active tag ruleset over every release tag that restricts creating, moving and deleting them
    (https://docs.github.com/en/rest/repos/rules : conditions.ref_name include/exclude, rules by type)."""
    names = (ruleset.get("conditions") or {}).get("ref_name") or {}
    covers = bool({f"refs/tags/{RELEASE_TAGS}", "~ALL"} & set(names.get("include") or [])) and not names.get("exclude")
    types = {rule.get("type") for rule in ruleset.get("rules") or []}
    return ruleset.get("enforcement") == "active" and covers and set(TAG_RULES) <= types


def _ref_problems(want: Protection, target: Target) -> list[str]:
    """The deployment policy must admit the wanted refs and nothing else (GitHub matches GITHUB_REF)."""
    assert target.environment is not None
    allowed = ", ".join(str(ref) for ref in want.refs)
    fix = f"admit only {allowed} (custom_branch_policies; make github-setup prints the calls)"
    # https://docs.github.com/en/rest/deployments/environments : deployment_branch_policy null means "all
    # branches" (and tags); protected_branches true admits every protected branch
    policy = target.environment.get("deployment_branch_policy")
    if not policy:
        return [f"environment {want.name} admits every branch and tag: {fix}"]
    if policy.get("protected_branches"):
        return [f"environment {want.name} admits every protected branch: {fix}"]
    out = []
    # https://docs.github.com/en/rest/deployments/branch-policies : `type` branch (the default) or tag
    found = {
        Ref(str(p.get("type")) if p.get("type") in REF_TYPES else "branch", str(p.get("name"))) for p in target.policies
    }
    for ref in sorted(found - set(want.refs)):
        out.append(f"environment {want.name} admits {ref}: remove that deployment policy; {fix}")
    for ref in sorted(set(want.refs) - found):
        out.append(f"environment {want.name} does not admit {ref}: add it as a deployment policy")
    return out


def report(want: Protection, found: list[str]) -> None:
    """One line per problem (annotations under Actions) and a job-summary section."""
    if found:
        for line in found:
            REPORTER.error(line, title=TITLE)
        REPORTER.summary(
            f"### GitHub gate: `{want.name}`\n\nrefused:\n\n" + markdown_table(["problem"], [[p] for p in found])
        )
        return
    refs = ", ".join(str(ref) for ref in want.refs)
    what = "required reviewers, no self-review, " if want.reviewers_required else ""
    REPORTER.summary(f"### GitHub gate: `{want.name}`\n\nprotected: {what}admits only {refs}")


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cloud", choices=("aws", "gcp", "local"), help="the target named by its cloud")
    where.add_argument("--target", help="a fleet target (env/<target>.env): its environments are <target>-<env>")
    parser.add_argument("--environment", required=True, choices=("production", "staging", "dev", STATUS))
    parser.add_argument(
        "--refs",
        default="",
        help="staging/dev/status: the refs its policy admits, e.g. tag:v*,branch:main (default tag:v*; status "
        "branch:main)",
    )
    parser.add_argument("--repository", default=os.environ.get("GITHUB_REPOSITORY", ""), help="OWNER/REPO")
    args = parser.parse_args(argv)
    if args.environment == PRODUCTION and args.refs:
        raise UsageError("--refs is for staging, dev and status: production admits release tags only")
    if args.target is not None and not TARGET_NAME.match(args.target):
        raise UsageError(f"--target {args.target!r}: use {TARGET_NAME_HELP}")
    if "/" not in args.repository:
        raise UsageError(f"--repository {args.repository!r}: give OWNER/REPO (or set GITHUB_REPOSITORY)")
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise UsageError("GITHUB_TOKEN is not set: pass the job's token (env: GITHUB_TOKEN: ${{ github.token }})")
    REPORTER.register_secrets([token])
    want = protection(args.target or args.cloud, args.environment, parse_refs(args.refs) if args.refs else ())
    github = GitHub(os.environ.get("GITHUB_API_URL") or API, token)
    start = time.monotonic()
    found = problems(want, read_target(github, args.repository, want))  # a failed read: its one line only
    if not found:
        REPORTER.ok(f"GitHub environment {want.name}: protected", time.monotonic() - start)
    report(want, found)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
