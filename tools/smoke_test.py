"""Smoke test of a deployed release: rollouts, endpoints, user storage; roll back on failure.

1. Rollout watch. The Deployments of the release (backend, frontend) must reach their new
   revision and be Ready. The tool watches Deployments, ReplicaSets, Pods and Events (one
   Kubernetes watch per kind, no polling) and fails as soon as a pod of the new revision shows
   a state that does not heal by itself: CrashLoopBackOff, ImagePullBackOff, ErrImagePull,
   InvalidImageName, CreateContainerConfigError (a missing Secret key), CreateContainerError,
   a FailedMount of a bucket volume (CSI or claim), a Deployment's ProgressDeadlineExceeded;
   Unschedulable, a failed pod creation and other FailedMounts after a short grace
   (`--grace`; a TriggeredScaleUp event lifts it). It reports the pod, the reason, the pod's
   last events and the last log lines of the failing container. `--deadline` bounds the wait.
2. Endpoints. The Ingress address (hostname or IP from its status; the ALB's DNS name on
   AWS), then HTTPS `API_URL/health` (JSON `status: healthy`) and `FRONTEND_URL/api/health`,
   TLS verified, with retries, a per-request timeout and a total deadline. `--address` sends
   the requests to another address (`ingress` = the Ingress's) with the real Host and SNI,
   for when DNS is not set yet; `--ca-bundle` trusts a private CA (a local cluster).
3. User storage. A throwaway pod built from the chart's user-environment settings (the
   ConfigMap `<release>-user-environment` the backend's pod manager reads: image, annotations,
   volume mode, CSI driver and attributes; the service account from USER_POD_SA_NAME) mounts
   the database bucket (or `--storage-bucket`), writes a file, reads it back and deletes it;
   the pod (and its PersistentVolume and claim on AWS) is deleted and each phase timed.
4. On failure the release is rolled back to its previous deployed revision (`helm rollback`,
   unless `--no-rollback`) and the rollback's own rollout is checked. The exit code is 1.
5. A summary on stdout and, under GitHub Actions, a Markdown table in $GITHUB_STEP_SUMMARY
   (images and digests, chart revision, each check with result and time, URLs) and `::error`
   annotations. Secret values (settings and the release's Secrets) are redacted everywhere.

Exit codes: 0 healthy, 1 unhealthy (after the rollback), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tools.cli import main_boundary, parser, settings_from
from tools.cloud import BACKEND_SECRET, FRONTEND_SECRET, USER_SERVICE_ACCOUNT, cloud_for
from tools.errors import ToolError, UsageError
from tools.report import REPORTER, markdown_table
from tools.settings import SECRET_VARS, Settings

DEFAULT_DEADLINE = 300.0  # seconds for a rollout (and for the rollback's)
DEFAULT_GRACE = 20.0  # seconds a pod may stay Unschedulable (or fail to be created)
DEFAULT_ENDPOINT_DEADLINE = 180.0  # Ingress address and HTTPS checks together
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_STORAGE_DEADLINE = 180.0
API_TIMEOUT = 10.0  # one Kubernetes API call
WATCH_SECONDS = 60  # a watch is reopened (after a fresh list) at least this often
LOG_LINES = 20
EVENT_LINES = 5
RELEASE_ANNOTATION = "meta.helm.sh/release-name"
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


# -- the cluster, kept current by watches -------------------------------------------------------
class Cluster:
    """Objects of one namespace, kept current by one Kubernetes watch per kind.

    Each kind has a thread that lists (replacing what it knew), then watches from the list's
    resourceVersion until the watch ends, and again. Changes reach `wait()` through a queue, so
    the caller reacts to a change as soon as it happens and never polls.
    """

    REQUIRED = ("deployments", "pods")

    def __init__(self, api_client: Any, namespace: str, kinds: Sequence[str]) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        listers: dict[str, Callable[..., Any]] = {
            "deployments": self.apps.list_namespaced_deployment,
            "replicasets": self.apps.list_namespaced_replica_set,
            "pods": self.core.list_namespaced_pod,
            "events": self.core.list_namespaced_event,
            "ingresses": self.networking.list_namespaced_ingress,
        }
        self.kinds = list(kinds)
        self._listers = {kind: listers[kind] for kind in kinds}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in kinds}
        self.unavailable: dict[str, str] = {}
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stop = threading.Event()
        self._synced = {kind: threading.Event() for kind in kinds}
        self._watches: dict[str, Any] = {}
        self._lock = threading.Lock()
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
        self._stop.set()
        with self._lock:
            watches = list(self._watches.values())
        for watcher in watches:
            with suppress(Exception):
                watcher.stop()

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
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        lister = self._listers[kind]
        while not self._stop.is_set():
            try:
                listing = lister(self.namespace, _preload_content=False, _request_timeout=API_TIMEOUT)
                document = json.loads(listing.data or b"{}")
                self._queue.put(("sync", kind, document.get("items") or []))
                self._synced[kind].set()
                watcher = watch.Watch()
                with self._lock:
                    self._watches[kind] = watcher
                if self._stop.is_set():
                    return
                options: dict[str, Any] = {
                    "timeout_seconds": WATCH_SECONDS,
                    "_request_timeout": (API_TIMEOUT, WATCH_SECONDS + 5),
                    "deserialize": False,
                }
                version = (document.get("metadata") or {}).get("resourceVersion")
                if version:
                    options["resource_version"] = version
                for event in watcher.stream(lister, self.namespace, **options):
                    self._queue.put(("event", kind, event.get("type"), event.get("object") or {}))
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # the resourceVersion expired: list again
                    continue
                self._failed(kind, f"{exc.status} {exc.reason}".strip())
                if self._stop.wait(2):
                    return
            except KeyError:  # an ERROR event the client could not unpack: start over
                continue
            except Exception as exc:  # timeouts, closed streams, connection errors
                if self._stop.is_set():
                    return
                if not self._synced[kind].is_set():
                    self._failed(kind, _short_error(exc))
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
            self.objects[kind] = {_name(item): item for item in items}
            return
        _, kind, event_type, obj = message
        name = _name(obj)
        if not name:
            return
        if event_type == "DELETED":
            self.objects[kind].pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self.objects[kind][name] = obj

    def refresh_deployments(self, names: Sequence[str]) -> None:
        """Read the Deployments now (after a change we made, before its watch events arrive)."""
        self.drain(0)
        for name in names:
            response = self.apps.read_namespaced_deployment(
                name, self.namespace, _preload_content=False, _request_timeout=API_TIMEOUT
            )
            self.objects["deployments"][name] = json.loads(response.data or b"{}")

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
            (o for o in self.objects.get(kind, {}).values() if _annotations(o).get(RELEASE_ANNOTATION) == release),
            key=_name,
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
            labels = _labels(pod)
            if not _selects(selector, labels) or (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if current_hash and labels.get("pod-template-hash") not in (None, current_hash):
                continue
            if _images(pod.get("spec") or {}) != template_images:
                continue
            pods.append(pod)
        return sorted(pods, key=_name)

    def _current_hash(self, deployment: dict[str, Any]) -> str | None:
        revision = _annotations(deployment).get(REVISION_ANNOTATION)
        if not revision:
            return None
        name = _name(deployment)
        for replica_set in self.objects.get("replicasets", {}).values():
            owners = (replica_set.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("kind") == "Deployment" and o.get("name") == name for o in owners) and (
                _annotations(replica_set).get(REVISION_ANNOTATION) == revision
            ):
                return _labels(replica_set).get("pod-template-hash")
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
    name = _name(deployment)
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
    name = _name(pod)
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
        if restart_never and terminated and terminated.get("exitCode", 0) != 0:
            return Problem(
                workload,
                terminated.get("reason") or "Error",
                f"exited with code {terminated.get('exitCode')}" + _colon(terminated.get("message")),
                pod=name,
                container=container.get("name") or "",
                hint="the container failed",
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
            revision = _annotations(deployment).get(REVISION_ANNOTATION)
            if finished:
                done[name] = f"{why}" + (f", revision {revision}" if revision else "")
            else:
                waiting[name] = why
            meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
            if (meta.get("generation") or 0) > (status.get("observedGeneration") or 0):
                continue  # pods of the new revision do not exist yet
            for pod in cluster.pods_of(deployment):
                found = pod_problem(name, pod, cluster.events_for("Pod", _name(pod)))
                if found:
                    problems.append(found)
        return problems, waiting, done

    return judge


# -- evidence ----------------------------------------------------------------------------------------
def container_logs(core: Any, namespace: str, pod: str, container: str, previous: bool) -> tuple[list[str], str]:
    """The last log lines of a container, and which instance they are from (or why there are none)."""
    from kubernetes.client.exceptions import ApiException

    attempts = [True, False] if previous else [False]
    why = ""
    for prev in attempts:
        try:
            response = core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container or None,
                tail_lines=LOG_LINES,
                previous=prev,
                _preload_content=False,
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            why = f"{exc.status} {exc.reason}".strip()
            continue
        except Exception as exc:
            return [], f"logs unavailable: {_short_error(exc)}"
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind and kind != "text/plain":
            return [], f"logs unavailable: the API server answered {kind}, not text/plain (it does not serve pod logs)"
        text = response.data.decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()][-LOG_LINES:]
        return lines, "previous instance" if prev else "current instance"
    return [], f"logs unavailable: {why}"


def describe_event(event: dict[str, Any]) -> str:
    count = event.get("count") or (event.get("series") or {}).get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    when = _event_stamp(event)
    return f"{when}{event.get('type') or 'Normal'} {event.get('reason') or '?'}{times}: {event.get('message') or ''}"


def report_problem(title: str, problem: Problem, cluster: Cluster) -> None:
    """Print the diagnosis: headline (also an ::error annotation), hint, last events, last logs."""
    lines: list[str] = []
    if problem.hint:
        lines.append(f"hint: {problem.hint}")
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
        logs, source = container_logs(cluster.core, cluster.namespace, problem.pod, problem.container, problem.previous)
        if logs:
            lines.append(f"last {len(logs)} log lines of container {problem.container or '?'} ({source}):")
            lines += [f"  {line}" for line in logs]
        else:
            lines.append(source)
    elif problem.pod:
        lines.append("no logs: the container never started")
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
            lines.append(f"  pod {_name(pod)}: {pod_summary(pod)}")
            lines += [f"    {describe_event(e)}" for e in cluster.events_for("Pod", _name(pod))[-EVENT_LINES:]]
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                if "running" in (container.get("state") or {}) and not container.get("ready"):
                    logs, source = container_logs(cluster.core, cluster.namespace, _name(pod), container["name"], False)
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
    components = {_labels(d).get(COMPONENT_LABEL) or _name(d) for d in deployments}
    missing = [c for c in ("backend", "frontend") if not any(c in x for x in components)]
    if missing:
        REPORTER.warning(f"release {release} has no {' or '.join(missing)} Deployment; checking the others")
    return [_name(d) for d in deployments]


def check_rollout(cluster: Cluster, names: Sequence[str], deadline: float, grace: float, label: str) -> list[Check]:
    REPORTER.info(f"watching the {label} of {', '.join(names)} (deadline {deadline:.0f}s, grace {grace:.0f}s)")
    outcome = watch_until(cluster, deadline, grace, judge_rollout(cluster, names))
    checks = []
    for name in names:
        deployment = cluster.objects["deployments"].get(name) or {}
        finished, why, _ = rollout_state(deployment) if deployment else (False, "deleted", None)
        revision = _annotations(deployment).get(REVISION_ANNOTATION)
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
            _print_check(check)
    if outcome.problem:
        report_problem(f"{label} failed", outcome.problem, cluster)
    elif not outcome.ok:
        report_waiting(f"{label} not finished", outcome, cluster, names)
    return checks


# -- endpoints ----------------------------------------------------------------------------------------
def ingress_addresses(cluster: Cluster, release: str, deadline_at: float) -> tuple[Check, list[str]]:
    """Wait (by watch) until every Ingress of the release has an address in its status."""
    start = time.monotonic()
    if "ingresses" in cluster.unavailable:
        return Check("ingress address", "failed", 0.0, f"cannot read Ingresses: {cluster.unavailable['ingresses']}"), []
    while True:
        ingresses = cluster.release_objects("ingresses", release)
        found = {_name(i): _ingress_address(i) for i in ingresses}
        if ingresses and all(found.values()):
            addresses = list(dict.fromkeys(a for a in found.values() if a))
            detail = ", ".join(f"{name}: {address}" for name, address in found.items())
            return Check("ingress address", "ok", time.monotonic() - start, detail), addresses
        now = time.monotonic()
        if now >= deadline_at:
            if not ingresses:
                why = f"release {release} has no Ingress in namespace {cluster.namespace}"
            else:
                waiting = [name for name, address in found.items() if not address]
                events = [describe_event(e) for name in waiting for e in cluster.events_for("Ingress", name)[-3:]]
                why = f"no address yet for Ingress {', '.join(waiting)}: check the ingress controller"
                if events:
                    why += " (last events: " + " | ".join(events) + ")"
            return Check("ingress address", "failed", now - start, why), []
        cluster.wait(deadline_at - now)


def _ingress_address(ingress: dict[str, Any]) -> str:
    for entry in ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if entry.get("hostname") or entry.get("ip"):
            return entry.get("hostname") or entry.get("ip")
    return ""


def _pinned_session(hostname: str, address: str) -> Any:
    """A requests session whose HTTPS requests to `address` carry the SNI and Host of `hostname`."""
    import requests
    from requests.adapters import HTTPAdapter

    class PinnedHost(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["server_hostname"] = hostname
            kwargs["assert_hostname"] = hostname
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount(f"https://{address}", PinnedHost())
    return session


def check_url(
    url: str,
    *,
    expect_status: str | None,
    deadline_at: float,
    request_timeout: float,
    address: str | None = None,
    ca_bundle: str | None = None,
) -> Check:
    """GET `url` until it answers 200 (and, with `expect_status`, JSON whose `status` is it) or the deadline."""
    import requests

    start = time.monotonic()
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    headers = {"User-Agent": "cmbcluster-smoke-test", "Accept": "application/json"}
    if address:
        target = urlunsplit((parts.scheme, address, parts.path or "/", parts.query, ""))
        session = _pinned_session(hostname, address)
        headers["Host"] = parts.netloc
        via = f" via {address}"
    else:
        target, session, via = url, requests.Session(), ""
    attempts, delay, last = 0, 0.5, ""
    with session:
        while True:
            attempts += 1
            remaining = deadline_at - time.monotonic()
            timeout = max(0.1, min(request_timeout, remaining))
            try:
                response = session.get(
                    target, headers=headers, timeout=timeout, verify=ca_bundle or True, allow_redirects=False
                )
            except requests.exceptions.SSLError as exc:
                last = f"TLS verification failed: {_short_error(exc)}"
            except requests.exceptions.Timeout:
                last = f"no answer within the request timeout ({timeout:.1f}s)"
            except requests.exceptions.ConnectionError as exc:
                last = f"cannot connect: {_short_error(exc)}"
            else:
                last = _judge_response(response, expect_status)
                if not last:
                    detail = f"HTTP {response.status_code}" + (f", status {expect_status}" if expect_status else "")
                    return Check(f"GET {url}", "ok", time.monotonic() - start, detail + via)
            now = time.monotonic()
            if now >= deadline_at - 0.05:
                took = now - start
                return Check(f"GET {url}", "failed", took, f"{last}{via} ({attempts} attempts in {took:.1f}s)")
            time.sleep(min(delay, deadline_at - now))
            delay = min(delay * 2, 5.0)


def _judge_response(response: Any, expect_status: str | None) -> str:
    """Why the answer is not healthy, or '' when it is."""
    body = response.text[:200].strip().replace("\n", " ")
    if response.status_code != 200:
        where = f" to {response.headers.get('Location')}" if response.is_redirect else ""
        return f"answered HTTP {response.status_code} {response.reason or ''}".rstrip() + where + _colon(body)
    if expect_status is None:
        return ""
    try:
        document = response.json()
    except ValueError:
        return "answered 200 but not with JSON" + _colon(body)
    status = document.get("status") if isinstance(document, dict) else None
    if status != expect_status:
        return f"answered JSON with status {status!r}, expected {expect_status!r}" + _colon(body)
    return ""


def check_endpoints(cluster: Cluster, settings: Settings, args: argparse.Namespace) -> tuple[list[Check], list[str]]:
    deadline_at = time.monotonic() + args.endpoint_deadline
    ingress_check, addresses = ingress_addresses(cluster, settings.release, deadline_at)
    checks = [ingress_check]
    _print_check(ingress_check)
    address = args.address
    if address == "ingress":
        if not addresses:
            return checks, addresses
        address = addresses[0]
    urls = [
        (settings["API_URL"].rstrip("/") + "/health", "healthy"),
        (settings["FRONTEND_URL"].rstrip("/") + "/api/health", None),
    ]
    for url, expect in urls:
        check = check_url(
            url,
            expect_status=expect,
            deadline_at=deadline_at,
            request_timeout=args.request_timeout,
            address=address,
            ca_bundle=args.ca_bundle,
        )
        checks.append(check)
        _print_check(check)
    return checks, addresses


# -- user storage ---------------------------------------------------------------------------------------
def user_environment(cluster: Cluster, release: str) -> tuple[dict[str, str], str]:
    """The chart's user-environment settings (its ConfigMap) and the user pods' service account."""
    from kubernetes.client.exceptions import ApiException

    try:
        listing = cluster.core.list_namespaced_config_map(
            cluster.namespace, _preload_content=False, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        raise ToolError(f"cannot list ConfigMaps in {cluster.namespace}: {exc.status} {exc.reason}") from None
    maps = [
        m
        for m in json.loads(listing.data or b"{}").get("items") or []
        if _annotations(m).get(RELEASE_ANNOTATION) == release and _name(m).endswith("-user-environment")
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


STORAGE_SCRIPT = r"""set -eu
now() { t=$(date +%s%N); case "$t" in *N) echo "$(date +%s)000000000" ;; *) echo "$t" ;; esac; }
f="$MOUNT/.cmbcluster-storage-check-$TOKEN"
t0=$(now); printf '%s\n' "$TOKEN" > "$f"; t1=$(now)
got=$(cat "$f"); t2=$(now)
rm -f "$f"; t3=$(now)
if [ "$got" != "$TOKEN" ]; then echo "storage-check: read back something else than was written" >&2; exit 3; fi
echo "storage-check ok write_ms=$(( (t1 - t0) / 1000000 )) read_ms=$(( (t2 - t1) / 1000000 ))" \
  "delete_ms=$(( (t3 - t2) / 1000000 ))"
