"""The Kubernetes kit that starts a real cluster on this machine: where it is, whether one already
runs, and laying it out from the official release binaries where it is absent.

The kit (`../shared/k8s`, or `$CMB_K8S_KIT`) starts Kubernetes v1.36 from its own binaries
under `/tmp/cmbk8s-*` and allows one kubelet per machine. Where there is no kit (a laptop, a
GitHub runner), `tests/k8s-kit/assemble-from-release.sh` lays out the same release from
dl.k8s.io, each binary checked against the SHA-256 published beside it, exactly as
`.github/workflows/ci.yml` does. The test bed and `make demo` both find the kit here.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tools.errors import ToolError
from tools.runner import run
from tools.settings import REPO_ROOT

KIT_ENV = "CMB_K8S_KIT"
HOME_PREFIX = "cmbk8s-"  # each cluster lives in /tmp/cmbk8s-*: unix sockets want a short path
ASSEMBLE = REPO_ROOT / "tests" / "k8s-kit" / "assemble-from-release.sh"
DOWNLOAD_TOOLS = ("bash", "curl", "zstd", "sha256sum", "tar")


def kit_dir() -> Path | None:
    """The Kubernetes kit: $CMB_K8S_KIT, else ../shared/k8s beside the repository when it is there."""
    chosen = os.environ.get(KIT_ENV)
    if chosen:
        return Path(chosen)
    default = REPO_ROOT.parent / "shared" / "k8s"
    return default if is_kit(default) else None


def is_kit(folder: Path) -> bool:
    """A complete kit: its start scripts and its binaries' checksum list (written last when laid out)."""
    return (folder / "reference" / "up.sh").is_file() and (folder / "bin" / "SHA256SUMS").is_file()


@dataclass(frozen=True)
class RunningKubelet:
    pid: int
    home: Path | None  # the kit's folder when the kubelet is one of the kit's, else None

    @property
    def kubeconfig(self) -> Path | None:
        return self.home / "kubeconfig" if self.home else None


def running_kubelets() -> list[RunningKubelet]:
    """Every kubelet running on this machine, with the kit folder it belongs to when it is the kit's."""
    homes = {}
    for home in Path("/tmp").glob(f"{HOME_PREFIX}*"):
        try:
            homes[int((home / "run" / "pids" / "kubelet.pid").read_text().strip())] = home
        except (OSError, ValueError):
            continue
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "kubelet":
                continue
        except OSError:
            continue
        found.append(RunningKubelet(int(proc.name), homes.get(int(proc.name))))
    return sorted(found, key=lambda k: k.pid)


def lay_out_from_release(dest: Path) -> Path:
    """The kit under `dest` from the official release binaries, checksum-verified (once: a complete
    kit there is kept). The download needs root later to start it, and curl and zstd now."""
    if is_kit(dest):
        return dest
    missing = [tool for tool in DOWNLOAD_TOOLS if not shutil.which(tool)]
    if missing:
        raise ToolError(
            f"no Kubernetes kit here and {', '.join(missing)} missing to download one: "
            "apt-get install curl zstd, or point KUBECONFIG at a cluster of your own"
        )
    run(["bash", str(ASSEMBLE), str(dest)], what="laying out Kubernetes from the release binaries")
    return dest
