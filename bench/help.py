"""Benchmark: how long each tool's `--help` takes (`make bench-help`). Goal: every tool under 0.3 s.

`--help` must not import what only the work needs (cloud SDKs, yaml, asyncio, pyhelm3, the
cluster client): each tool parses its arguments first. Prints the median of 7 runs per tool.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tools.settings import REPO_ROOT

TOOLS = (
    "validate_secrets",
    "build_push",
    "make_secrets",
    "certs",
    "helm_deploy",
    "dns",
    "smoke_test",
    "plan",
    "install_helm",
    "cloud_setup",
    "github_gate",
    "github_setup",
    "promoted_images",
    "copy_images",
    "lock",
    "rbac",
    "migrate_database",
)
GOAL = 0.3


def main() -> int:
    slow = []
    for tool in TOOLS:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", f"tools.{tool}", "--help"], cwd=REPO_ROOT, capture_output=True, check=True
            )
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{tool:<17} --help  median {median:.3f}s  (min {min(times):.3f}s, max {max(times):.3f}s)")
        if median >= GOAL:
            slow.append(tool)
    print(f"every tool under {GOAL}s: {'yes' if not slow else 'no: ' + ', '.join(slow)}")
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
