"""Stand-in CSI node plugins for `s3.csi.aws.com` (Mountpoint for S3) and
`gcsfuse.csi.storage.gke.io` (Cloud Storage FUSE), registered with the real kubelet of the test
bed's cluster: a host process (`python -m tests.sim.csi_plugin`) serving, per driver, the CSI
Identity and Node services on `<kubelet>/plugins/<driver>/csi.sock` and the kubelet's plugin
registration service on `<kubelet>/plugins_registry/<driver>-reg.sock`, which the kubelet's plugin
watcher finds (https://kubernetes-csi.github.io/docs/ , "Kubelet plugin registration").

The checks are the real drivers' (tests/sim/csi_rules.py). The mount is not: it is a bind mount of
a per-bucket host folder (`<state>/buckets/<bucket>`) onto the pod's target path. A real FUSE mount
of the moto or GCS-emulator bucket is out of reach here (no mount-s3 or gcsfuse binary, no /dev/fuse
use by the test bed), so what a pod writes lands in that folder, not in the emulators. Mountpoint's
write rules are NOT imitated: the real mount cannot rewrite an existing file (without
allow-overwrite, and then only whole), append, or rename in general-purpose buckets
(https://github.com/awslabs/mountpoint-s3/blob/main/doc/SEMANTICS.md); the bind mount allows it all.
Nor is GCS FUSE's sidecar: the pod annotation is checked, no sidecar is injected or needed.

SIGTERM removes both sockets of each driver, so the kubelet deregisters the drivers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tests.sim.csi_proto import MESSAGES, SERVICES
from tests.sim.csi_rules import GCSFUSE, MOUNTPOINT, Mount, Refused, check_sidecar, plan

VERSION = "0.0.0-cmb-stand-in"
NODE_ID = "localhost"  # the kit's node name


def sockets(kubelet_dir: Path, driver: str) -> tuple[Path, Path]:
    """(registration socket, CSI socket) of `driver` under the kubelet's root folder."""
    return kubelet_dir / "plugins_registry" / f"{driver}-reg.sock", kubelet_dir / "plugins" / driver / "csi.sock"


