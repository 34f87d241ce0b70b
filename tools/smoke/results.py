"""What the smoke checks end with: one report row per check, and how a watched rollout ended."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.report import REPORTER
from tools.smoke.verdicts import Problem


@dataclass
class Check:
    """One row of the report."""

    name: str
    status: str  # ok | failed | skipped | warning
    seconds: float | None = None
    detail: str = ""
    reported: bool = False  # its evidence (and ::error annotation) is already out


@dataclass
class Outcome:
    """How a watched rollout (or storage pod) ended."""

    ok: bool
    seconds: float
    summary: str
    problem: Problem | None = None
    waiting: dict[str, str] = field(default_factory=dict)
    ready_after: dict[str, float] = field(default_factory=dict)


def print_check(check: Check) -> None:
    """One line per check; a failure not yet told goes to stderr with an ::error annotation."""
    message = f"{check.name}: {check.detail}"
    if check.status == "failed" and not check.reported:
        REPORTER.line("error", message, check.seconds, stream=REPORTER.err)
        REPORTER.annotate("error", message, title=check.name)
        return
    status = {"failed": "error", "warning": "warn"}.get(check.status, check.status)
    REPORTER.line(status, message, check.seconds, stream=REPORTER.err if check.status == "failed" else None)
