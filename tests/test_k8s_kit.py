"""The kit laid out from release binaries (the GitHub path, tests/k8s-kit/assemble-from-release.sh,
which `make demo` runs through tools.kit where there is no kit) is one the kit's own install.sh
accepts: every binary present, each checked against its SHA-256.

The release servers are not reachable from here, so their layout is served from loopback with
the binaries of ../shared/k8s (the same Kubernetes version) and a stand-in crictl."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.skips import unavailable
from tests.testbed import kit_dir
from tools.errors import ToolError
from tools.kit import is_kit, lay_out_from_release
from tools.settings import REPO_ROOT

BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")


def releases(root: Path, kit: Path, corrupt: str = "") -> None:
    """dl.k8s.io's and cri-tools' release layout under `root`: binaries with their .sha256 files."""
    folder = root / "k8s" / "v1.36.2" / "bin" / "linux" / "amd64"
    folder.mkdir(parents=True)
    for name in BINARIES:
        data = subprocess.run(["zstd", "-d", "-c", str(kit / "bin" / f"{name}.zst")], capture_output=True, check=True)
        (folder / name).write_bytes(data.stdout + (b"tampered" if name == corrupt else b""))
        (folder / f"{name}.sha256").write_text(hashlib.sha256(data.stdout).hexdigest())
    crictl = b'#!/bin/sh\necho crictl stand-in "$@"\n'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("crictl")
        info.size, info.mode = len(crictl), 0o755
        tar.addfile(info, io.BytesIO(crictl))
    tools = root / "cri" / "v1.36.0"
    tools.mkdir(parents=True)
    (tools / "crictl-v1.36.0-linux-amd64.tar.gz").write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    (tools / "crictl-v1.36.0-linux-amd64.tar.gz.sha256").write_text(f"{digest}  crictl-v1.36.0-linux-amd64.tar.gz\n")


def assemble(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: str = "") -> tuple[str, Path]:
    """tools.kit.lay_out_from_release (`make demo` without a kit) against the loopback release servers;
    its error line, if any."""
    kit = kit_dir()
    if kit is None:
        unavailable("no kit in ../shared/k8s (or CMB_K8S_KIT) to stage the release servers from")
    root = tmp_path / "www"
    releases(root, kit, corrupt)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    dest = tmp_path / "kit"
    monkeypatch.setenv("K8S_RELEASE_URL", f"{base}/k8s")
    monkeypatch.setenv("CRICTL_RELEASE_URL", f"{base}/cri")
    try:
        lay_out_from_release(dest)
        error = ""
    except ToolError as exc:
        error = str(exc)
    finally:
        server.shutdown()
        server.server_close()
    return error, dest


@pytest.mark.testbed
def test_a_kit_from_release_binaries_installs_with_the_kits_own_installer(tmp_path: Path, monkeypatch) -> None:
    error, dest = assemble(tmp_path, monkeypatch)
    assert not error
    assert (
        is_kit(dest) and lay_out_from_release(dest) == dest
    )  # laid out once: the servers are gone, nothing is fetched
    listed = dict(reversed(line.split()) for line in (dest / "bin" / "SHA256SUMS").read_text().splitlines())
    assert set(listed) == {*BINARIES, "crictl", "crilite"}
    assert (dest / "reference" / "up.sh").is_file()
    home = Path(tempfile.mkdtemp(prefix="cmbkit-", dir="/tmp"))  # the kit wants a short path
    env = {**os.environ, "K8S_NO_APT": "1"}
    install = subprocess.run(
        ["bash", str(dest / "reference" / "install.sh"), str(home)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        check_installed(install, home, listed)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def check_installed(install: subprocess.CompletedProcess, home: Path, listed: dict[str, str]) -> None:
    assert install.returncode == 0, install.stderr[-2000:]
    for name in listed:
        assert hashlib.sha256((home / "bin" / name).read_bytes()).hexdigest() == listed[name]
    version = subprocess.run([str(home / "bin" / "kubectl"), "version", "--client"], capture_output=True, text=True)
    assert "v1.36.2" in version.stdout
    rmp = subprocess.run(
        [str(home / "bin" / "crilite"), "-e", "unix:///x.sock", "rmp-all"], capture_output=True, text=True
    )
    assert rmp.stdout.strip() == "crictl stand-in --runtime-endpoint unix:///x.sock rmp --all --force"


@pytest.mark.testbed
def test_a_binary_that_does_not_match_its_published_checksum_is_refused(tmp_path: Path, monkeypatch) -> None:
    error, dest = assemble(tmp_path, monkeypatch, corrupt="kubelet")
    assert error.endswith("checksum mismatch: kubelet"), error
    assert not (dest / "bin" / "SHA256SUMS").exists() and not is_kit(dest)


# -- a hosted runner: cgroup v2, the state on a real filesystem ---------------------------------------
RUNNER_CHECK = REPO_ROOT / "tests" / "k8s-kit" / "runner-check.sh"


def runner_check(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUNNER_CHECK), *map(str, args)], capture_output=True, text=True, check=False)


def cgroup2_root() -> Path:
    """A mounted cgroup v2 hierarchy's root: /sys/fs/cgroup on a v2 host, .../unified on a hybrid v1 one."""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, where, kind, *_ = line.split()
        if kind == "cgroup2":
            return Path(where)
    unavailable("no cgroup v2 hierarchy mounted here")


