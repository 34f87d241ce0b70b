"""Which targets a GitHub run deploys, in which waves: the matrices of release.yml and status.yml.

GitHub Actions jobs are fixed in the workflow file, so release.yml has MAX_WAVES wave jobs, each a
matrix over its wave's targets, each `needs` the one before (a failed wave skips every later one);
this fills them from the fleet file:

    python -m tools.release_waves --fleet fleet.yaml --targets all        # RELEASE_TARGETS: waves
    python -m tools.release_waves --fleet fleet.yaml --targets aws-us,gcp-eu
    python -m tools.release_waves --fleet fleet.yaml --clouds '["aws","gcp"]'  # RELEASE_CLOUDS: one wave
    python -m tools.release_waves --fleet fleet.yaml --targets all --list  # status.yml: the targets alone

Each wave is a JSON list of {"target", "cloud"} (the cloud from the target's env file: its
CLOUD_PROVIDER; a target named by its cloud, RELEASE_CLOUDS, is that cloud). The first wave of a
fleet release is its canary: it builds the release's images once, and every later target gets them
copied by digest into its registry, so it holds one target. Outputs (GITHUB_OUTPUT, else printed):
wave1..waveN (`[]` when empty) and targets (every target, flat, for status.yml). Exit 0, or 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from tools import cli
from tools.errors import UsageError
from tools.fleet import Fleet, load_fleet
from tools.report import REPORTER

MAX_WAVES = 3  # the wave jobs release.yml has (wave-1 .. wave-3); tests/test_workflows.py checks both
CLOUDS = ("aws", "gcp", "local")


def fleet_waves(fleet: Fleet, selection: str, rollout: bool = True) -> list[list[dict[str, str]]]:
    """The fleet's waves restricted to `selection` (comma-separated targets, or `all`), empty waves dropped;
    `rollout`: checked against what release.yml runs (its wave jobs, the canary alone first)."""
    names = [n.strip() for n in selection.split(",") if n.strip()]
    if names == ["all"]:
        names = list(fleet.targets)
    unknown = [n for n in names if n not in fleet.targets]
    if not names or unknown:
        what = f"target {unknown[0]} is not in {fleet.path.name}" if unknown else "no target named"
        raise UsageError(f"{what}: name targets of its waves ({', '.join(fleet.targets)}) or all")
    waves = []
    for wave in fleet.waves:
        chosen = [t for t in wave.targets if t in names]
        if chosen:
            waves.append([{"target": t, "cloud": fleet.settings(t).cloud} for t in chosen])
    if not rollout:
        return waves
    if len(waves) > MAX_WAVES:
        raise UsageError(
            f"{len(waves)} waves: release.yml runs at most {MAX_WAVES}; merge waves in {fleet.path.name} "
            "or add a wave job to release.yml (and MAX_WAVES)"
        )
    if len(waves[0]) > 1:
        firsts = ", ".join(t["target"] for t in waves[0])
        raise UsageError(
            f"the first wave ({firsts}) builds the release's images once, so it is one target: put one canary "
            f"target in a wave of its own before the others in {fleet.path.name}"
        )
    return waves


def cloud_wave(clouds_json: str) -> list[list[dict[str, str]]]:
    """RELEASE_CLOUDS (the targets named by their cloud): one wave, each cloud building as before the fleet."""
    try:
        clouds = json.loads(clouds_json)
    except json.JSONDecodeError:
        clouds = None
    if not isinstance(clouds, list) or not clouds or not set(clouds) <= set(CLOUDS):
        raise UsageError(f"--clouds {clouds_json!r}: give a JSON list of {', '.join(CLOUDS)}")
    return [[{"target": c, "cloud": c} for c in dict.fromkeys(clouds)]]


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    parser.add_argument("--fleet", default="fleet.yaml", metavar="PATH", help="the fleet file (waves and targets)")
    parser.add_argument("--targets", default="", help="fleet targets, comma-separated, or all (RELEASE_TARGETS)")
    parser.add_argument("--clouds", default="", help="without --targets: a JSON list of clouds (RELEASE_CLOUDS)")
    parser.add_argument("--list", action="store_true", help="the targets alone, no rollout (status.yml)")
    args = parser.parse_args(argv)
    if args.list and args.targets:
        targets = [t for wave in fleet_waves(load_fleet(args.fleet), args.targets, rollout=False) for t in wave]
        REPORTER.output("targets", json.dumps(targets, separators=(",", ":")))
        REPORTER.ok(f"targets: {', '.join(t['target'] for t in targets)}")
        return 0
    if args.targets:
        waves = fleet_waves(load_fleet(args.fleet), args.targets)
    elif args.clouds:
        waves = cloud_wave(args.clouds)
    else:
        raise UsageError("name --targets (fleet targets, or all) or --clouds (a JSON list of clouds)")
    for number in range(1, MAX_WAVES + 1):
        wave = waves[number - 1] if number <= len(waves) else []
        REPORTER.output(f"wave{number}", json.dumps(wave, separators=(",", ":")))
        if wave:
            named = ", ".join(f"{t['target']} ({t['cloud']})" for t in wave)
            REPORTER.ok(f"wave {number}: {named}")
    REPORTER.output("targets", json.dumps([t for wave in waves for t in wave], separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