"""


def storage_check_manifests(
    config: dict[str, str], service_account: str, namespace: str, release: str, bucket: str, token: str, deadline: int
) -> list[dict[str, Any]]:
    """The throwaway pod (last) and what it needs first, built as the pod manager builds user pods."""
    name = f"{release}-storage-check-{token}"[:63]
    mode = config.get("USER_POD_VOLUME_MODE", "none")
    driver = config.get("USER_POD_CSI_DRIVER", "")
    attributes = _json(config.get("USER_POD_VOLUME_ATTRIBUTES"), {}, "USER_POD_VOLUME_ATTRIBUTES")
    objects: list[dict[str, Any]] = []
    if mode == "csi-inline":
        csi = {"driver": driver, "volumeAttributes": {"bucketName": bucket, **attributes}}
        volume = {"name": "user-data", "csi": csi}
    elif mode == "csi-static-pv":
        pv_name = f"{namespace}-{name}"[:253]
        objects.append(
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
                    "mountOptions": _json(config.get("USER_POD_MOUNT_OPTIONS"), [], "USER_POD_MOUNT_OPTIONS"),
                    "csi": {
                        "driver": driver,
                        "volumeHandle": pv_name,
                        "volumeAttributes": {"bucketName": bucket, **attributes},
                    },
                },
            }
        )
        objects.append(
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
    annotations = _json(config.get("USER_POD_ANNOTATIONS"), {}, "USER_POD_ANNOTATIONS")
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
                    "env": [{"name": "TOKEN", "value": token}, {"name": "MOUNT", "value": STORAGE_MOUNT}],
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
    objects.append(pod)
    return objects


def _storage_labels(release: str) -> dict[str, str]:
    # Not component=user-pod: the backend's pod manager must not count or reap this pod.
    return {
        "app.kubernetes.io/part-of": "cmbcluster",
        "app.kubernetes.io/instance": release,
        COMPONENT_LABEL: "storage-check",
    }


def check_storage(cluster: Cluster, settings: Settings, args: argparse.Namespace) -> Check:
    """Run the throwaway pod; report each phase's time; always clean up."""
    from kubernetes.client.exceptions import ApiException

    start = time.monotonic()
    config, service_account = user_environment(cluster, settings.release)
    bucket = args.storage_bucket or cloud_for(settings).database_bucket
    token = secrets.token_hex(4)
    objects = storage_check_manifests(
        config, service_account, cluster.namespace, settings.release, bucket, token, int(args.storage_deadline)
    )
    pod = objects[-1]
    name = _name(pod)
    phases: list[str] = []
    created: list[dict[str, Any]] = []
    REPORTER.info(f"storage check: pod {name} as {service_account}, volume {_volume_kind(pod)}, bucket {bucket}")
    outcome: Outcome | None = None
    try:
        for obj in objects:
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
            return ([problem] if problem else []), {name: pod_summary(current)}, {}

        outcome = watch_until(cluster, args.storage_deadline, args.grace, judge)
        t_end = time.monotonic()
        started = marks.get("started", t_end)
        phases.append(f"schedule+mount+start {started - t_created:.1f}s")
        phases.append(f"run {t_end - started:.1f}s")
        if outcome.ok:
            logs, source = container_logs(cluster.core, cluster.namespace, name, "check", False)
            phases.append(in_pod_timings(logs) or f"in-pod timings unavailable ({source})")
        elif outcome.problem:
            report_problem("storage check failed", outcome.problem, cluster)
        else:
            REPORTER.error(f"storage check: pod {name} {outcome.summary}: {outcome.waiting.get(name, '')}")
    except ApiException as exc:
        body = _api_message(exc)
        phases.append(f"failed: {exc.status} {exc.reason}{_colon(body)}")
    finally:
        t_delete = time.monotonic()
        gone = _delete_all(cluster, created)
        if created and created[-1] is pod:
            phases.append(f"delete {time.monotonic() - t_delete:.1f}s" + ("" if gone else " (still terminating)"))
    took = time.monotonic() - start
    if outcome is None:
        return Check("user storage", "failed", took, "; ".join(phases))
    if outcome.ok:
        return Check("user storage", "ok", took, f"bucket {bucket}: " + ", ".join(phases))
    why = outcome.problem.headline() if outcome.problem else f"{outcome.summary}: {outcome.waiting.get(name, '')}"
    return Check("user storage", "failed", took, f"{why}; " + ", ".join(phases), reported=True)


