"""The user-storage check: a throwaway pod from the chart's user-environment settings writes
and reads a file on the bucket mount, then everything it made is deleted."""

from __future__ import annotations

import argparse
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from tools.cloud import USER_SERVICE_ACCOUNT, check_bucket_name, cloud_for
from tools.cloud.base import STORAGE_PREFIX
from tools.errors import ToolError
from tools.kube_ops import RELEASE_ANNOTATION
from tools.report import REPORTER
from tools.settings import Settings
from tools.smoke import objects
from tools.smoke.cache import Cluster
from tools.smoke.evidence import container_logs, pod_summary, report_problem
from tools.smoke.objects import COMPONENT_LABEL
from tools.smoke.results import Check, Outcome
from tools.smoke.verdicts import Problem, pod_problem
from tools.smoke.watch import watch_until

DEFAULT_STORAGE_DEADLINE = 180.0  # seconds for the storage pod, from creation to its end
STORAGE_MOUNT = "/mnt/storage-check"
OK_LINE = "storage-check ok"  # STORAGE_SCRIPT's last line, on success only
LOG_POLL = 0.2  # seconds between reads of the running check's log


# -- user storage ---------------------------------------------------------------------------------------
def user_environment(cluster: Cluster, release: str) -> tuple[dict[str, str], str]:
    """The chart's user-environment settings (its ConfigMap) and the user pods' service account."""
    from tools.kube_client import ApiError, path

    try:
        listing = cluster.api.get(path("configmaps", cluster.namespace))
    except ApiError as exc:
        raise ToolError(
            f"cannot list ConfigMaps in {cluster.namespace}: {exc.status} {exc.message or exc.reason}"
        ) from None
    maps = [
        m
        for m in listing.get("items") or []
        if objects.annotations(m).get(RELEASE_ANNOTATION) == release and objects.name(m).endswith("-user-environment")
    ]
    if not maps:
        raise ToolError(
            f"release {release} has no ConfigMap *-user-environment in {cluster.namespace}: "
            "the chart's user-environment settings are missing (is the chart up to date?)"
        )
    service_account = ""
    for deployment in cluster.release_objects("deployments", release):
        for container in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
            for env in container.get("env") or []:
                if env.get("name") == "USER_POD_SA_NAME" and env.get("value"):
                    service_account = env["value"]
    return maps[0].get("data") or {}, service_account or USER_SERVICE_ACCOUNT


# Write a new file, save it again (an overwrite: Mountpoint refuses it without allow-overwrite),
# rename it where the mount can (RENAME=1: GCS FUSE, a local volume; Mountpoint for S3 cannot
# rename in general-purpose buckets, so trying would fail every healthy EKS release), read it
# back, delete it; each timed.
STORAGE_SCRIPT = r"""set -eu
now() { t=$(date +%s%N); case "$t" in *N) echo "$(date +%s)000000000" ;; *) echo "$t" ;; esac; }
f="$MOUNT/$PREFIX$TOKEN"
t0=$(now); printf '%s\n' "$TOKEN" > "$f"; t1=$(now)
printf '%s\n' "$TOKEN-saved-again" > "$f"; t2=$(now)
renamed=""
if [ "$RENAME" = 1 ]; then
  mv "$f" "$f-renamed"; f="$f-renamed"; renamed=" rename_ms=$(( ($(now) - t2) / 1000000 ))"
fi
t25=$(now); got=$(cat "$f"); t3=$(now)
rm -f "$f"; t4=$(now)
if [ "$got" != "$TOKEN-saved-again" ]; then
  echo "storage-check: read back something else than was written" >&2; exit 3
fi
echo "storage-check ok write_ms=$(( (t1 - t0) / 1000000 )) overwrite_ms=$(( (t2 - t1) / 1000000 ))$renamed" \
  "read_ms=$(( (t3 - t25) / 1000000 )) delete_ms=$(( (t4 - t3) / 1000000 ))"
"""


