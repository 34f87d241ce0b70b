"""What each GitHub environment of a deploy must be: one structured source for the gate and the set-up.

`make github-setup` (tools/github_setup.py) turns it into REST request bodies; the fail-closed gate
(tools/github_gate.py) reads an environment back and names every way it falls short of it. The
credentials of a target exist only in the jobs that name `<target>-<environment>` (the target
named by its cloud, `aws`, `gcp`, `local`, when there is no fleet), so that environment's
protection is the whole release gate:

- production: required reviewers who are not the person who started the run, and a deployment
  policy that admits release tags only (a tag policy `v*`, the tags themselves protected by a
  ruleset so only admins create them);
- staging (and dev): the refs the operator names (default: release tags only), reviewers optional;
- status: the scheduled, read-only fleet status (.github/workflows/status.yml) with the target's
  read-only identity: the default branch only (schedules run there), no reviewers (nobody is there
  to approve a schedule).

Sources: https://docs.github.com/en/rest/deployments/environments ,
https://docs.github.com/en/rest/deployments/branch-policies ,
https://docs.github.com/en/actions/deployment/targeting-different-environments/using-environments-for-deployment
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.errors import UsageError

ENVIRONMENT = "{target}-{environment}"
RELEASE_TAGS = "v*"  # the pattern release.yml's tag trigger narrows to vMAJOR.MINOR.PATCH
TAG_RULES = ("creation", "update", "deletion")  # what the tag ruleset restricts to repository admins
PRODUCTION = "production"
STATUS = "status"
DEFAULT_BRANCH = "main"  # where `schedule` runs: https://docs.github.com/en/actions/reference/workflows-and-actions/events-that-trigger-workflows#schedule
REF_TYPES = ("branch", "tag")
REVIEWER_TYPES = ("User", "Team")
_REF = re.compile(r"^(branch|tag):(\S+)$")
_REVIEWER = re.compile(r"^(User|Team):(\d+)$")


@dataclass(frozen=True, order=True)
class Ref:
    """One deployment branch policy: a name pattern (fnmatch, as GitHub's) of a branch or a tag."""

    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type} '{self.name}'"


@dataclass(frozen=True)
class Protection:
    """The protection one environment needs before its job may hold the target's credentials."""

    name: str
    reviewers_required: bool
    prevent_self_review: bool
    refs: tuple[Ref, ...]


def environment_name(target: str, environment: str) -> str:
    """The protected GitHub environment of one target (a fleet target, or a cloud): the only subject its
    cloud identity trusts."""
    return ENVIRONMENT.format(target=target, environment=environment)


def parse_refs(text: str) -> tuple[Ref, ...]:
    """`tag:v*,branch:main` as refs; refused with the fix when a part is not TYPE:PATTERN."""
    refs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = _REF.match(part)
        if not match:
            raise UsageError(f"ref {part!r}: give TYPE:PATTERN with TYPE branch or tag, e.g. tag:v* or branch:main")
        refs.append(Ref(match.group(1), match.group(2)))
    if not refs:
        raise UsageError("no refs named: give at least one, e.g. tag:v*")
    return tuple(sorted(set(refs)))


def parse_reviewers(text: str) -> list[dict[str, object]]:
    """`User:123,Team:456` as the REST API's reviewers list (IDs: gh api users/NAME --jq .id)."""
    reviewers: list[dict[str, object]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = _REVIEWER.match(part)
        if not match:
            raise UsageError(
                f"reviewer {part!r}: give TYPE:ID with TYPE User or Team and the numeric ID "
                "(gh api users/NAME --jq .id, gh api orgs/ORG/teams/SLUG --jq .id)"
            )
        reviewers.append({"type": match.group(1), "id": int(match.group(2))})
    return reviewers


def protection(target: str, environment: str, staging_refs: tuple[Ref, ...] = ()) -> Protection:
    """Production: reviewers, no self-review, release tags only. Status: the default branch only.
    Others: the refs named (default tags)."""
    name = environment_name(target, environment)
    if environment == PRODUCTION:
        return Protection(name, True, True, (Ref("tag", RELEASE_TAGS),))
    if environment == STATUS:
        return Protection(name, False, False, staging_refs or (Ref("branch", DEFAULT_BRANCH),))
    return Protection(name, False, False, staging_refs or (Ref("tag", RELEASE_TAGS),))