def in_pod_timings(logs: Sequence[str]) -> str:
    """'in the pod: write file 12ms, read file 3ms, delete file 5ms' from STORAGE_SCRIPT's output."""
    line = next((line for line in logs if line.startswith("storage-check ok")), "")
    found = re.findall(r"(\w+)_ms=(\d+)", line)
    return "in the pod: " + ", ".join(f"{what} file {ms}ms" for what, ms in found) if found else ""


def _volume_kind(pod: dict[str, Any]) -> str:
    volume = pod["spec"]["volumes"][0]
    if "csi" in volume:
        return f"inline CSI {volume['csi']['driver']}"
    if "persistentVolumeClaim" in volume:
        return f"claim {volume['persistentVolumeClaim']['claimName']}"
    return "emptyDir (no bucket on this cloud)"


def _create(cluster: Cluster, obj: dict[str, Any]) -> None:
    kind = obj["kind"]
    if kind == "PersistentVolume":
        cluster.core.create_persistent_volume(obj, _request_timeout=API_TIMEOUT, _preload_content=False)
    elif kind == "PersistentVolumeClaim":
        cluster.core.create_namespaced_persistent_volume_claim(
            cluster.namespace, obj, _request_timeout=API_TIMEOUT, _preload_content=False
        )
    else:
        response = cluster.core.create_namespaced_pod(
            cluster.namespace, obj, _request_timeout=API_TIMEOUT, _preload_content=False
        )
        # known at once, before its watch event arrives
        cluster.objects["pods"][_name(obj)] = json.loads(response.data or b"{}") or obj


