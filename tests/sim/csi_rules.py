"""What the two real bucket drivers accept in NodePublishVolume, and what they refuse, each rule
beside its documented source. Pure: a request's fields in, a `Mount` plan or a `Refused` out.

Mountpoint for Amazon S3 CSI driver (`s3.csi.aws.com`): static provisioning only, `bucketName`
required, `authenticationSource` `driver` (default) or `pod`, access modes ReadWriteMany and
ReadOnlyMany, `mountOptions` are Mountpoint's own command-line flags
(https://github.com/awslabs/mountpoint-s3-csi-driver/blob/main/docs/CONFIGURATION.md and
https://github.com/awslabs/mountpoint-s3/blob/main/doc/CONFIGURATION.md).

Cloud Storage FUSE CSI driver (`gcsfuse.csi.storage.gke.io`): `bucketName` required, `mountOptions`
a comma-separated list of gcsfuse flags in the volume attributes (inline ephemeral volumes), some
flags disallowed because the driver sets them itself, and the pod must carry the annotation
`gke-gcsfuse/volumes: "true"` so that the webhook injects the gcsfuse sidecar; without it the node
driver finds no sidecar and fails
(https://cloud.google.com/kubernetes-engine/docs/how-to/persistent-volumes/cloud-storage-fuse-csi-driver,
https://github.com/GoogleCloudPlatform/gcs-fuse-csi-driver/blob/main/docs/known-issues.md).

The refusal texts are the stand-in's, modelled on each driver's: the rules are documented, the
exact wording of every message is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MOUNTPOINT = "s3.csi.aws.com"
GCSFUSE = "gcsfuse.csi.storage.gke.io"
GCSFUSE_ANNOTATION = "gke-gcsfuse/volumes"
POD_NAME, POD_NAMESPACE = "csi.storage.k8s.io/pod.name", "csi.storage.k8s.io/pod.namespace"
TOKENS = "csi.storage.k8s.io/serviceAccount.tokens"  # from the CSIDriver's tokenRequests
EPHEMERAL = "csi.storage.k8s.io/ephemeral"

# Mountpoint's flags (its CONFIGURATION.md, `mount-s3 --help`); `--flag` or `flag` or `flag=value`
# or `flag value` in a PV's mountOptions. (name -> takes a value)
MOUNTPOINT_FLAGS = {
    "allow-delete": False,
    "allow-overwrite": False,
    "allow-other": False,
    "allow-root": False,
    "auto-unmount": False,
    "read-only": False,
    "force-path-style": False,
    "transfer-acceleration": False,
    "dual-stack": False,
    "incremental-upload": False,
    "debug": False,
    "debug-crt": False,
    "no-log": False,
    "log-metrics": False,
    "uid": True,
    "gid": True,
    "dir-mode": True,
    "file-mode": True,
    "region": True,
    "prefix": True,
    "endpoint-url": True,
    "storage-class": True,
    "cache": True,
    "max-cache-size": True,
    "metadata-ttl": True,
    "negative-metadata-ttl": True,
    "max-threads": True,
    "part-size": True,
    "read-part-size": True,
    "write-part-size": True,
    "sse": True,
    "sse-kms-key-id": True,
    "upload-checksums": True,
    "user-agent-prefix": True,
    "bucket-type": True,
}
# Access modes of a Mountpoint PV: "Supported options: ReadWriteMany / ReadOnlyMany" (CONFIGURATION.md)
MOUNTPOINT_ACCESS_MODES = {"MULTI_NODE_MULTI_WRITER", "MULTI_NODE_READER_ONLY"}
MOUNTPOINT_AUTH_SOURCES = ("driver", "pod")

# gcsfuse flags the CSI driver refuses because it sets them itself (GKE's Cloud Storage FUSE
# CSI driver page, "Mount options": the driver does not allow these flags).
GCSFUSE_DISALLOWED = {
    "app-name",
    "temp-dir",
    "foreground",
    "log-file",
    "log-format",
    "key-file",
    "token-url",
    "reuse-token-from-url",
}
# gcsfuse's flags (https://cloud.google.com/storage/docs/cloud-storage-fuse/cli-options); the
# `section:key` form is gcsfuse's config-file options, which the driver also passes through.
GCSFUSE_FLAGS = {
    "implicit-dirs",
    "only-dir",
    "uid",
    "gid",
    "file-mode",
    "dir-mode",
    "rename-dir-limit",
    "max-conns-per-host",
    "max-idle-conns-per-host",
    "stat-cache-ttl",
    "type-cache-ttl",
    "stat-cache-capacity",
    "sequential-read-size-mb",
    "limit-ops-per-sec",
    "limit-bytes-per-sec",
    "billing-project",
    "client-protocol",
    "max-retry-sleep",
    "kernel-list-cache-ttl-secs",
    "debug_fuse",
    "debug_gcs",
    "debug_fuse_errors",
    "debug_mutex",
    "o",
    "read_ahead_kb",
}
GCSFUSE_BOOLEAN_ATTRIBUTES = ("skipCSIBucketAccessCheck", "fileCacheForRangeRead", "disableMetrics")


class Refused(Exception):
    """The driver refuses the request: a gRPC status name and the driver's message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Mount:
    """What to bind into the target path: the bucket, its owner and mode, read-only or not."""

    bucket: str
    uid: int
    gid: int
    dir_mode: int
    read_only: bool
    pod: tuple[str, str]  # (namespace, name) from podInfoOnMount, empty when not given


