"""Take the image list a promotion hands on, or fail naming the job: a promotion never builds.

The environment before (staging) hands its smoke-tested image list to the next (production) as a
job output. GitHub drops a job output that looks like a secret and hands on an empty string
instead (GitHub: "Outputs containing secrets are redacted on the runner and not sent to GitHub
Actions", https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/passing-information-between-jobs
), so an empty or partial list is refused here, with the job's name, before anything is deployed; it is
never a reason to build. The list is the one build_push writes (tools/images.py), checked by the
same reader helm-deploy uses, written to --output for the steps after and handed on as the step
output `images`.

    IMAGES='{"registry": ...}' python -m tools.promoted_images --job "deploy (aws-production)"

Exit 0 with the list written, 1 when it is empty, partial or malformed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tools import cli
from tools.errors import ToolError
from tools.images import DEFAULT_OUTPUT, load_images
from tools.report import REPORTER
from tools.settings import IMAGES


def take(text: str, job: str, output: Path) -> dict[str, dict[str, str]]:
    """Check the promoted list and write it to `output`; a ToolError naming `job` when it is not whole."""
    if not text.strip():
        raise ToolError(
            f"{job}: the promoted image list arrived empty (GitHub drops a job output that looks like a secret); "
            "nothing was built or deployed: re-run the release, and keep secrets out of the image list"
        )
    try:
        json.loads(text)
    except ValueError:
        raise ToolError(f"{job}: the promoted image list is not JSON: re-run the release from its tag") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text.strip() + "\n", encoding="utf-8")
    try:
        images = load_images(output)
    except ToolError as exc:
        output.unlink()
        raise ToolError(f"{job}: the promoted image list is malformed ({exc}); nothing was deployed") from None
    missing = [name for name in IMAGES if name not in images]
    if missing:
        output.unlink()
        raise ToolError(
            f"{job}: the promoted image list lacks {', '.join(missing)}: a promotion deploys only what the "
            "environment before it passed, and builds nothing; re-run the release from its tag"
        )
    return images


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    parser.add_argument("--job", required=True, help="the job's name, for the error line")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"where to write the list (default {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    start = time.monotonic()
    images = take(os.environ.get("IMAGES", ""), args.job, Path(args.output))  # refused: its one line only
    REPORTER.ok(f"promoted image list: {len(images)} image(s) by digest, nothing built", time.monotonic() - start)
    REPORTER.output("images", json.dumps(json.loads(Path(args.output).read_text()), separators=(",", ":")))
    lines = [f"- `{name}`: `{image['repository']}@{image['digest']}`" for name, image in images.items()]
    REPORTER.summary(
        "### Images\n\npromoted: what the previous environment deployed and smoke-tested, by digest (not rebuilt)\n\n"
        + "\n".join(lines)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
