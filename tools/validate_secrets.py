"""Refuse a configuration early: every structural problem and security rule, reported at once.

Exit 0: no errors (warnings may be printed); 1: errors; 2: usage (no cloud, unreadable file).
Secret values are never printed, not even a prefix; under GitHub Actions they are masked
with `::add-mask::` before any other line, and each finding is also an annotation.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tools import cli, config_rules
from tools.auth.preflight import report_online as online_problems
from tools.report import REPORTER
from tools.settings import ConfigError


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], dry_run=False)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    parser.add_argument(
        "--online", action="store_true", help="also ask the sign-in provider (Cognito's pool and app client)"
    )
    args = parser.parse_args(argv)
    try:
        settings = cli.settings_from(args)
    except ConfigError as exc:
        for problem in exc.problems:
            REPORTER.error(problem, title="configuration")
        REPORTER.line("error", f"{len(exc.problems)} configuration problem(s): fix them and run again")
        return exc.exit_code
    findings = config_rules.check(settings)
    config_rules.report(findings, verbose=not args.quiet)
    errors = config_rules.errors(findings)
    warnings = [f for f in findings if f.level == "warning"]
    source = settings.env_file or "the environment"
    example = config_rules.example_file_problem(settings)
    if errors:
        REPORTER.line("error", f"{len(errors)} error(s), {len(warnings)} warning(s) in {source} for {settings.cloud}")
        if example:
            REPORTER.line("info", example)
        return 1
    if example:
        REPORTER.error(example, title="configuration")
        return 1
    if args.online and online_problems(settings):
        return 1
    providers = config_rules.chosen_providers_note(settings)
    REPORTER.ok(f"{source} is valid for {settings.cloud} ({len(warnings)} warning(s); {providers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
