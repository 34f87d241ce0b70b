"""Write requirements/deploy.txt: the runtime dependencies of pyproject.toml, every one pinned with its hashes.

The GitHub deploy jobs install only this file (`make setup-deploy`, pip --require-hashes): no test
tools in a job that can log in to a cloud, and nothing that was not reviewed in this file. Its
first lines name the fingerprint of the dependencies it was compiled from; a test fails when
pyproject.toml's dependencies change and the lock was not written again (`make lock`).

Exit 0, or 1 when uv cannot resolve (the message says why).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from tools.cli import main_boundary
from tools.report import REPORTER
from tools.runner import run
from tools.settings import REPO_ROOT

LOCK = REPO_ROOT / "requirements" / "deploy.txt"
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"  # GitHub's ubuntu-latest runners and the Debian CI machines
FINGERPRINT = "# dependencies-sha256: "


def dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def fingerprint(deps: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(deps)).encode()).hexdigest()


def header(deps: Sequence[str]) -> str:
    return (
        "# The deploy jobs' dependencies, pinned with hashes: written by `make lock` (tools/lock.py), never by hand.\n"
        f"{FINGERPRINT}{fingerprint(deps)}\n"
    )


@main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(LOCK), help=f"where (default {LOCK.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)

    deps = dependencies()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "requirements.in"
        source.write_text("".join(f"{d}\n" for d in deps))
        compiled = Path(tmp) / "deploy.txt"
        uv = Path(sys.executable).parent / "uv"
        with REPORTER.action(f"resolving {len(deps)} dependencies for Python {PYTHON} on {PLATFORM}"):
            run(
                [str(uv), "pip", "compile", str(source), "--generate-hashes", "--no-header", "--quiet",
                 "--python-version", PYTHON, "--python-platform", PLATFORM, "-o", str(compiled)],
                what="uv pip compile",
            )  # fmt: skip
        body = compiled.read_text().replace(str(source), "requirements.in")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = header(deps) + body
    if output.is_file() and output.read_text() == text:
        REPORTER.ok(f"{output} is up to date")
    else:
        output.write_text(text)
        REPORTER.ok(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