def plan(
    driver: str,
    context: Mapping[str, str],
    flags: Sequence[str],
    access_mode: str,
    block: bool,
    readonly: bool,
) -> Mount:
    """The mount for one NodePublishVolume request, or `Refused` as the real driver would."""
    if block:  # both drivers serve file systems only
        raise Refused("INVALID_ARGUMENT", f"{driver}: block volumes are not supported")
    bucket = context.get("bucketName", "")
    if not bucket:
        raise Refused("INVALID_ARGUMENT", "bucketName is missing from the volume attributes")
    pod = (context.get(POD_NAMESPACE, ""), context.get(POD_NAME, ""))
    if driver == MOUNTPOINT:
        return _mountpoint(bucket, context, flags, access_mode, readonly, pod)
    if driver == GCSFUSE:
        return _gcsfuse(bucket, context, readonly, pod)
    raise Refused("UNIMPLEMENTED", f"no stand-in for driver {driver}")


def _mountpoint(
    bucket: str,
    context: Mapping[str, str],
    flags: Sequence[str],
    access_mode: str,
    readonly: bool,
    pod: tuple[str, str],
) -> Mount:
    if context.get(EPHEMERAL) == "true":  # the add-on's CSIDriver lists Persistent only
        raise Refused("INVALID_ARGUMENT", "Mountpoint for S3 supports static provisioning (PersistentVolume) only")
    if access_mode not in MOUNTPOINT_ACCESS_MODES:
        raise Refused(
            "INVALID_ARGUMENT",
            f"Volume capability not supported: access mode {access_mode} (use ReadWriteMany or ReadOnlyMany)",
        )
    source = context.get("authenticationSource", "") or "driver"
    if source not in MOUNTPOINT_AUTH_SOURCES:
        raise Refused(
            "INVALID_ARGUMENT",
            f"unsupported authenticationSource {source!r}: use one of {', '.join(MOUNTPOINT_AUTH_SOURCES)}",
        )
    if source == "pod" and not context.get(TOKENS):
        # Pod-level credentials need the pod's service account token, which the kubelet passes only
        # when the CSIDriver asks for it (tokenRequests audience sts.amazonaws.com; CONFIGURATION.md,
        # "Pod-level credentials").
        raise Refused("INVALID_ARGUMENT", "authenticationSource pod: the pod's service account token is missing")
    options = _mountpoint_options(flags)
    return Mount(
        bucket,
        _number(options, "uid", 0, MOUNTPOINT),
        _number(options, "gid", 0, MOUNTPOINT),
        _number(options, "dir-mode", 0o755, MOUNTPOINT, base=8),
        readonly or "read-only" in options,
        pod,
    )


def _mountpoint_options(flags: Sequence[str]) -> dict[str, str]:
    """Mountpoint's flags as the driver reads a PV's mountOptions; unknown flags fail as mount-s3 does."""
    options: dict[str, str] = {}
    for raw in flags:
        for item in raw.split(","):
            text = item.strip().removeprefix("--")
            if not text:
                continue
            name, _, value = text.replace("=", " ", 1).partition(" ")
            value = value.strip()
            if name not in MOUNTPOINT_FLAGS:
                raise Refused("INTERNAL", f"Mountpoint failed to start: error: unexpected argument '--{name}' found")
            if MOUNTPOINT_FLAGS[name] and not value:
                raise Refused(
                    "INTERNAL",
                    f"Mountpoint failed to start: error: a value is required for '--{name} <{name.upper()}>'",
                )
            if not MOUNTPOINT_FLAGS[name] and value:
                raise Refused(
                    "INTERNAL", f"Mountpoint failed to start: error: unexpected value '{value}' for '--{name}' found"
                )
            options[name] = value
    return options


def _gcsfuse(bucket: str, context: Mapping[str, str], readonly: bool, pod: tuple[str, str]) -> Mount:
    options: dict[str, str] = {}
    for item in (context.get("mountOptions") or "").split(","):
        text = item.strip()
        if not text:
            continue
        name, _, value = text.partition("=")
        name = name.strip()
        if name in GCSFUSE_DISALLOWED:
            raise Refused(
                "INVALID_ARGUMENT", f"mount option {name!r} is disallowed by the Cloud Storage FUSE CSI driver"
            )
        if name not in GCSFUSE_FLAGS and ":" not in name:
            raise Refused("INVALID_ARGUMENT", f"gcsfuse: unknown flag: --{name}")
        options[name] = value.strip()
    for key in GCSFUSE_BOOLEAN_ATTRIBUTES:
        if key in context and context[key].lower() not in ("true", "false"):
            raise Refused("INVALID_ARGUMENT", f"volume attribute {key} must be true or false, got {context[key]!r}")
    return Mount(
        bucket,
        _number(options, "uid", 0, GCSFUSE),
        _number(options, "gid", 0, GCSFUSE),
        _number(options, "dir-mode", 0o755, GCSFUSE, base=8),
        readonly,
        pod,
    )


def check_sidecar(annotations: Mapping[str, str]) -> None:
    """GCS FUSE: no sidecar without the pod annotation (the webhook injects it only then)."""
    if annotations.get(GCSFUSE_ANNOTATION) != "true":
        raise Refused(
            "FAILED_PRECONDITION",
            f"failed to find the sidecar container in Pod spec: "
            f'add the annotation {GCSFUSE_ANNOTATION}: "true" to the pod',
        )


def _number(options: Mapping[str, str], name: str, default: int, driver: str, base: int = 10) -> int:
    if name not in options or options[name] == "":
        return default
    try:
        return int(options[name], base)
    except ValueError:
        raise Refused("INVALID_ARGUMENT", f"{driver}: mount option {name}={options[name]!r} is not a number") from None