@pytest.mark.testbed
def test_the_runner_check_passes_here_and_refuses_state_on_overlayfs(tmp_path: Path) -> None:
    """The check ci.yml runs before the kit: this machine's /tmp passes; an overlay (a container's root) does not."""
    ok = runner_check("/tmp")
    assert ok.returncode == 0 and ok.stdout.startswith("runner-check: state in /tmp on "), ok.stderr
    assert "; cgroup v1" in ok.stdout or "; cgroup v2 (the root cgroup" in ok.stdout
    if os.geteuid() != 0:
        unavailable("mounting an overlay needs root")
    for part in ("lower", "upper", "work", "merged"):
        (tmp_path / part).mkdir()
    options = f"lowerdir={tmp_path / 'lower'},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(tmp_path / "merged")], check=True)
    try:
        refused = runner_check(tmp_path / "merged")
    finally:
        subprocess.run(["umount", str(tmp_path / "merged")], check=True)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"runner-check: {tmp_path / 'merged'} is on overlayfs, where containerd's overlayfs snapshotter cannot run: "
        f"mount a directory of the runner's disk there (docker run --volume HOST_DIR:{tmp_path / 'merged'})"
    ]


@pytest.mark.testbed
def test_the_runner_check_takes_cgroup_v2s_root_and_refuses_a_nested_cgroup(tmp_path: Path) -> None:
    """On cgroup v2 the kubelet needs the root cgroup (a private cgroup namespace shows a nested one)."""
    root = cgroup2_root()
    ok = runner_check(tmp_path, root)
    assert ok.returncode == 0 and "; cgroup v2 (the root cgroup; controllers: " in ok.stdout, ok.stderr
    if os.geteuid() != 0:
        unavailable("creating a cgroup needs root")
    nested = root / f"cmb-runner-check-{os.getpid()}"
    nested.mkdir()
    try:
        refused = runner_check(tmp_path, nested)
    finally:
        nested.rmdir()
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
    assert f"cgroup v2 and {nested} is not the root cgroup" in refused.stderr and "--cgroupns=host" in refused.stderr
    assert runner_check(tmp_path, tmp_path).stderr.startswith(f"runner-check: no cgroup hierarchy under {tmp_path}")


def test_ci_runs_the_tests_on_the_runner_host_in_its_cgroup_namespace_with_state_on_its_disk() -> None:
    """ci.yml's test job: no job container (its /tmp would be an overlay), one privileged Debian 12 container
    in the host's cgroup namespace with a runner directory as /tmp, checked before the kit is laid out."""
    job = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["test"]
    assert "container" not in job and job["runs-on"].startswith("ubuntu-")
    (run,) = [s["run"] for s in job["steps"] if "docker run" in s.get("run", "")]
    (prepare,) = [s["run"] for s in job["steps"] if "cmb-tmp" in s.get("run", "") and s["run"] != run]
    assert 'mkdir -p "$RUNNER_TEMP/cmb-tmp"' in prepare and 'chmod 1777 "$RUNNER_TEMP/cmb-tmp"' in prepare
    flags = run.split("debian:12", 1)[0].split()
    assert {"--privileged", "--cgroupns=host", "--rm"} <= set(flags)
    assert '"$RUNNER_TEMP/cmb-tmp:/tmp"' in flags and "CMB_K8S_KIT=/opt/k8s-kit" in flags
    script = run.split("debian:12", 1)[1]
    at = [script.index(s) for s in ("runner-check.sh /tmp", "assemble-from-release.sh /opt/k8s-kit", ".ci/run")]
    assert at == sorted(at)
