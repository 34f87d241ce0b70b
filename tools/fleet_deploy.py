"""Roll a release out to a fleet, wave by wave: images built once, copied by digest, each target smoke-tested.

    python -m tools.fleet_deploy --fleet fleet.yaml [--jobs 2] [--images out/images.json] [--dry-run]

First the whole fleet is validated (tools.fleet_validate): nothing starts on a collision. Then the
images are built once (`make build` for the first target, for the union of every target's
IMAGE_PLATFORMS), or taken from --images (an image list a release gate promoted). Each target then
runs its own chain, `make validate copy-images secrets certs helm-deploy dns smoke TARGET=<target>`:
the images are copied by digest into its registry where it is another one (tools/image_copy.py),
never rebuilt. A wave's targets run in parallel, at most --jobs at once, each logging to
out/<target>/deploy.log; the next wave starts only when every target of this one passed its smoke
test. A failure stops the later waves, and the last lines say which target is on which version.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tools import cli
from tools.errors import ToolError
from tools.fleet import Fleet, load_fleet, out_dir, platforms_union
from tools.fleet_checks import validate
from tools.images import load_images
from tools.report import REPORTER, markdown_table
from tools.runner import run_lines
from tools.settings import REPO_ROOT

# What each target runs, in this order (make deploy's chain with copy-images in place of build)
CHAIN = ("validate", "copy-images", "secrets", "certs", "helm-deploy", "dns", "smoke")
# Where a target is left when its chain fails in a step: before helm-deploy the release is not
# touched; helm-deploy and smoke roll a failed upgrade back to the revision before it
AFTER_FAILURE = {
    **dict.fromkeys(("validate", "copy-images", "secrets", "certs"), "release untouched"),
    **dict.fromkeys(("helm-deploy", "smoke"), "back on its previous revision"),
    "dns": "deployed, its DNS records not updated",
}
# The fleet's own files: no target is named so (a target's name starts with a letter)
FLEET_OUT = REPO_ROOT / "out" / ".fleet"
_FAILED_STEP = re.compile(r"\[Makefile:\d+: ([\w-]+)\] Error")


@dataclass
class Outcome:
    target: str
    state: str  # deployed | failed | untouched
    detail: str = ""
    seconds: float = 0.0


def make(args: list[str], log: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run make in the repository (with `env` over this process's); its output goes to `log` and comes back."""
    lines: list[str] = []
    command = ["make", "--no-print-directory", *args]
    code = run_lines(command, lines.append, cwd=str(REPO_ROOT), env={**os.environ, **(env or {})})
    text = REPORTER.redact("".join(lines))
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(text)
    return code, text


def version(images_file: Path) -> str:
    """A target's version as its images say it: the backend's tag and digest."""
    backend = load_images(images_file)["backend"]
    return f"{backend['tag']} (backend {backend['digest'][:19]})"


def build_once(fleet: Fleet, platforms: str) -> Path:
    """`make build` for the first target, for every target's platforms; the fleet's image list."""
    first = fleet.targets[0]
    images = FLEET_OUT / "images.json"
    log = FLEET_OUT / "build.log"
    log.unlink(missing_ok=True)
    start = time.monotonic()
    args = ["build", f"TARGET={first}", f"ENV_FILE={fleet.env_file(first)}", f"IMAGES_FILE={images}"]
    code, _ = make(args, log, env={"IMAGE_PLATFORMS": platforms})  # the process environment wins over the env file
    if code != 0:
        raise ToolError(f"build for the fleet failed (see {log}): no target was touched")
    REPORTER.ok(
        f"build once: {version(images)} for {platforms} in {first}'s registry -> {images}", time.monotonic() - start
    )
    return images


def deploy_target(fleet: Fleet, target: str, images: Path, dry_run: bool) -> Outcome:
    """One target's chain, its log in out/<target>/deploy.log."""
    folder = out_dir(REPO_ROOT, target)
    folder.mkdir(parents=True, exist_ok=True)
    log, own_images = folder / "deploy.log", folder / "images.json"
    log.unlink(missing_ok=True)
    shutil.copyfile(images, own_images)  # copy-images turns it into this target's list (its registry)
    start = time.monotonic()
    args = [*CHAIN, f"TARGET={target}", f"ENV_FILE={fleet.env_file(target)}", f"IMAGES_FILE={own_images}"]
    args += ["DRY_RUN=true"] if dry_run else []
    code, text = make(args, log)
    seconds = time.monotonic() - start
    if code != 0:
        steps = _FAILED_STEP.findall(text)
        step = steps[-1] if steps else "make"
        where = AFTER_FAILURE.get(step, "its state unknown")
        return Outcome(target, "failed", f"in {step} (exit {code}), {where}: see {log}", seconds)
    return Outcome(target, "deployed", f"on {version(own_images)}", seconds)


def roll_out(fleet: Fleet, images: Path, jobs: int, dry_run: bool) -> list[Outcome]:
    """Every wave in order; a wave only after every target of the one before passed."""
    outcomes: list[Outcome] = []
    stopped = ""
    for number, wave in enumerate(fleet.waves, 1):
        if stopped:
            outcomes += [Outcome(t, "untouched", f"not started: {stopped}") for t in wave.targets]
            continue
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(lambda t: deploy_target(fleet, t, images, dry_run), wave.targets))
        for outcome in done:
            status = "ok" if outcome.state == "deployed" else "error"
            REPORTER.line(status, f"target {outcome.target}: {outcome.state} {outcome.detail}", outcome.seconds)
        outcomes += done
        failed = [o.target for o in done if o.state != "deployed"]
        REPORTER.line(
            "error" if failed else "ok",
            f"wave {number} ({wave.name}): {len(done) - len(failed)}/{len(done)} passed",
            time.monotonic() - start,
        )
        if failed:
            stopped = f"wave {number} ({wave.name}) failed on {', '.join(failed)}"
    return outcomes


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False)
    parser.add_argument("--fleet", required=True, metavar="PATH", help="the fleet file (waves and their targets)")
    parser.add_argument("--jobs", type=int, default=2, help="most targets of a wave deployed at once (default 2)")
    parser.add_argument("--images", metavar="PATH", help="deploy this image list (e.g. a promoted one), build nothing")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        raise ToolError(f"--jobs {args.jobs}: give 1 or more targets at once", 2)
    if args.dry_run and not args.images:
        raise ToolError("--dry-run builds nothing to deploy: give the image list to try with --images PATH", 2)
    fleet = load_fleet(args.fleet)
    if validate(fleet):
        raise ToolError(f"fleet {args.fleet}: fix the problems above; no target was touched")
    if args.images:
        images = Path(args.images)
        REPORTER.ok(f"images: {version(images)} from {images} (nothing built)")
    else:
        platforms = ",".join(platforms_union([fleet.settings(t) for t in fleet.targets]))
        images = build_once(fleet, platforms)
    outcomes = roll_out(fleet, images, args.jobs, args.dry_run)
    for outcome in outcomes:
        if outcome.state != "deployed":
            REPORTER.info(f"target {outcome.target}: {outcome.state}: {outcome.detail}")
    rows = [(f"`{o.target}`", o.state, o.detail) for o in outcomes]
    REPORTER.summary("### Fleet roll-out\n\n" + markdown_table(["target", "result", "version"], rows))
    failed = [o.target for o in outcomes if o.state != "deployed"]
    if failed:
        REPORTER.error(f"fleet {args.fleet}: not rolled out to {', '.join(failed)}")
        return 1
    REPORTER.ok(f"fleet {args.fleet}: {len(outcomes)} target(s) in {len(fleet.waves)} wave(s) on {version(images)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
