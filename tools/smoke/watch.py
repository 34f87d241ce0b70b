"""The release's objects kept current by Kubernetes watches, and the judgement of a rollout:
which pod states will not heal by themselves, with the evidence (events, logs) to show."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from tools.errors import ToolError
from tools.kube import RELEASE_ANNOTATION
from tools.report import REPORTER
from tools.smoke import objects

DEFAULT_DEADLINE = 300.0  # seconds for a rollout (and for the rollback's)
DEFAULT_GRACE = 20.0  # seconds a pod may stay Unschedulable (or fail to be created)
DEFAULT_ENDPOINT_DEADLINE = 180.0  # Ingress address and HTTPS checks together
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_STORAGE_DEADLINE = 180.0
API_TIMEOUT = 10.0  # one Kubernetes API call
WATCH_SECONDS = 60  # a watch is reopened (after a fresh list) at least this often
LOG_LINES = 20
EVENT_LINES = 5
COMPONENT_LABEL = "app.kubernetes.io/component"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
STORAGE_MOUNT = "/mnt/storage-check"

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
# An image without a variant for the node's CPU: containerd's pull refuses it ("no match for platform in
# manifest", https://github.com/containerd/containerd/pull/2410) or the kernel refuses its program
# ("exec format error", https://github.com/k3s-io/k3s/issues/2912); seen in the pod's status message,
# its events or the container's log.
WRONG_CPU = re.compile(r"exec format error|no match for platform in manifest")
WRONG_CPU_HINT = (
    "the image was built for another CPU architecture: build it for the nodes' (IMAGE_PLATFORMS, e.g. "
    "linux/amd64 or linux/amd64,linux/arm64; make build) and deploy again"
)
NEVER_STARTED = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"}
NEVER_STARTED |= {"CreateContainerConfigError", "CreateContainerError"}
_VOLUME_QUOTED = re.compile(r'volume "([^"]+)"')
_VOLUME_LIST = re.compile(r"unmounted volumes=\[([^\]]*)\]")


# -- results ---------------------------------------------------------------------------------------
@dataclass
class Check:
    """One row of the report."""

    name: str
    status: str  # ok | failed | skipped | warning
    seconds: float | None = None
    detail: str = ""
    reported: bool = False  # its evidence (and ::error annotation) is already out


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


@dataclass
class Outcome:
    """How a watched rollout (or storage pod) ended."""

    ok: bool
    seconds: float
    summary: str
    problem: Problem | None = None
    waiting: dict[str, str] = field(default_factory=dict)
    ready_after: dict[str, float] = field(default_factory=dict)


def print_check(check: Check) -> None:
    """One line per check; a failure not yet told goes to stderr with an ::error annotation."""
    message = f"{check.name}: {check.detail}"
    if check.status == "failed" and not check.reported:
        REPORTER.line("error", message, check.seconds, stream=REPORTER.err)
        REPORTER.annotate("error", message, title=check.name)
        return
    status = {"failed": "error", "warning": "warn"}.get(check.status, check.status)
    REPORTER.line(status, message, check.seconds, stream=REPORTER.err if check.status == "failed" else None)


# -- the cluster, kept current by watches -------------------------------------------------------
class Cluster:
    """Objects of one namespace, kept current by one Kubernetes watch per kind.

    Each kind has a thread that lists (replacing what it knew), then watches from the list's
    resourceVersion until the watch ends, and again. Changes reach `wait()` through a queue, so
    the caller reacts to a change as soon as it happens and never polls.
    """

    REQUIRED = ("deployments", "pods")

    def __init__(self, api: Any, namespace: str, kinds: Sequence[str]) -> None:
        from tools.kubeapi import path

        self.api = api  # a tools.kubeapi.Kube
        self.namespace = namespace
        self.kinds = list(kinds)
        self._paths = {kind: path(kind, namespace) for kind in kinds}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in kinds}
        self.unavailable: dict[str, str] = {}
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stop = threading.Event()
        self._synced = {kind: threading.Event() for kind in kinds}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for kind in self.kinds:
            thread = threading.Thread(target=self._follow, args=(kind,), name=f"watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)
        end = time.monotonic() + API_TIMEOUT + 2
        for kind in self.kinds:
            self._synced[kind].wait(max(0.0, end - time.monotonic()))
        self.drain(0)
        for kind in self.kinds:
            if not self._synced[kind].is_set() and kind not in self.unavailable:
                self.unavailable[kind] = f"no answer within {API_TIMEOUT:.0f}s"
        for kind, why in list(self.unavailable.items()):
            if kind in self.REQUIRED:
                raise ToolError(f"cannot watch {kind} in namespace {self.namespace}: {why}")
            REPORTER.warning(f"cannot watch {kind} in namespace {self.namespace}: {why}; going on without them")

    def stop(self) -> None:
        """The watch threads end at their next event or when the server closes the watch."""
        self._stop.set()

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _follow(self, kind: str) -> None:
        from tools.kubeapi import ApiError

        url = self._paths[kind]
        while not self._stop.is_set():
            try:
                document = self.api.get(url)
                self._queue.put(("sync", kind, document.get("items") or []))
                self._synced[kind].set()
                if self._stop.is_set():
                    return
                version = (document.get("metadata") or {}).get("resourceVersion")
                for event in self.api.watch(url, version, WATCH_SECONDS, self._stop.is_set):
                    if event.get("type") == "ERROR":  # e.g. 410 Gone: the version expired, list again
                        break
                    self._queue.put(("event", kind, event.get("type"), event.get("object") or {}))
            except ApiError as exc:
                if exc.status == 410:  # the resourceVersion expired: list again
                    continue
                if exc.status == 504 and self._synced[kind].is_set():
                    # "Too large resource version": the watch cache lags behind the list; it catches up in ms
                    if self._stop.wait(0.1):
                        return
                    continue
                self._failed(kind, f"{exc.status} {exc.message or exc.reason}".strip())
                if self._stop.wait(2):
                    return
            except Exception as exc:  # timeouts, closed streams, connection errors
                if self._stop.is_set():
                    return
                if not self._synced[kind].is_set():
                    self._failed(kind, objects.short_error(exc))
                if self._stop.wait(0.2):
                    return

    def _failed(self, kind: str, why: str) -> None:
        if not self._synced[kind].is_set():
            self.unavailable[kind] = why
            self._synced[kind].set()

    # -- reading changes -----------------------------------------------------------------------
    def wait(self, timeout: float) -> bool:
        """Apply the next change (waiting at most `timeout` seconds) and every queued one."""
        try:
            message = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        self._apply(message)
        self.drain(0)
        return True

    def drain(self, timeout: float) -> None:
        with suppress(queue.Empty):
            while True:
                self._apply(self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait())

    def _apply(self, message: tuple[Any, ...]) -> None:
        if message[0] == "sync":
            _, kind, items = message
            self.objects[kind] = {objects.name(item): item for item in items}
            return
        _, kind, event_type, obj = message
        name = objects.name(obj)
        if not name:
            return
        if event_type == "DELETED":
            self.objects[kind].pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self.objects[kind][name] = obj

    def refresh_deployments(self, names: Sequence[str]) -> None:
        """Read the Deployments now (after a change we made, before its watch events arrive)."""
        from tools.kubeapi import path

        self.drain(0)
        for name in names:
            self.objects["deployments"][name] = self.api.get(path("deployments", self.namespace, name))

    # -- questions -----------------------------------------------------------------------------
    def events_for(self, kind: str, name: str) -> list[dict[str, Any]]:
        found = []
        for event in self.objects.get("events", {}).values():
            subject = event.get("involvedObject") or {}
            if subject.get("kind") == kind and subject.get("name") == name:
                found.append(event)
        return sorted(found, key=_event_time)

    def release_objects(self, kind: str, release: str) -> list[dict[str, Any]]:
        return sorted(
            (
                o
                for o in self.objects.get(kind, {}).values()
                if objects.annotations(o).get(RELEASE_ANNOTATION) == release
            ),
            key=objects.name,
        )

    def pods_of(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        """The live pods of the Deployment's current revision.

        Selected by the Deployment's selector (client-side: some API servers ignore
        labelSelector), by the pod-template-hash of the current ReplicaSet when one is known,
        and by the pod template's images (a pod never changes its template).
        """
        spec = deployment.get("spec") or {}
        selector = spec.get("selector") or {}
        template_images = _images(((spec.get("template") or {}).get("spec")) or {})
        current_hash = self._current_hash(deployment)
        pods = []
        for pod in self.objects.get("pods", {}).values():
            labels = objects.labels(pod)
            if not _selects(selector, labels) or (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if current_hash and labels.get("pod-template-hash") not in (None, current_hash):
                continue
            if _images(pod.get("spec") or {}) != template_images:
                continue
            pods.append(pod)
        return sorted(pods, key=objects.name)

    def _current_hash(self, deployment: dict[str, Any]) -> str | None:
        revision = objects.annotations(deployment).get(REVISION_ANNOTATION)
        if not revision:
            return None
        name = objects.name(deployment)
        for replica_set in self.objects.get("replicasets", {}).values():
            owners = (replica_set.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("kind") == "Deployment" and o.get("name") == name for o in owners) and (
                objects.annotations(replica_set).get(REVISION_ANNOTATION) == revision
            ):
                return objects.labels(replica_set).get("pod-template-hash")
        return None


# -- judging objects -------------------------------------------------------------------------------
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


def deployment_problem(deployment: dict[str, Any]) -> Problem | None:
    name = objects.name(deployment)
    _, _, failed = rollout_state(deployment)
    if failed:
        return Problem(name, "ProgressDeadlineExceeded", failed, hint="the Deployment gave up progressing", logs=False)
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return Problem(
                name,
                condition.get("reason") or "ReplicaFailure",
                condition.get("message") or "",
                hint="pods cannot be created (quota, admission policy, missing service account?)",
                grace=True,
                logs=False,
            )
    return None


def pod_problem(workload: str, pod: dict[str, Any], events: Sequence[dict[str, Any]]) -> Problem | None:
    """The state of `pod` that will not heal by itself (or only grace-limited), else None."""
    name = objects.name(pod)
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restart_never = spec.get("restartPolicy") == "Never"
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for container in statuses:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in FATAL_WAITING:
            return Problem(
                workload,
                reason,
                waiting.get("message") or "",
                pod=name,
                container=container.get("name") or "",
                hint=FATAL_WAITING[reason],
                detail=_restarts(container),
                logs=reason not in NEVER_STARTED,
                previous=(container.get("restartCount") or 0) > 0,
            )
        terminated = state.get("terminated") or {}
        crashed = _crashed_again(container)
        if crashed and not restart_never:
            reason, code = crashed
            return Problem(
                workload,
                reason,
                f"exited with code {code} again after {_restarts(container)}",
                pod=name,
                container=container.get("name") or "",
                hint=CRASH_HINTS.get(reason, FATAL_WAITING["CrashLoopBackOff"]),
                previous="terminated" not in state,
            )
        if restart_never and terminated and terminated.get("exitCode", 0) != 0:
            return Problem(
                workload,
                terminated.get("reason") or "Error",
                f"exited with code {terminated.get('exitCode')}" + objects.colon(terminated.get("message")),
                pod=name,
                container=container.get("name") or "",
                hint="the container failed",
            )
    back_off = next(
        (e for e in reversed(events) if e.get("reason") == "BackOff" and "restarting" in (e.get("message") or "")), None
    )
    if back_off and not restart_never:
        container = _container_named(statuses, back_off.get("message") or "")
        state = container.get("state") or {}
        ended = state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
        return Problem(
            workload,
            "OOMKilled" if ended.get("reason") == "OOMKilled" else "CrashLoopBackOff",
            back_off.get("message") or "",
            pod=name,
            container=container.get("name") or "",
            hint=CRASH_HINTS.get(ended.get("reason") or "", FATAL_WAITING["CrashLoopBackOff"]),
            detail=_restarts(container),
            previous=(container.get("restartCount") or 0) > 0 and "terminated" not in (container.get("state") or {}),
        )
    if restart_never and status.get("phase") == "Failed":
        return Problem(workload, status.get("reason") or "Failed", status.get("message") or "", pod=name)
    if status.get("phase") in ("Running", "Succeeded"):
        return None
    bucket_volumes = {
        v.get("name")
        for v in spec.get("volumes") or []
        if v.get("csi") or v.get("persistentVolumeClaim") or v.get("ephemeral")
    }
    for event in reversed(events):
        if event.get("reason") in ("FailedMount", "FailedAttachVolume"):
            message = event.get("message") or ""
            named = set(_VOLUME_QUOTED.findall(message))
            for group in _VOLUME_LIST.findall(message):
                named |= {v.strip() for v in re.split(r"[ ,]+", group) if v.strip()}
            bucket = sorted(named & bucket_volumes)
            return Problem(
                workload,
                event["reason"],
                message,
                pod=name,
                hint=(
                    f"the bucket volume {bucket[0]!r} cannot be mounted: check the bucket, the CSI driver "
                    "and the service account's cloud identity (IAM)"
                    if bucket
                    else "a volume cannot be mounted"
                ),
                grace=not bucket,
                logs=False,
            )
    scaling_up = any(e.get("reason") == "TriggeredScaleUp" for e in events)
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
            and not scaling_up
        ):
            return Problem(
                workload,
                "Unschedulable",
                condition.get("message") or "",
                pod=name,
                hint="no node can take the pod: check its resource requests and the node pool size",
                grace=True,
                logs=False,
            )
    return None


def watch_until(
    cluster: Cluster,
    deadline: float,
    grace: float,
    judge: Callable[[], tuple[list[Problem], dict[str, str], dict[str, str]]],
) -> Outcome:
    """Re-judge on every change until done, a fatal problem, or the deadline.

    `judge` returns (problems, still waiting {name: why}, done {name: detail}).
    """
    start = time.monotonic()
    end = start + deadline
    pending: dict[tuple[str, str, str], float] = {}
    ready_after: dict[str, float] = {}
    while True:
        now = time.monotonic()
        problems, waiting, done = judge()
        for name in done:
            ready_after.setdefault(name, now - start)
        seen = set()
        for problem in problems:
            if not problem.grace:
                return Outcome(False, now - start, problem.headline(), problem, waiting, ready_after)
            seen.add(problem.key)
            first = pending.setdefault(problem.key, now)
            if now - first >= grace:
                problem.detail = ", ".join(filter(None, [problem.detail, f"for {now - first:.0f}s"]))
                return Outcome(False, now - start, problem.headline(), problem, waiting, ready_after)
        for key in set(pending) - seen:
            del pending[key]
        if not waiting and not problems:
            return Outcome(True, now - start, "; ".join(f"{k}: {v}" for k, v in done.items()), None, {}, ready_after)
        if now >= end:
            return Outcome(False, now - start, f"not done after {deadline:.0f}s", None, waiting, ready_after)
        wake = min([end, *(first + grace for first in pending.values())])
        cluster.wait(wake - now)


def judge_rollout(cluster: Cluster, names: Sequence[str]) -> Callable[[], tuple[list[Problem], dict, dict]]:
    def judge() -> tuple[list[Problem], dict[str, str], dict[str, str]]:
        problems: list[Problem] = []
        waiting: dict[str, str] = {}
        done: dict[str, str] = {}
        for name in names:
            deployment = cluster.objects["deployments"].get(name)
            if deployment is None:
                problems.append(Problem(name, "Deleted", "the Deployment disappeared", logs=False))
                continue
            problem = deployment_problem(deployment)
            if problem:
                problems.append(problem)
            finished, why, _ = rollout_state(deployment)
            revision = objects.annotations(deployment).get(REVISION_ANNOTATION)
            if finished:
                done[name] = f"{why}" + (f", revision {revision}" if revision else "")
            else:
                waiting[name] = why
            meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
            if (meta.get("generation") or 0) > (status.get("observedGeneration") or 0):
                continue  # pods of the new revision do not exist yet
            for pod in cluster.pods_of(deployment):
                found = pod_problem(name, pod, cluster.events_for("Pod", objects.name(pod)))
                if found:
                    problems.append(found)
        return problems, waiting, done

    return judge


# -- evidence ----------------------------------------------------------------------------------------
def container_logs(api: Any, namespace: str, pod: str, container: str, previous: bool) -> tuple[list[str], str]:
    """The last log lines of a container, and which instance they are from (or why there are none)."""
    from tools.kubeapi import ApiError, path

    # The kubelet keeps one ended instance per container: right after a restart the previous
    # instance may already be gone, or the current one may be the one that ended.
    why = ""
    for prev in (previous, not previous):
        query = {"tailLines": LOG_LINES, "previous": "true" if prev else "false"}
        if container:
            query["container"] = container
        try:
            text = api.request("GET", path("pods", namespace, pod, "log"), query=query)
        except ApiError as exc:
            why = f"{exc.status} {exc.message or exc.reason}".strip()
            continue
        except Exception as exc:
            return [], f"logs unavailable: {objects.short_error(exc)}"
        if not isinstance(text, bytes):
            why = "the API server answered application/json, not text/plain (it does not serve pod logs)"
            return [], f"logs unavailable: {why}"
        decoded = text.decode("utf-8", errors="replace")
        if decoded.startswith("unable to retrieve container logs"):
            why = decoded.strip()
            continue
        lines = [line for line in decoded.splitlines() if line.strip()][-LOG_LINES:]
        return lines, "previous instance" if prev else "current instance"
    return [], f"logs unavailable: {why}"


def describe_event(event: dict[str, Any]) -> str:
    count = event.get("count") or (event.get("series") or {}).get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    when = _event_stamp(event)
    return f"{when}{event.get('type') or 'Normal'} {event.get('reason') or '?'}{times}: {event.get('message') or ''}"


def report_problem(title: str, problem: Problem, cluster: Cluster) -> None:
    """Print the diagnosis: headline (also an ::error annotation), hint, last events, last logs.

    Evidence of an image for another CPU (WRONG_CPU) anywhere in it makes that the hint.
    """
    lines: list[str] = []
    subject = ("Pod", problem.pod) if problem.pod else ("Deployment", problem.workload)
    events = cluster.events_for(*subject)[-EVENT_LINES:]
    if events:
        lines.append(f"last events of {subject[0].lower()} {subject[1]}:")
        lines += [f"  {describe_event(e)}" for e in events]
    elif "events" in cluster.unavailable:
        lines.append(f"events unavailable: {cluster.unavailable['events']}")
    else:
        lines.append(f"no events for {subject[0].lower()} {subject[1]}")
    if problem.pod and problem.logs:
        logs, source = container_logs(cluster.api, cluster.namespace, problem.pod, problem.container, problem.previous)
        if logs:
            lines.append(f"last {len(logs)} log lines of container {problem.container or '?'} ({source}):")
            lines += [f"  {line}" for line in logs]
        else:
            lines.append(source)
    elif problem.pod:
        lines.append("no logs: the container never started")
    evidence = [problem.message, problem.detail, *lines]
    hint = WRONG_CPU_HINT if any(WRONG_CPU.search(text) for text in evidence) else problem.hint
    if hint:
        lines.insert(0, f"hint: {hint}")
    REPORTER.line("error", f"{title}: {problem.headline()}", stream=REPORTER.err)
    for line in lines:
        REPORTER.line("info", f"  {line}", stream=REPORTER.err)
    REPORTER.annotate("error", "\n".join([problem.headline(), *lines[:12]]), title=title)


def report_waiting(title: str, outcome: Outcome, cluster: Cluster, names: Sequence[str]) -> None:
    """After a deadline: what each unfinished Deployment waits for, with its pods' states and events."""
    lines: list[str] = []
    for name in names:
        if name not in outcome.waiting:
            continue
        lines.append(f"{name}: {outcome.waiting[name]}")
        deployment = cluster.objects["deployments"].get(name)
        pods = cluster.pods_of(deployment) if deployment else []
        if not pods:
            lines.append("  no pods of the new revision")
            lines += [f"  {describe_event(e)}" for e in cluster.events_for("Deployment", name)[-EVENT_LINES:]]
        for pod in pods:
            lines.append(f"  pod {objects.name(pod)}: {pod_summary(pod)}")
            lines += [f"    {describe_event(e)}" for e in cluster.events_for("Pod", objects.name(pod))[-EVENT_LINES:]]
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                if "running" in (container.get("state") or {}) and not container.get("ready"):
                    logs, source = container_logs(
                        cluster.api, cluster.namespace, objects.name(pod), container["name"], False
                    )
                    lines.append(f"    container {container['name']} runs but is not ready; {source}")
                    lines += [f"      {line}" for line in logs[-10:]]
    message = f"{title}: {outcome.summary}"
    REPORTER.line("error", message, stream=REPORTER.err)
    for line in lines:
        REPORTER.line("info", f"  {line}", stream=REPORTER.err)
    REPORTER.annotate("error", "\n".join([message, *lines[:12]]), title=title)


