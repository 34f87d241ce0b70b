"""What a cluster step imports before its first request: not the `kubernetes` package (0.7 s for
the package, 1-2 s per API class: every model it names). Measured against the real cluster;
the seconds themselves are printed by `make bench-deploy`, not asserted here."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.envfiles import good_env, write_env
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed


def imported(tool: str, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"tools.{tool}", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", proc.stderr, re.M))
    assert modules, proc.stderr[-2000:]
    return modules


@pytest.mark.parametrize(
    ("tool", "args"),
    [("make_secrets", ("--dry-run",)), ("smoke_test", ("--no-endpoints", "--no-storage-check"))],
)
def test_cluster_steps_do_not_import_the_kubernetes_package(tool, args, tmp_path, cluster, on_cluster) -> None:
    env = write_env(tmp_path / "local.env", good_env("local", NAMESPACE="startup-probe"))
    modules = imported(tool, "--cloud", "local", "--env-file", str(env), *args)
    assert "tools.kube_client" in modules  # it did talk to the cluster
    heavy = sorted(m for m in modules if m == "kubernetes" or m.startswith(("kubernetes.", "pydantic")))
    assert heavy == [], heavy[:10]
