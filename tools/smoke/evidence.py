"""The evidence for a failing rollout: a pod's last events and log lines, and the hint, printed
with an ::error annotation; after a deadline, what each unfinished Deployment still waits for."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tools.report import REPORTER
from tools.smoke import objects
from tools.smoke.cache import Cluster
from tools.smoke.results import Outcome
from tools.smoke.verdicts import Problem

LOG_LINES = 20
EVENT_LINES = 5
# An image without a variant for the node's CPU: containerd's pull refuses it ("no match for platform in
# manifest", https://github.com/containerd/containerd/pull/2410) or the kernel refuses its program
# ("exec format error", https://github.com/k3s-io/k3s/issues/2912); seen in the pod's status message,
# its events or the container's log: then that is the hint, whatever the verdict's cause.
WRONG_CPU = re.compile(r"exec format error|no match for platform in manifest")
WRONG_CPU_HINT = (
    "the image was built for another CPU architecture: build it for the nodes' (IMAGE_PLATFORMS, e.g. "
    "linux/amd64 or linux/amd64,linux/arm64; make build) and deploy again"
)


def container_logs(api: Any, namespace: str, pod: str, container: str, previous: bool) -> tuple[list[str], str]:
    """The last log lines of a container, and which instance they are from (or why there are none)."""
    from tools.kube_client import ApiError, path

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


def _event_stamp(event: dict[str, Any]) -> str:
    stamp = objects.event_time(event)
    match = re.search(r"T(\d\d:\d\d:\d\d)", stamp)
    return f"{match.group(1)} " if match else ""