def pod_summary(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    parts = [status.get("phase") or "Pending"]
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key):
                parts.append(f"{container.get('name')} {key} {state[key].get('reason') or ''}".strip())
        if "running" in state:
            parts.append(f"{container.get('name')} running{'' if container.get('ready') else ', not ready'}")
    for condition in status.get("conditions") or []:
        if condition.get("status") == "False" and condition.get("reason"):
            parts.append(f"{condition.get('type')}: {condition.get('reason')} {condition.get('message') or ''}".strip())
    return "; ".join(parts)


# -- rollout ------------------------------------------------------------------------------------------
def release_deployments(cluster: Cluster, release: str) -> list[str]:
    deployments = cluster.release_objects("deployments", release)
    if not deployments:
        raise ToolError(
            f"no Deployments of release {release} in namespace {cluster.namespace}: "
            "run helm_deploy first, or check RELEASE_NAME and NAMESPACE"
        )
    components = {objects.labels(d).get(COMPONENT_LABEL) or objects.name(d) for d in deployments}
    missing = [c for c in ("backend", "frontend") if not any(c in x for x in components)]
    if missing:
        REPORTER.warning(f"release {release} has no {' or '.join(missing)} Deployment; checking the others")
    return [objects.name(d) for d in deployments]


def check_rollout(cluster: Cluster, names: Sequence[str], deadline: float, grace: float, label: str) -> list[Check]:
    REPORTER.info(f"watching the {label} of {', '.join(names)} (deadline {deadline:.0f}s, grace {grace:.0f}s)")
    outcome = watch_until(cluster, deadline, grace, judge_rollout(cluster, names))
    checks = []
    for name in names:
        deployment = cluster.objects["deployments"].get(name) or {}
        finished, why, _ = rollout_state(deployment) if deployment else (False, "deleted", None)
        revision = objects.annotations(deployment).get(REVISION_ANNOTATION)
        detail = why + (f", revision {revision}" if revision else "")
        if outcome.problem and outcome.problem.workload == name:
            checks.append(Check(f"{label} {name}", "failed", outcome.seconds, outcome.problem.headline()))
        elif finished and name in outcome.ready_after:
            checks.append(Check(f"{label} {name}", "ok", outcome.ready_after[name], detail))
        else:
            status = "failed" if not outcome.problem else "skipped"
            checks.append(Check(f"{label} {name}", status, outcome.seconds, outcome.waiting.get(name) or detail))
    for check in checks:
        if check.status != "failed":  # failures are told below, with their evidence
            print_check(check)
    if outcome.problem:
        report_problem(f"{label} failed", outcome.problem, cluster)
    elif not outcome.ok:
        report_waiting(f"{label} not finished", outcome, cluster, names)
    return checks


# -- small helpers ----------------------------------------------------------------------------------------


def _images(pod_spec: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((c.get("name") or "", c.get("image") or "") for c in pod_spec.get("containers") or [])


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and labels.get(key) in values)
            or (operator == "Exists" and key not in labels)
            or (operator == "DoesNotExist" and key in labels)
        ):
            return False
    return True


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


def _event_time(event: dict[str, Any]) -> str:
    return (
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _event_stamp(event: dict[str, Any]) -> str:
    stamp = _event_time(event)
    match = re.search(r"T(\d\d:\d\d:\d\d)", stamp)
    return f"{match.group(1)} " if match else ""
