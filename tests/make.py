"""`make TARGET ...` in the repository as a user runs it, for the tests of the Makefile's targets."""

from __future__ import annotations

import os
import subprocess

from tools.settings import REPO_ROOT


def make(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The run of `make ARGS` (not checked: tests assert its code), in this process's environment with
    `env` over it and no colour codes in its output."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "NO_COLOR": "1"},
        timeout=timeout,
        check=False,
    )