def _delete_all(cluster: Cluster, created: list[dict[str, Any]]) -> bool:
    """Delete what the storage check created, the pod first; True when the pod is gone."""
    from kubernetes.client.exceptions import ApiException

    gone = True
    for obj in reversed(created):  # the pod first, its volume last
        name = _name(obj)
        try:
            if obj["kind"] == "Pod":
                cluster.core.delete_namespaced_pod(
                    name, cluster.namespace, _request_timeout=API_TIMEOUT, _preload_content=False
                )
                gone = _wait_gone(cluster, name, 30.0)
            elif obj["kind"] == "PersistentVolumeClaim":
                cluster.core.delete_namespaced_persistent_volume_claim(
                    name, cluster.namespace, _request_timeout=API_TIMEOUT, _preload_content=False
                )
            else:
                cluster.core.delete_persistent_volume(name, _request_timeout=API_TIMEOUT, _preload_content=False)
        except ApiException as exc:
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


# -- helm ----------------------------------------------------------------------------------------------
def helm_history(settings: Settings, kubeconfig: str) -> list[dict[str, Any]]:
    """The release's revisions, oldest first (ToolError with helm's last line when it fails)."""
    from tools.helm import helm_binary
    from tools.runner import run

    command = [helm_binary(), "history", settings.release, "-n", settings.namespace, "--kubeconfig", kubeconfig]
    proc = run([*command, "--max", "100", "-o", "json"], check=False)
    if proc.returncode != 0:
        last = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()][-1:]
        raise ToolError(f"helm history {settings.release} failed: {last[0] if last else proc.returncode}")
    try:
        return sorted(json.loads(proc.stdout or "[]"), key=lambda h: h.get("revision", 0))
    except ValueError:
        raise ToolError("helm history did not answer JSON: check the helm version (3.x or 4.x)") from None