def storage_check_manifests(
    config: dict[str, str],
    service_account: str,
    namespace: str,
    release: str,
    bucket: str,
    token: str,
    deadline: int,
    rename: bool = True,
) -> list[dict[str, Any]]:
    """The throwaway pod (last) and what it needs first, built as the pod manager builds user pods."""
    name = f"{release}-storage-check-{token}"[:63]
    mode = config.get("USER_POD_VOLUME_MODE", "none")
    driver = config.get("USER_POD_CSI_DRIVER", "")
    attributes = objects.json_setting(config.get("USER_POD_VOLUME_ATTRIBUTES"), {}, "USER_POD_VOLUME_ATTRIBUTES")
    made: list[dict[str, Any]] = []
    if mode == "csi-inline":
        csi = {"driver": driver, "volumeAttributes": {"bucketName": bucket, **attributes}}
        volume = {"name": "user-data", "csi": csi}
    elif mode == "csi-static-pv":
        pv_name = f"{namespace}-{name}"[:253]
        made.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "labels": _storage_labels(release)},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "claimRef": {"namespace": namespace, "name": name},
                    "mountOptions": objects.json_setting(
                        config.get("USER_POD_MOUNT_OPTIONS"), [], "USER_POD_MOUNT_OPTIONS"
                    ),
                    "csi": {
                        "driver": driver,
                        "volumeHandle": pv_name,
                        "volumeAttributes": {"bucketName": bucket, **attributes},
                    },
                },
            }
        )
        made.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": namespace, "labels": _storage_labels(release)},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv_name,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
        volume = {"name": "user-data", "persistentVolumeClaim": {"claimName": name}}
    elif mode == "none":
        volume = {"name": "user-data", "emptyDir": {"sizeLimit": "16Mi"}}
    else:
        raise ToolError(f"USER_POD_VOLUME_MODE {mode!r} in the chart's user-environment ConfigMap is unknown")
    image = config.get("USER_POD_IMAGE") or ""
    if not image:
        raise ToolError("USER_POD_IMAGE is empty in the chart's user-environment ConfigMap")
    annotations = objects.json_setting(config.get("USER_POD_ANNOTATIONS"), {}, "USER_POD_ANNOTATIONS")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _storage_labels(release),
            "annotations": annotations,
        },
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": max(30, deadline),
            "terminationGracePeriodSeconds": 5,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "check",
                    "image": image,
                    "command": ["sh", "-c", STORAGE_SCRIPT],
                    "env": [
                        {"name": "TOKEN", "value": token},
                        {"name": "MOUNT", "value": STORAGE_MOUNT},
                        {"name": "PREFIX", "value": STORAGE_PREFIX},
                        {"name": "RENAME", "value": "1" if rename else "0"},
                    ],
                    "volumeMounts": [{"name": "user-data", "mountPath": STORAGE_MOUNT}],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True,
                    },
                }
            ],
            "volumes": [volume],
        },
    }
    made.append(pod)
    return made


def _storage_labels(release: str) -> dict[str, str]:
    # Not component=user-pod: the backend's pod manager must not count or reap this pod.
    return {
        "app.kubernetes.io/part-of": "cmbcluster",
        "app.kubernetes.io/instance": release,
        COMPONENT_LABEL: "storage-check",
    }


def check_storage(cluster: Cluster, settings: Settings, args: argparse.Namespace) -> Check:
    """Run the throwaway pod; report each phase's time; always clean up."""
    from tools.kube_client import ApiError

    start = time.monotonic()
    config, service_account = user_environment(cluster, settings.release)
    cloud = cloud_for(settings)
    # A user bucket (the user identity may reach it), never the database's: it is made once here
    # with the deploy credentials and emptied of what the check wrote afterwards.
    bucket = args.storage_bucket or cloud.smoke_bucket
    if bucket and not args.storage_bucket:
        problem = check_bucket_name(bucket)
        if problem:
            raise ToolError(f"{problem}: shorten CLUSTER_NAME or give --storage-bucket")
        REPORTER.info(f"storage check bucket: {cloud.ensure_smoke_bucket()}")
    token = secrets.token_hex(4)
    manifests = storage_check_manifests(
        config,
        service_account,
        cluster.namespace,
        settings.release,
        bucket,
        token,
        int(args.storage_deadline),
        rename=cloud.renames_files,
    )
    pod = manifests[-1]
    name = objects.name(pod)
    phases: list[str] = []
    created: list[dict[str, Any]] = []
    shown = bucket or "none (this cloud mounts no bucket)"
    REPORTER.info(f"storage check: pod {name} as {service_account}, volume {_volume_kind(pod)}, bucket {shown}")
    outcome: Outcome | None = None
    try:
        for obj in manifests:
            _create(cluster, obj)
            created.append(obj)
        t_created = time.monotonic()
        phases.append(f"create {t_created - start:.1f}s")
        marks: dict[str, float] = {}

        def judge() -> tuple[list[Problem], dict[str, str], dict[str, str]]:
            current = cluster.objects["pods"].get(name)
            if current is None:
                return [Problem(name, "Deleted", "the pod disappeared", pod=name, logs=False)], {}, {}
            status = current.get("status") or {}
            states = [c.get("state") or {} for c in status.get("containerStatuses") or []]
            if any("running" in s or "terminated" in s for s in states) or status.get("phase") in ("Running",):
                marks.setdefault("started", time.monotonic())
            if status.get("phase") == "Succeeded":
                marks.setdefault("started", time.monotonic())
                return [], {}, {name: "Succeeded"}
            problem = pod_problem(name, current, cluster.events_for("Pod", name))
            if problem is None and "started" in marks and _reported_ok(cluster, name, report):
                return [], {}, {name: "reported ok"}
            return ([problem] if problem else []), {name: pod_summary(current)}, {}

        # the script's last line is its verdict: the kubelet notices the exit only at its next relist (PLEG, each
        # second), the pod's phase follows later still, and no watch event says the line was written: poll its log
        report: list[str] = []
        outcome = watch_until(
            cluster, args.storage_deadline, args.grace, judge, poll=lambda: LOG_POLL if "started" in marks else None
        )
        t_end = time.monotonic()
        started = marks.get("started", t_end)
        phases.append(f"schedule+mount+start {started - t_created:.1f}s")
        phases.append(f"run {t_end - started:.1f}s" + (" (its ok line)" if report else ""))
        if outcome.ok:
            logs, source = report, ""
            if not report:
                logs, source = container_logs(cluster.api, cluster.namespace, name, "check", False)
            phases.append(in_pod_timings(logs) or f"in-pod timings unavailable ({source})")
        elif outcome.problem:
            report_problem("storage check failed", outcome.problem, cluster)
        else:
            REPORTER.error(f"storage check: pod {name} {outcome.summary}: {outcome.waiting.get(name, '')}")
    except ApiError as exc:
        phases.append(f"failed: {exc.status} {exc.reason}{objects.colon(exc.message)}")
    finally:
        t_delete = time.monotonic()
        gone = _delete_all(cluster, created)
        if created and created[-1] is pod:
            phases.append(f"delete {time.monotonic() - t_delete:.1f}s" + ("" if gone else " (still terminating)"))
        if bucket:
            try:
                cloud.empty_storage_check(bucket, STORAGE_PREFIX)
            except ToolError as exc:
                REPORTER.warning(f"storage check: {exc}")
    took = time.monotonic() - start
    if outcome is None:
        return Check("user storage", "failed", took, "; ".join(phases))
    if outcome.ok:
        return Check("user storage", "ok", took, f"bucket {shown}: " + ", ".join(phases))
    why = outcome.problem.headline() if outcome.problem else f"{outcome.summary}: {outcome.waiting.get(name, '')}"
    return Check("user storage", "failed", took, f"{why}; " + ", ".join(phases), reported=True)


