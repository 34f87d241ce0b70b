"""The judgement of a rollout: which states of a pod or Deployment will not heal by themselves.

Each cause is one small function that returns a `Problem` or None; the tables below try them in
order and the first that matches is the verdict. A pod is judged by:

1. `container_cause`: the first container (init containers first) with one of CONTAINER_CAUSES:
   1. `stuck_waiting`: a waiting state that does not heal (CrashLoopBackOff, ImagePullBackOff, ...)
   2. `crashed_again`: it failed again after a restart (what a kubelet shows before CrashLoopBackOff)
   3. `failed_for_good`: it failed in a pod that is never restarted
2. `restarting_back_off`: a kubelet BackOff event "restarting failed container"
3. `failed_pod`: a pod that is never restarted ended Failed
4. `failed_mount`: a pod not yet running cannot mount a volume (a bucket volume at once, others after the grace)
5. `unschedulable`: a pod not yet running fits no node and no autoscaler scales up (after the grace)

A Deployment is judged by DEPLOYMENT_CAUSES:

1. `progress_deadline_exceeded`: the Deployment gave up progressing
2. `replica_failure`: its pods cannot be created (after the grace)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tools.smoke import objects

# Container states that do not heal by themselves, with what to look at.
FATAL_WAITING = {
    "CrashLoopBackOff": "the container keeps crashing: its last log lines say why",
    "ImagePullBackOff": "the image cannot be pulled: check that build_push pushed it and that the nodes may pull it",
    "ErrImagePull": "the image cannot be pulled: check that build_push pushed it and that the nodes may pull it",
    "ErrImageNeverPull": "the image is not on the node and the pull policy is Never",
    "InvalidImageName": "the image reference is malformed: check the chart's image values",
    "CreateContainerConfigError": "the container refers to a missing Secret, ConfigMap or key: run make_secrets",
    "CreateContainerError": "the container runtime could not create the container",
    "RunContainerError": "the container runtime could not start the container",
}
# A container that crashed, was restarted, and crashed again (what a real kubelet shows at once;
# the CrashLoopBackOff waiting state comes 10-40 s later and lasts a fraction of a second).
CRASH_HINTS = {
    "OOMKilled": "the container was killed for using more memory than its limit: raise the limit or find the leak",
    "Error": FATAL_WAITING["CrashLoopBackOff"],
}
NEVER_STARTED = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"}
NEVER_STARTED |= {"CreateContainerConfigError", "CreateContainerError"}
_VOLUME_QUOTED = re.compile(r'volume "([^"]+)"')
_VOLUME_LIST = re.compile(r"unmounted volumes=\[([^\]]*)\]")


@dataclass
class Problem:
    """What is wrong with one pod (or Deployment), with the evidence to show."""

    workload: str
    reason: str
    message: str
    pod: str = ""
    container: str = ""
    hint: str = ""
    detail: str = ""
    grace: bool = False  # fatal only when it lasts longer than the grace
    logs: bool = True  # the container ran, so its logs may say why
    previous: bool = False  # the logs that matter are the previous instance's

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.workload, self.pod, self.reason)

    def headline(self) -> str:
        where = f"pod {self.pod}" if self.pod else self.workload
        if self.container:
            where += f", container {self.container}"
        text = f"{where}: {self.reason}"
        if self.message:
            text += f": {self.message}"
        if self.detail:
            text += f" ({self.detail})"
        return text


Pod = dict[str, Any]
Events = Sequence[dict[str, Any]]
PodCause = Callable[[str, Pod, Events], Problem | None]  # (workload, pod, its events)
ContainerCause = Callable[[str, Pod, dict[str, Any]], Problem | None]  # (workload, pod, container status)
DeploymentCause = Callable[[dict[str, Any]], Problem | None]


# -- pods: the causes of one container ------------------------------------------------------------
def stuck_waiting(workload: str, pod: Pod, container: dict[str, Any]) -> Problem | None:
    """A waiting state that does not heal by itself (FATAL_WAITING)."""
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason") or ""
    if reason not in FATAL_WAITING:
        return None
    return Problem(
        workload,
        reason,
        waiting.get("message") or "",
        pod=objects.name(pod),
        container=container.get("name") or "",
        hint=FATAL_WAITING[reason],
        detail=_restarts(container),
        logs=reason not in NEVER_STARTED,
        previous=(container.get("restartCount") or 0) > 0,
    )


def crashed_again(workload: str, pod: Pod, container: dict[str, Any]) -> Problem | None:
    """A container that failed again after a restart, in a pod that restarts it."""
    crashed = _crashed_again(container)
    if not crashed or _restart_never(pod):
        return None
    reason, code = crashed
    return Problem(
        workload,
        reason,
        f"exited with code {code} again after {_restarts(container)}",
        pod=objects.name(pod),
        container=container.get("name") or "",
        hint=CRASH_HINTS.get(reason, FATAL_WAITING["CrashLoopBackOff"]),
        previous="terminated" not in (container.get("state") or {}),
    )


def failed_for_good(workload: str, pod: Pod, container: dict[str, Any]) -> Problem | None:
    """A container that ended with a non-zero code in a pod that is never restarted (the storage check)."""
    terminated = (container.get("state") or {}).get("terminated") or {}
    if not _restart_never(pod) or not terminated or terminated.get("exitCode", 0) == 0:
        return None
    return Problem(
        workload,
        terminated.get("reason") or "Error",
        f"exited with code {terminated.get('exitCode')}" + objects.colon(terminated.get("message")),
        pod=objects.name(pod),
        container=container.get("name") or "",
        hint="the container failed",
    )


CONTAINER_CAUSES: tuple[ContainerCause, ...] = (stuck_waiting, crashed_again, failed_for_good)


# -- pods: the causes of the pod ---------------------------------------------------------------------
def container_cause(workload: str, pod: Pod, events: Events) -> Problem | None:
    """The first container (init containers first) for which one of CONTAINER_CAUSES holds, in order."""
    for container in _statuses(pod):
        for cause in CONTAINER_CAUSES:
            problem = cause(workload, pod, container)
            if problem:
                return problem
    return None


def restarting_back_off(workload: str, pod: Pod, events: Events) -> Problem | None:
    """The kubelet's latest "Back-off restarting failed container" event, in a pod that restarts it."""
    back_off = next(
        (e for e in reversed(events) if e.get("reason") == "BackOff" and "restarting" in (e.get("message") or "")), None
    )
    if not back_off or _restart_never(pod):
        return None
    container = _container_named(_statuses(pod), back_off.get("message") or "")
    state = container.get("state") or {}
    ended = state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
    return Problem(
        workload,
        "OOMKilled" if ended.get("reason") == "OOMKilled" else "CrashLoopBackOff",
        back_off.get("message") or "",
        pod=objects.name(pod),
        container=container.get("name") or "",
        hint=CRASH_HINTS.get(ended.get("reason") or "", FATAL_WAITING["CrashLoopBackOff"]),
        detail=_restarts(container),
        previous=(container.get("restartCount") or 0) > 0 and "terminated" not in state,
    )