def rollback(settings: Settings, kubeconfig: str) -> tuple[Check, int | None]:
    """`helm rollback` to the latest earlier revision that was deployed. Returns the check and that revision."""
    from tools.helm import helm_binary
    from tools.runner import run

    start = time.monotonic()
    try:
        history = helm_history(settings, kubeconfig)
    except ToolError as exc:
        return Check("rollback", "failed", time.monotonic() - start, str(exc)), None
    if not history:
        return Check("rollback", "failed", time.monotonic() - start, f"release {settings.release} not found"), None
    current = history[-1]["revision"]
    earlier = [h for h in history if h["revision"] < current and h.get("status") in ("superseded", "deployed")]
    if not earlier:
        detail = f"no earlier deployed revision than {current} to roll back to (first install?)"
        return Check("rollback", "failed", time.monotonic() - start, detail), None
    target = earlier[-1]["revision"]
    REPORTER.info(f"rolling back release {settings.release} from revision {current} to {target}")
    try:
        command = [helm_binary(), "rollback", settings.release, str(target), "-n", settings.namespace]
        run([*command, "--kubeconfig", kubeconfig], what="helm rollback")
    except ToolError as exc:
        return Check("rollback", "failed", time.monotonic() - start, str(exc)), None
    return Check("rollback", "ok", time.monotonic() - start, f"revision {current} -> {target}"), target


