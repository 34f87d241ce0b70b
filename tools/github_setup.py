"""Print the `gh api` calls that protect the release: environments, deployment policies, rulesets.

What a repository admin runs once (and may run again: every call converges), like
`make cloud-setup` for the cloud:

    make github-setup CLOUD=aws ARGS="--repository OWNER/REPO --reviewers User:1234,Team:567" > github-setup.sh
    make github-setup ARGS="--fleet fleet.yaml --repository OWNER/REPO --reviewers User:1234" > github-setup.sh

- per target (`--cloud aws,gcp`: the targets named by their cloud; `--target aws-us,aws-eu` or
  `--fleet fleet.yaml`: fleet targets) `<target>-staging` and `<target>-production`, the only
  environments its cloud identities trust, each with its deployment policy (custom_branch_policies:
  production release tags `v*` only, staging the refs of --staging-refs), production with required
  reviewers and prevent_self_review; for fleet targets also `<target>-status`, the scheduled
  read-only fleet status (.github/workflows/status.yml), admitting the default branch only;
- a tag ruleset: only repository admins create, move or delete `v*` tags (a tag policy is only as
  strong as who may push the tag);
- the protection `main` needs: no force push or deletion, changes through reviewed pull requests
  (its workflows are the ones scheduled and workflow_run runs execute, and staging may admit it).

The request bodies come from tools/github_environments.py, the description the gate
(tools/github_gate.py) checks. Exit 0, or 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from tools import cli
from tools.errors import UsageError
from tools.fleet import TARGET_NAME, TARGET_NAME_HELP, load_fleet
from tools.github_environments import (
    RELEASE_TAGS,
    STATUS,
    TAG_RULES,
    Protection,
    Ref,
    parse_refs,
    parse_reviewers,
    protection,
)

TAG_RULESET = "cmbcluster release tags"
MAIN_RULESET = "cmbcluster main"
# https://docs.github.com/en/rest/repos/rules#create-a-repository-ruleset : bypass actor "RepositoryRole"
# with actor_id 5 is the repository's admin role
ADMIN_ROLE = {"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}

FUNCTIONS = r"""api() { gh api -H "X-GitHub-Api-Version: 2022-11-28" "$@"; }
# Add a deployment policy (environment, type, name) unless it is there; then remove every policy not
# named in WANTED (one "type:name" a line), so a re-run converges on exactly these
ensure_policies() {
  local env=$1 wanted=$2 type name id ref
  while IFS=: read -r type name; do
    [ -n "$(api "repos/$REPO/environments/$env/deployment-branch-policies?per_page=100" \
      --jq ".branch_policies[] | select(.type == \"$type\" and .name == \"$name\") | .id")" ] \
      || api --method POST "repos/$REPO/environments/$env/deployment-branch-policies" -f type="$type" -f name="$name"
  done <<< "$wanted"
  api "repos/$REPO/environments/$env/deployment-branch-policies?per_page=100" \
    --jq '.branch_policies[] | "\(.id) \(.type):\(.name)"' | while read -r id ref; do
    grep -qxF "$ref" <<< "$wanted" || api --method DELETE "repos/$REPO/environments/$env/deployment-branch-policies/$id"
  done
}
# Create a ruleset (name, body file), or update the one of that name
ensure_ruleset() {
  local id
  id=$(api "repos/$REPO/rulesets?per_page=100" --jq ".[] | select(.name == \"$1\") | .id")
  if [ -n "$id" ]; then api --method PUT "repos/$REPO/rulesets/$id" --input "$2"
  else api --method POST "repos/$REPO/rulesets" --input "$2"; fi
}
"""


def environment_body(want: Protection, reviewers: list[dict[str, object]]) -> dict[str, Any]:
    """PUT /repos/{owner}/{repo}/environments/{name}
    (https://docs.github.com/en/rest/deployments/environments#create-or-update-an-environment)."""
    body: dict[str, Any] = {
        "wait_timer": 0,
        # custom policies only: the refs of `want` (protected_branches would admit every protected branch)
        "deployment_branch_policy": {"protected_branches": False, "custom_branch_policies": True},
    }
    if reviewers:
        body["reviewers"] = reviewers
        body["prevent_self_review"] = want.prevent_self_review
    return body


def policy_body(ref: Ref) -> dict[str, str]:
    """POST .../environments/{name}/deployment-branch-policies
    (https://docs.github.com/en/rest/deployments/branch-policies#create-a-deployment-branch-policy)."""
    return {"name": ref.name, "type": ref.type}


def tag_ruleset_body() -> dict[str, Any]:
    """POST /repos/{owner}/{repo}/rulesets: only admins create, move or delete release tags
    (https://docs.github.com/en/rest/repos/rules#create-a-repository-ruleset)."""
    return {
        "name": TAG_RULESET,
        "target": "tag",
        "enforcement": "active",
        "bypass_actors": [ADMIN_ROLE],
        "conditions": {"ref_name": {"include": [f"refs/tags/{RELEASE_TAGS}"], "exclude": []}},
        "rules": [{"type": rule} for rule in TAG_RULES],
    }


def main_ruleset_body() -> dict[str, Any]:
    """POST /repos/{owner}/{repo}/rulesets: the default branch changes by reviewed pull request only."""
    return {
        "name": MAIN_RULESET,
        "target": "branch",
        "enforcement": "active",
        "bypass_actors": [],
        "conditions": {"ref_name": {"include": ["~DEFAULT_BRANCH"], "exclude": []}},
        "rules": [
            {"type": "deletion"},
            {"type": "non_fast_forward"},
            {
                "type": "pull_request",
                "parameters": {
                    "required_approving_review_count": 1,
                    "dismiss_stale_reviews_on_push": True,
                    "require_code_owner_review": False,
                    "require_last_push_approval": True,
                    "required_review_thread_resolution": False,
                },
            },
        ],
    }


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def script(
    repository: str,
    targets: list[Protection],
    reviewers: list[dict[str, object]],
    staging_reviewers: list[dict[str, object]],
) -> str:
    """The whole shell script: environments, their policies, the two rulesets."""
    parts = [
        "#!/usr/bin/env bash",
        f"# One-time GitHub set-up of the release gate of {repository}. Read it, then run it as a repository",
        "# admin (gh auth login). Generated by `make github-setup`; every call converges, so re-running is safe.",
        "set -euo pipefail",
        f"REPO={repository}",
        FUNCTIONS,
    ]
    for number, want in enumerate(targets, 1):
        people = reviewers if want.reviewers_required else staging_reviewers
        what = "required reviewers, no self-review, " if people and want.prevent_self_review else ""
        what += "reviewers, " if people and not want.prevent_self_review else ""
        refs = ", ".join(str(ref) for ref in want.refs)
        wanted = "\n".join(f"{ref.type}:{ref.name}" for ref in want.refs)
        parts += [
            f"# {number}. {want.name}: {what}deploys from {refs} only",
            f"api --method PUT repos/$REPO/environments/{want.name} --input - <<'JSON'",
            _json(environment_body(want, people)),
            "JSON",
            f"ensure_policies {want.name} '{wanted}'",
            "",
        ]
    parts += [
        f"# {len(targets) + 1}. Release tags {RELEASE_TAGS}: only repository admins create, move or delete them",
        "cat > tag-ruleset.json <<'JSON'",
        _json(tag_ruleset_body()),
        "JSON",
        f"ensure_ruleset '{TAG_RULESET}' tag-ruleset.json",
        "",
        f"# {len(targets) + 2}. The default branch: reviewed pull requests only, no force push, no deletion",
        "cat > main-ruleset.json <<'JSON'",
        _json(main_ruleset_body()),
        "JSON",
        f"ensure_ruleset '{MAIN_RULESET}' main-ruleset.json",
        "",
    ]
    return "\n".join(parts)


def _targets(args: argparse.Namespace) -> tuple[list[str], tuple[str, ...]]:
    """The targets named, and the environments each gets (fleet targets: the status one too)."""
    if args.fleet:
        return list(load_fleet(args.fleet).targets), ("staging", "production", STATUS)
    if args.target:
        names = list(dict.fromkeys(t.strip() for t in args.target.split(",") if t.strip()))
        bad = [t for t in names if not TARGET_NAME.match(t)]
        if not names or bad:
            raise UsageError(f"--target {args.target!r}: give comma-separated targets, each {TARGET_NAME_HELP}")
        return names, ("staging", "production", STATUS)
    text = args.cloud or "aws"
    clouds = [c.strip() for c in text.split(",") if c.strip()]
    if not clouds or not set(clouds) <= {"aws", "gcp", "local"}:
        raise UsageError(f"--cloud {text!r}: give aws, gcp or local, comma-separated")
    return list(dict.fromkeys(clouds)), ("staging", "production")


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cloud", default="", help="comma-separated clouds, e.g. aws,gcp (default aws)")
    where.add_argument("--target", default="", help="comma-separated fleet targets, e.g. aws-us,aws-eu")
    where.add_argument("--fleet", metavar="PATH", help="every target of this fleet file")
    parser.add_argument("--repository", default=os.environ.get("GITHUB_REPOSITORY", ""), help="OWNER/REPO")
    parser.add_argument(
        "--reviewers", default="", help="production's reviewers, User:ID or Team:ID, comma-separated (required)"
    )
    parser.add_argument("--staging-reviewers", default="", help="staging's reviewers (optional), as --reviewers")
    parser.add_argument(
        "--staging-refs", default="", help="the refs staging deploys from, e.g. tag:v*,branch:main (default tag:v*)"
    )
    args = parser.parse_args(argv)
    if "/" not in args.repository:
        raise UsageError(f"--repository {args.repository!r}: give the GitHub repository as OWNER/REPO")
    names, kinds = _targets(args)
    reviewers = parse_reviewers(args.reviewers)
    if not reviewers:
        raise UsageError(
            "--reviewers: production needs required reviewers, e.g. User:1234 (gh api users/NAME --jq .id)"
        )
    staging_refs = parse_refs(args.staging_refs) if args.staging_refs else ()
    targets = [protection(t, e, staging_refs if e != STATUS else ()) for t in names for e in kinds]
    sys.stdout.write(script(args.repository, targets, reviewers, parse_reviewers(args.staging_reviewers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