def failed_pod(workload: str, pod: Pod, events: Events) -> Problem | None:
    """A pod that is never restarted and ended Failed (e.g. its activeDeadlineSeconds passed)."""
    status = pod.get("status") or {}
    if not _restart_never(pod) or status.get("phase") != "Failed":
        return None
    return Problem(workload, status.get("reason") or "Failed", status.get("message") or "", pod=objects.name(pod))


def failed_mount(workload: str, pod: Pod, events: Events) -> Problem | None:
    """The latest FailedMount/FailedAttachVolume of a pod not yet running: fatal for a bucket volume
    (CSI, claim or ephemeral), grace-limited for any other volume (a Secret or ConfigMap may come)."""
    if not _not_yet_running(pod):
        return None
    bucket_volumes = {
        v.get("name")
        for v in (pod.get("spec") or {}).get("volumes") or []
        if v.get("csi") or v.get("persistentVolumeClaim") or v.get("ephemeral")
    }
    event = next((e for e in reversed(events) if e.get("reason") in ("FailedMount", "FailedAttachVolume")), None)
    if not event:
        return None
    message = event.get("message") or ""
    named = set(_VOLUME_QUOTED.findall(message))
    for group in _VOLUME_LIST.findall(message):
        named |= {v.strip() for v in re.split(r"[ ,]+", group) if v.strip()}
    bucket = sorted(named & bucket_volumes)
    return Problem(
        workload,
        event["reason"],
        message,
        pod=objects.name(pod),
        hint=(
            f"the bucket volume {bucket[0]!r} cannot be mounted: check the bucket, the CSI driver "
            "and the service account's cloud identity (IAM)"
            if bucket
            else "a volume cannot be mounted"
        ),
        grace=not bucket,
        logs=False,
    )


def unschedulable(workload: str, pod: Pod, events: Events) -> Problem | None:
    """A pod not yet running that no node can take, while no cluster autoscaler scales up for it."""
    if not _not_yet_running(pod) or any(e.get("reason") == "TriggeredScaleUp" for e in events):
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return Problem(
                workload,
                "Unschedulable",
                condition.get("message") or "",
                pod=objects.name(pod),
                hint="no node can take the pod: check its resource requests and the node pool size",
                grace=True,
                logs=False,
            )
    return None