def chart_revision(settings: Settings, kubeconfig: str) -> str:
    try:
        history = helm_history(settings, kubeconfig)
    except ToolError as exc:
        return f"unknown ({exc})"
    if not history:
        return "unknown (no helm history)"
    last = history[-1]
    chart, app = last.get("chart"), last.get("app_version")
    return f"revision {last.get('revision')} ({last.get('status')}), chart {chart}, app {app}"


# -- images and secrets -----------------------------------------------------------------------------------
def image_rows(
    cluster: Cluster, names: Sequence[str], expected: dict[str, dict[str, str]]
) -> tuple[list[list[str]], list[str]]:
    """Rows (component, deployed reference, running digest, built by build_push) and mismatch warnings."""
    rows, warnings = [], []
    for name in names:
        deployment = cluster.objects["deployments"].get(name) or {}
        component = _labels(deployment).get(COMPONENT_LABEL) or name
        containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        running = {
            c.get("name"): (c.get("imageID") or "").rpartition("@")[2]
            for pod in cluster.pods_of(deployment)
            for c in (pod.get("status") or {}).get("containerStatuses") or []
        }
        for container in containers:
            image = container.get("image") or ""
            built = expected.get(component)
            built_text = ""
            if built:
                built_text = f"{built['repository']}:{built.get('tag', '')}" + (
                    f"@{built['digest']}" if built.get("digest") else ""
                )
                digest, tag = built.get("digest"), built.get("tag")
                if not ((digest and digest in image) or (tag and image.endswith(f":{tag}"))):
                    warnings.append(f"{name} runs {image}, but build_push built {built_text}")
            rows.append([component, image, running.get(container.get("name")) or "-", built_text or "-"])
    return rows, warnings