class Driver:
    """One driver's RPCs: the plugin registration, Identity and Node services."""

    def __init__(self, name: str, kubelet_dir: Path, state: Path, kubeconfig: str) -> None:
        self.name, self.state, self.kubeconfig = name, state, kubeconfig
        self.registration, self.endpoint = sockets(kubelet_dir, name)
        self.registered = threading.Event()

    # -- pluginregistration.Registration --------------------------------------------------------
    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return MESSAGES["PluginInfo"](
            type="CSIPlugin", name=self.name, endpoint=str(self.endpoint), supported_versions=["1.0.0"]
        )

    def NotifyRegistrationStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        print(f"{self.name}: registered={request.plugin_registered} {request.error}", flush=True)
        if request.plugin_registered:
            self.registered.set()
        return MESSAGES["RegistrationStatusResponse"]()

    # -- csi.v1.Identity ---------------------------------------------------------------------------
    def GetPluginInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return MESSAGES["GetPluginInfoResponse"](name=self.name, vendor_version=VERSION)

    def GetPluginCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        return MESSAGES["GetPluginCapabilitiesResponse"]()  # no controller service: node-only drivers

    def Probe(self, request: Any, context: grpc.ServicerContext) -> Any:
        return MESSAGES["ProbeResponse"]()

    # -- csi.v1.Node -------------------------------------------------------------------------------
    def NodeGetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return MESSAGES["NodeGetInfoResponse"](node_id=NODE_ID)

    def NodeGetCapabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        return MESSAGES["NodeGetCapabilitiesResponse"]()  # no staging: publish mounts directly

    def NodePublishVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.volume_id or not request.target_path:  # REQUIRED fields (spec)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "volume_id and target_path are required")
        capability = request.volume_capability
        mode = MESSAGES["VolumeCapability"].AccessMode.Mode.Name(capability.access_mode.mode)
        try:
            mount = plan(
                self.name,
                dict(request.volume_context),
                list(capability.mount.mount_flags),
                mode,
                capability.HasField("block"),
                request.readonly,
            )
            if self.name == GCSFUSE:
                check_sidecar(self._pod_annotations(mount))
        except Refused as refused:
            print(f"{self.name}: refused {request.volume_id}: {refused.message}", flush=True)
            context.abort(getattr(grpc.StatusCode, refused.code), refused.message)
        target = Path(request.target_path)
        if not _is_mount(target):  # the kubelet republishes (requiresRepublish): already there is done
            bucket = self.state / "buckets" / mount.bucket
            bucket.mkdir(parents=True, exist_ok=True)
            os.chown(bucket, mount.uid, mount.gid)
            bucket.chmod(mount.dir_mode)
            target.mkdir(parents=True, exist_ok=True)
            try:
                _run("mount", "--bind", str(bucket), str(target))
                if mount.read_only:
                    _run("mount", "-o", "remount,bind,ro", str(target))
            except RuntimeError as exc:
                context.abort(grpc.StatusCode.INTERNAL, str(exc))
            print(f"{self.name}: published {request.volume_id} bucket {mount.bucket} at {target}", flush=True)
        return MESSAGES["NodePublishVolumeResponse"]()

    def NodeUnpublishVolume(self, request: Any, context: grpc.ServicerContext) -> Any:
        target = Path(request.target_path)
        while _is_mount(target):  # stacked mounts too: all of them go
            _run("umount", str(target))
        with contextlib.suppress(FileNotFoundError):
            target.rmdir()
        print(f"{self.name}: unpublished {request.volume_id}", flush=True)
        return MESSAGES["NodeUnpublishVolumeResponse"]()

    def _pod_annotations(self, mount: Mount) -> dict[str, str]:
        """The pod's annotations, read from the API server as the real driver reads the pod."""
        namespace, name = mount.pod
        if not name:
            raise Refused("FAILED_PRECONDITION", "pod name and namespace missing: the CSIDriver needs podInfoOnMount")
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=self.kubeconfig))
        return api.read_namespaced_pod(name, namespace).metadata.annotations or {}


def _is_mount(path: Path) -> bool:
    """From the mount table: os.path.ismount misses a bind mount within one file system."""
    wanted = str(path).rstrip("/")
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            point = line.split()[4].encode().decode("unicode_escape")  # octal escapes, e.g. \040
            if point == wanted:
                return True
    return False


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def _handlers(driver: Driver) -> list[grpc.GenericRpcHandler]:
    handlers = []
    for service, methods in SERVICES.items():
        table = {
            method: grpc.unary_unary_rpc_method_handler(
                getattr(driver, method),
                request_deserializer=MESSAGES[request].FromString,
                response_serializer=MESSAGES[response].SerializeToString,
            )
            for method, (request, response) in methods.items()
        }
        handlers.append(grpc.method_handlers_generic_handler(service, table))
    return handlers


def serve(kubelet_dir: Path, state: Path, kubeconfig: str, drivers: list[str]) -> None:
    """Serve every driver until SIGTERM; then remove the sockets (the kubelet deregisters them)."""
    servers, paths = [], []
    for name in drivers:
        driver = Driver(name, kubelet_dir, state, kubeconfig)
        driver.endpoint.parent.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers(_handlers(driver))
        # The CSI socket first: the kubelet dials it as soon as it sees the registration socket.
        for path in (driver.endpoint, driver.registration):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            server.add_insecure_port(f"unix://{path}")
            paths.append(path)
        server.start()
        servers.append(server)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"serving": drivers}), flush=True)
    stop.wait()
    for path in reversed(paths):  # each registration socket before its CSI socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for server in servers:
        server.stop(grace=2).wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubelet-dir", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--driver", action="append", choices=(MOUNTPOINT, GCSFUSE), required=True)
    args = parser.parse_args(argv)
    serve(args.kubelet_dir, args.state, args.kubeconfig, args.driver)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
