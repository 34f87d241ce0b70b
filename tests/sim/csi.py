"""The stand-in CSI drivers on the test bed's real cluster: their CSIDriver objects as the add-ons
create them, the node plugin process (tests/sim/csi_plugin.py) registered with the kubelet, and
everything undone at the end.

The cluster and its kubelet are shared (one kubelet per machine), so the drivers are registered
under their real names only while a holder of an exclusive lock in the kubelet's plugins folder
runs; another test run waits for it. Other CSIDrivers are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.sim.csi_plugin import sockets
from tests.sim.csi_rules import GCSFUSE, MOUNTPOINT
from tests.waiting import eventually
from tools.settings import REPO_ROOT

NODE = "localhost"  # the kit's node
LOCK_WAIT = 300.0  # another run of these tests may hold the drivers' names this long


def csi_drivers(project: str) -> list[dict[str, Any]]:
    """The CSIDriver objects as the EKS and GKE add-ons create them."""
    return [
        {
            # Mountpoint for S3 (EKS add-on aws-mountpoint-s3-csi-driver): static provisioning only;
            # pod-level credentials (authenticationSource: pod) take the pod's token for STS (IRSA) or
            # EKS Pod Identity, renewed by republishing (its chart's templates/csidriver.yaml, e.g.
            # https://github.com/awslabs/mountpoint-s3-csi-driver/pull/458; docs/CONFIGURATION.md)
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": MOUNTPOINT, "labels": {"cmb-testbed": "stand-in-csi"}},
            "spec": {
                "attachRequired": False,
                "podInfoOnMount": True,
                "requiresRepublish": True,
                "tokenRequests": [
                    {"audience": "sts.amazonaws.com", "expirationSeconds": 3600},
                    {"audience": "pods.eks.amazonaws.com", "expirationSeconds": 3600},
                ],
                "volumeLifecycleModes": ["Persistent"],
            },
        },
        {
            # Cloud Storage FUSE (GKE add-on GcsFuseCsiDriver): inline ephemeral and persistent volumes;
            # the Workload Identity token for the project's pool, renewed by republishing
            # (https://github.com/GoogleCloudPlatform/gcs-fuse-csi-driver/blob/main/docs/installation.md,
            # https://cloud.google.com/kubernetes-engine/docs/how-to/persistent-volumes/cloud-storage-fuse-csi-driver)
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": GCSFUSE, "labels": {"cmb-testbed": "stand-in-csi"}},
            "spec": {
                "attachRequired": False,
                "podInfoOnMount": True,
                "requiresRepublish": True,
                "tokenRequests": [{"audience": f"{project}.svc.id.goog"}],
                "volumeLifecycleModes": ["Persistent", "Ephemeral"],
            },
        },
    ]


def kubelet_dir(kubeconfig: str, k8s_home: str | None) -> Path | None:
    """The kit's kubelet root folder (start-kubelet.sh: $K8S_HOME/data/kubelet), if this is the kit."""
    home = Path(k8s_home) if k8s_home else Path(kubeconfig).resolve().parent
    folder = home / "data" / "kubelet"
    return folder if (folder / "plugins_registry").is_dir() else None


class StandInCsi:
    """Start: lock, CSIDrivers, plugin process, wait for the kubelet's CSINode. Stop undoes it all."""

    def __init__(self, kubeconfig: str, kubelet: Path, state: Path, project: str = "cmbtest-project") -> None:
        self.kubeconfig, self.kubelet, self.state, self.project = kubeconfig, kubelet, state, project
        self.drivers = [MOUNTPOINT, GCSFUSE]
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._made: list[str] = []

    def bucket(self, name: str) -> Path:
        """The host folder standing in for bucket `name` (what pods write lands here)."""
        return self.state / "buckets" / name

    def start(self) -> StandInCsi:
        self._take_lock()
        from kubernetes import client

        storage = client.StorageV1Api(self._api())
        for body in csi_drivers(self.project):
            name = body["metadata"]["name"]
            with contextlib.suppress(client.ApiException):  # a leftover of a run that was killed
                storage.delete_csi_driver(name)
            _until(lambda n=name: not _exists(storage.read_csi_driver, n), 30, f"old CSIDriver {name} to go")
            storage.create_csi_driver(body)
            self._made.append(name)
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / "csi-plugin.log", "ab")  # noqa: SIM115 - closed with the process
        argv = [sys.executable, "-m", "tests.sim.csi_plugin", "--kubelet-dir", str(self.kubelet)]
        argv += ["--state", str(self.state), "--kubeconfig", self.kubeconfig]
        for driver in self.drivers:
            argv += ["--driver", driver]
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        log.close()
        _until(lambda: set(self.drivers) <= self.registered(), 60, "the kubelet to register the stand-in drivers", self)
        return self

    def registered(self) -> set[str]:
        """The drivers the kubelet lists on its CSINode."""
        from kubernetes import client

        # raw JSON: the client's model refuses the `drivers: null` of a node with none
        response = client.StorageV1Api(self._api()).read_csi_node(NODE, _preload_content=False)
        return {d["name"] for d in (json.loads(response.data).get("spec") or {}).get("drivers") or []}

    def log(self) -> str:
        path = self.state / "csi-plugin.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """End the plugin (it removes its sockets), wait for the kubelet to let go, delete the CSIDrivers."""
        from kubernetes import client

        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        for driver in self.drivers:  # a killed plugin leaves its sockets: remove them all the same
            for path in sockets(self.kubelet, driver):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(OSError):
                sockets(self.kubelet, driver)[1].parent.rmdir()
        try:
            _until(lambda: not (set(self.drivers) & self.registered()), 30, "the kubelet to deregister the drivers")
        finally:
            storage = client.StorageV1Api(self._api())
            for name in self._made:
                with contextlib.suppress(client.ApiException):
                    storage.delete_csi_driver(name)
            self._made.clear()
            if self._lock is not None:
                self._lock.close()  # releases the flock
                self._lock = None

    def _take_lock(self) -> None:
        path = self.kubelet / "plugins" / ".cmb-stand-in-csi.lock"
        lock = open(path, "a")  # noqa: SIM115 - held until stop()

        def taken() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            eventually(taken, f"the stand-in CSI drivers' lock {path} (another test run holds it)", LOCK_WAIT)
        except AssertionError:
            lock.close()
            raise
        self._lock = lock

    def _api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)


def _exists(read: Any, name: str) -> bool:
    from kubernetes import client

    try:
        read(name)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _until(done: Callable[[], bool], seconds: float, what: str, owner: StandInCsi | None = None) -> None:
    def checked() -> bool:
        if owner is not None and owner.proc is not None:
            assert owner.proc.poll() is None, f"the stand-in CSI plugin exited; its log:\n{owner.log()[-2000:]}"
        return done()

    eventually(checked, lambda: f"{what}\n{owner.log()[-2000:] if owner else ''}", seconds, pause=0.2)


def _die_with_parent() -> None:
    """In the child: ended (SIGTERM, so it removes its sockets) if the test run dies."""
    import ctypes

    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