def register_release_secrets(cluster: Cluster) -> None:
    """Redact the release's secret values too (generated by make_secrets, so not in the settings)."""
    for secret_name in (BACKEND_SECRET, FRONTEND_SECRET):
        try:
            response = cluster.core.read_namespaced_secret(
                secret_name, cluster.namespace, _preload_content=False, _request_timeout=API_TIMEOUT
            )
            secret = json.loads(response.data or b"{}")
        except Exception:
            continue
        values = [v for k, v in (secret.get("stringData") or {}).items() if k in SECRET_VARS]
        for key, encoded in (secret.get("data") or {}).items():
            if key in SECRET_VARS:
                with suppress(ValueError):
                    values.append(base64.b64decode(encoded).decode("utf-8"))
        REPORTER.register_secrets(values)


# -- report ----------------------------------------------------------------------------------------------
def _print_check(check: Check) -> None:
    """One line per check; a failure not yet told goes to stderr with an ::error annotation."""
    message = f"{check.name}: {check.detail}"
    if check.status == "failed" and not check.reported:
        REPORTER.line("error", message, check.seconds, stream=REPORTER.err)
        REPORTER.annotate("error", message, title=check.name)
        return
    status = {"failed": "error", "warning": "warn"}.get(check.status, check.status)
    REPORTER.line(status, message, check.seconds, stream=REPORTER.err if check.status == "failed" else None)


def write_summary(
    settings: Settings,
    checks: Sequence[Check],
    revision: str,
    images: Sequence[Sequence[str]],
    addresses: Sequence[str],
    healthy: bool,
) -> None:
    failed = [c for c in checks if c.status == "failed"]
    verdict = "healthy" if healthy else "FAILED"
    REPORTER.info(f"smoke test of release {settings.release} in {settings.namespace} ({settings.cloud}): {verdict}")
    REPORTER.info(f"chart: {revision}")
    for row in images:
        REPORTER.info(f"image {row[0]}: {row[1]} (running {row[2]})")
    if failed:
        REPORTER.info(f"{len(failed)} of {len(checks)} checks failed: {', '.join(c.name for c in failed)}")
    rows = [[c.name, c.status, f"{c.seconds:.1f}s" if c.seconds is not None else "", c.detail] for c in checks]
    urls = [settings["FRONTEND_URL"], settings["API_URL"]]
    parts = [
        f"### Smoke test: release `{settings.release}` in `{settings.namespace}` ({settings.cloud}): {verdict}",
        f"**Chart**: {revision}",
        markdown_table(["check", "result", "time", "detail"], rows),
    ]
    if images:
        parts.append(markdown_table(["image", "deployed", "running digest", "built (images.json)"], images))
    url_text = ", ".join(urls) + (f" (Ingress address: {', '.join(addresses)})" if addresses else "")
    parts.append(f"**URLs**: {url_text}")
    REPORTER.summary("\n\n".join(parts))