def _reported_ok(cluster: Cluster, pod: str, report: list[str]) -> bool:
    """Whether the check container has written its `storage-check ok` line (kept in `report`). Written last, under
    `set -eu`, it means every file operation succeeded; a failure ends the script before it, and the pod's phase
    and events tell the rest."""
    logs, _ = container_logs(cluster.api, cluster.namespace, pod, "check", False)
    if any(line.startswith(OK_LINE) for line in logs):
        report[:] = logs
        return True
    return False


def in_pod_timings(logs: Sequence[str]) -> str:
    """'in the pod: write file 12ms, read file 3ms, delete file 5ms' from STORAGE_SCRIPT's output."""
    line = next((line for line in logs if line.startswith(OK_LINE)), "")
    found = re.findall(r"(\w+)_ms=(\d+)", line)
    return "in the pod: " + ", ".join(f"{what} file {ms}ms" for what, ms in found) if found else ""


def _volume_kind(pod: dict[str, Any]) -> str:
    volume = pod["spec"]["volumes"][0]
    if "csi" in volume:
        return f"inline CSI {volume['csi']['driver']}"
    if "persistentVolumeClaim" in volume:
        return f"claim {volume['persistentVolumeClaim']['claimName']}"
    return "emptyDir (no bucket on this cloud)"


def _object_path(obj: dict[str, Any], namespace: str, name: str | None = None) -> str:
    from tools.kube_client import path

    resource = {"PersistentVolume": "persistentvolumes", "PersistentVolumeClaim": "persistentvolumeclaims"}.get(
        obj["kind"], "pods"
    )
    return path(resource, None if resource == "persistentvolumes" else namespace, name)


def _create(cluster: Cluster, obj: dict[str, Any]) -> None:
    created = cluster.api.create(_object_path(obj, cluster.namespace), obj)
    if obj["kind"] == "Pod":  # known at once, before its watch event arrives
        cluster.objects["pods"][objects.name(obj)] = created or obj


def _delete_all(cluster: Cluster, created: list[dict[str, Any]]) -> bool:
    """Delete what the storage check created, the pod first; True when the pod is gone."""
    from tools.kube_client import ApiError

    gone = True
    for obj in reversed(created):  # the pod first, its volume last
        name = objects.name(obj)
        try:
            cluster.api.delete(_object_path(obj, cluster.namespace, name))
            if obj["kind"] == "Pod":
                gone = _wait_gone(cluster, name, 30.0)
        except ApiError as exc:
            if exc.status != 404:
                REPORTER.warning(f"could not delete {obj['kind']} {name}: {exc.status} {exc.reason}: delete it by hand")
    return gone


def _wait_gone(cluster: Cluster, name: str, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while name in cluster.objects["pods"]:
        if time.monotonic() >= end:
            return False
        cluster.wait(end - time.monotonic())
    return True
