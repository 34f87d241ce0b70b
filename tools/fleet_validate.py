"""Check a whole fleet at once: every target's settings, then what two targets must never share.

One line per target (its cloud, cluster and namespace, host and registry), then one line per
collision: a bucket name (S3's and GCS's names are global, each in its own namespace), a host
name (BASE_DOMAIN, api.BASE_DOMAIN and the wildcard *.BASE_DOMAIN), a cluster and namespace.
No cloud access. Exit 1 on any problem.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tools import cli
from tools.fleet import load_fleet
from tools.fleet_checks import validate
from tools.report import REPORTER


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    parser.add_argument("--fleet", required=True, metavar="PATH", help="the fleet file (waves and their targets)")
    args = parser.parse_args(argv)
    fleet = load_fleet(args.fleet)
    problems = validate(fleet)
    if problems:
        REPORTER.error(f"fleet {args.fleet}: {len(problems)} problem(s): fix them above")
        return 1
    REPORTER.ok(f"fleet {args.fleet}: {len(fleet.targets)} target(s) in {len(fleet.waves)} wave(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