# -- main ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.splitlines()[0], dry_run=False)
    p.add_argument("--images", metavar="PATH", help="build_push's out/images.json: compare with what runs")
    p.add_argument(
        "--deadline",
        type=_seconds,
        default=DEFAULT_DEADLINE,
        metavar="SECONDS",
        help="seconds a rollout may take (300)",
    )
    p.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="seconds a pod may stay Unschedulable (20)",
    )
    p.add_argument("--no-rollback", action="store_true", help="on failure, leave the release as it is")
    p.add_argument("--no-endpoints", action="store_true", help="skip the Ingress address and the HTTPS checks")
    p.add_argument(
        "--address",
        metavar="HOST[:PORT]|ingress",
        help="send the HTTPS checks there (with the real Host and SNI): for when DNS is not set yet",
    )
    p.add_argument("--ca-bundle", metavar="PATH", help="CA certificates to trust for the HTTPS checks")
    p.add_argument(
        "--request-timeout",
        type=_seconds,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="seconds per request (10)",
    )
    p.add_argument(
        "--endpoint-deadline",
        type=_seconds,
        default=DEFAULT_ENDPOINT_DEADLINE,
        metavar="SECONDS",
        help="seconds for the Ingress address and the HTTPS checks together (180)",
    )
    p.add_argument("--no-storage-check", action="store_true", help="skip the user storage check")
    p.add_argument("--storage-bucket", metavar="NAME", help="bucket for the storage check (default: the database's)")
    p.add_argument(
        "--storage-deadline",
        type=_seconds,
        default=DEFAULT_STORAGE_DEADLINE,
        metavar="SECONDS",
        help="seconds for the storage pod (180)",
    )
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


@main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ca_bundle and not os.path.isfile(args.ca_bundle):
        raise UsageError(f"--ca-bundle {args.ca_bundle} is not a file")
    settings = settings_from(args)
    cloud = cloud_for(settings)
    with cloud.cluster_access() as kubeconfig:
        return smoke_test(settings, kubeconfig, args)


def smoke_test(settings: Settings, kubeconfig: str, args: argparse.Namespace) -> int:
    from tools.kube import api_client as kube_client

    expected = _load_images(args.images)
    revision = chart_revision(settings, kubeconfig)
    kinds = ["deployments", "replicasets", "pods", "events"] + ([] if args.no_endpoints else ["ingresses"])
    checks: list[Check] = []
    addresses: list[str] = []
    with (
        kube_client(kubeconfig) as api_client,
        Cluster(api_client, settings.namespace, kinds) as cluster,
    ):
        register_release_secrets(cluster)
        names = release_deployments(cluster, settings.release)
        checks += check_rollout(cluster, names, args.deadline, args.grace, "rollout")
        if args.no_endpoints:
            checks.append(Check("endpoints", "skipped", None, "--no-endpoints"))
        elif _healthy(checks):
            endpoint_checks, addresses = check_endpoints(cluster, settings, args)
            checks += endpoint_checks
        else:
            checks.append(Check("endpoints", "skipped", None, "not run: the rollout failed"))
        if args.no_storage_check:
            checks.append(Check("user storage", "skipped", None, "--no-storage-check"))
        elif _healthy(checks):
            checks.append(check_storage(cluster, settings, args))
            _print_check(checks[-1])
        else:
            checks.append(Check("user storage", "skipped", None, "not run: an earlier check failed"))
        healthy = _healthy(checks)
        images, warnings = image_rows(cluster, names, expected)
        for warning in warnings:
            REPORTER.warning(warning, title="images")
            checks.append(Check("images", "warning", None, warning))
        if not healthy and args.no_rollback:
            checks.append(Check("rollback", "skipped", None, "--no-rollback: the release is left as it is"))
        elif not healthy:
            check, target = rollback(settings, kubeconfig)
            _print_check(check)
            checks.append(check)
            if target is not None:
                cluster.refresh_deployments(names)
                checks += check_rollout(cluster, names, args.deadline, args.grace, "rollback rollout")
                revision += f"; rolled back to revision {target}"
                images, _ = image_rows(cluster, names, expected)  # what runs now
    write_summary(settings, checks, revision, images, addresses, healthy)
    return 0 if healthy else 1


def _healthy(checks: Sequence[Check]) -> bool:
    return all(c.status in ("ok", "skipped", "warning") for c in checks)


def _load_images(path: str | None) -> dict[str, dict[str, str]]:
    if not path:
        return {}
    from tools.build_push import load_images

    return load_images(path)


# -- small helpers ----------------------------------------------------------------------------------------
def _name(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


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


def _colon(text: str | None) -> str:
    return f": {text}" if text else ""


def _json(text: str | None, default: Any, name: str) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        raise ToolError(f"{name} in the chart's user-environment ConfigMap is not JSON") from None


def _api_message(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or ""
    except Exception:
        return ""


def _short_error(exc: BaseException) -> str:
    """The innermost useful sentence of a requests/urllib3 error."""
    text = str(exc)
    for pattern in (r"\[SSL: [A-Z_]+\] ([^(]+)", r"Caused by \w+\('?(.+?)'?\)\)?$", r"\] ([^\]]+)$"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip(" '\")")
    return text[:200]


if __name__ == "__main__":
    raise SystemExit(main())
