"""The watch cache: the objects of one namespace, kept current by one Kubernetes watch per kind.

The rollout, endpoint and storage checks read it and react to each change as it happens;
they never poll the API server.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from tools.errors import ToolError
from tools.kube_ops import RELEASE_ANNOTATION
from tools.report import REPORTER
from tools.smoke import objects

API_TIMEOUT = 10.0  # one Kubernetes API call
WATCH_SECONDS = 60  # a watch is reopened (after a fresh list) at least this often


# -- the cluster, kept current by watches -------------------------------------------------------
class Cluster:
    """Objects of one namespace, kept current by one Kubernetes watch per kind.

    Each kind has a thread that lists (replacing what it knew), then watches from the list's
    resourceVersion until the watch ends, and again. Changes reach `wait()` through a queue, so
    the caller reacts to a change as soon as it happens and never polls.
    """

    REQUIRED = ("deployments", "pods")

    def __init__(self, api: Any, namespace: str, kinds: Sequence[str]) -> None:
        from tools.kube_client import path

        self.api = api  # a tools.kube_client.Kube
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
        from tools.kube_client import ApiError

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
        from tools.kube_client import path

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
        return sorted(found, key=objects.event_time)

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
        revision = objects.annotations(deployment).get(objects.REVISION_ANNOTATION)
        if not revision:
            return None
        name = objects.name(deployment)
        for replica_set in self.objects.get("replicasets", {}).values():
            owners = (replica_set.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("kind") == "Deployment" and o.get("name") == name for o in owners) and (
                objects.annotations(replica_set).get(objects.REVISION_ANNOTATION) == revision
            ):
                return objects.labels(replica_set).get("pod-template-hash")
        return None


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