POD_CAUSES: tuple[PodCause, ...] = (container_cause, restarting_back_off, failed_pod, failed_mount, unschedulable)


def pod_problem(workload: str, pod: Pod, events: Events) -> Problem | None:
    """The first of POD_CAUSES that holds for `pod` (a state that will not heal, or only grace-limited), else None."""
    for cause in POD_CAUSES:
        problem = cause(workload, pod, events)
        if problem:
            return problem
    return None


# -- Deployments ------------------------------------------------------------------------------------------
def rollout_state(deployment: dict[str, Any]) -> tuple[bool, str, str | None]:
    """(done, what it waits for, why it failed) for one Deployment, as `kubectl rollout status` decides."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, "", condition.get("message") or "progress deadline exceeded"
    generation, observed = meta.get("generation") or 0, status.get("observedGeneration") or 0
    if generation > observed:
        return False, f"the controller has not seen generation {generation} yet (observed {observed})", None
    wanted = spec.get("replicas", 1)
    updated, replicas = status.get("updatedReplicas") or 0, status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated to the new revision", None
    if replicas > updated:
        return False, f"{replicas - updated} old replica(s) still terminating", None
    if available < updated:
        return False, f"{available} of {updated} updated replicas available", None
    return True, f"{available}/{wanted} ready", None


def progress_deadline_exceeded(deployment: dict[str, Any]) -> Problem | None:
    """The Deployment's Progressing condition says ProgressDeadlineExceeded: it gave up."""
    _, _, failed = rollout_state(deployment)
    if not failed:
        return None
    name = objects.name(deployment)
    return Problem(name, "ProgressDeadlineExceeded", failed, hint="the Deployment gave up progressing", logs=False)


def replica_failure(deployment: dict[str, Any]) -> Problem | None:
    """A ReplicaFailure condition: its ReplicaSet cannot create pods (grace-limited)."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return Problem(
                objects.name(deployment),
                condition.get("reason") or "ReplicaFailure",
                condition.get("message") or "",
                hint="pods cannot be created (quota, admission policy, missing service account?)",
                grace=True,
                logs=False,
            )
    return None


DEPLOYMENT_CAUSES: tuple[DeploymentCause, ...] = (progress_deadline_exceeded, replica_failure)


def deployment_problem(deployment: dict[str, Any]) -> Problem | None:
    """The first of DEPLOYMENT_CAUSES that holds for `deployment`, else None."""
    for cause in DEPLOYMENT_CAUSES:
        problem = cause(deployment)
        if problem:
            return problem
    return None


# -- small helpers --------------------------------------------------------------------------------------------
def _statuses(pod: Pod) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _restart_never(pod: Pod) -> bool:
    return (pod.get("spec") or {}).get("restartPolicy") == "Never"


def _not_yet_running(pod: Pod) -> bool:
    """A running (or finished) pod has been scheduled and has mounted its volumes: old events are history."""
    return (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded")


def _restarts(container: dict[str, Any]) -> str:
    parts = []
    restarts = container.get("restartCount") or 0
    if restarts:
        parts.append(f"{restarts} restart{'s' if restarts != 1 else ''}")
    last = (container.get("lastState") or {}).get("terminated") or {}
    if last:
        parts.append(f"last exit code {last.get('exitCode')} {last.get('reason') or ''}".strip())
    return ", ".join(parts)


def _crashed_again(container: dict[str, Any]) -> tuple[str, Any] | None:
    """(reason, exit code) when the container failed again after at least one restart, else None.

    Either its current instance has ended with a non-zero code after a restart, or it has been
    restarted twice and its last instance failed. One crash that the container survives is not
    a verdict.
    """
    restarts = container.get("restartCount") or 0
    state = container.get("state") or {}
    terminated = state.get("terminated") or {}
    if restarts >= 1 and terminated and terminated.get("exitCode", 0) != 0:
        return terminated.get("reason") or "Error", terminated.get("exitCode")
    last = (container.get("lastState") or {}).get("terminated") or {}
    if restarts >= 2 and last and last.get("exitCode", 0) != 0:
        return last.get("reason") or "Error", last.get("exitCode")
    return None


def _container_named(statuses: Sequence[dict[str, Any]], message: str) -> dict[str, Any]:
    """The container a kubelet event names ("... failed container backend in pod ..."), else the first."""
    match = re.search(r"container (\S+) in pod", message)
    for container in statuses:
        if match and container.get("name") == match.group(1):
            return container
    return statuses[0] if statuses else {}
