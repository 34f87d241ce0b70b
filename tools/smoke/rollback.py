"""The release's helm history as smoke_test reads it: the revision judged, and the rollback of an unhealthy
one under the release's lock (the rule of which revision to go back to, and when not to: tools/helm.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from tools.cli import stage
from tools.errors import ToolError
from tools.lease import ReleaseLock
from tools.report import REPORTER
from tools.settings import Settings
from tools.smoke.results import Check


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


def chart_revision(settings: Settings, kubeconfig: str) -> tuple[str, int | None]:
    """What is judged: a line for the report, and the revision number (None: unknown)."""
    try:
        history = helm_history(settings, kubeconfig)
    except ToolError as exc:
        return f"unknown ({exc})", None
    if not history:
        return "unknown (no helm history)", None
    last = history[-1]
    chart, app = last.get("chart"), last.get("app_version")
    return f"revision {last.get('revision')} ({last.get('status')}), chart {chart}, app {app}", last.get("revision")


def rollback(settings: Settings, kubeconfig: str, ours: int | None, lock: ReleaseLock) -> tuple[Check, int | None]:
    """`helm rollback` of revision `ours` (judged, or made by this run's deploy) to the revision the one rule
    (tools/helm.py rollback_target) names, holding the release's lock. Returns the check and the revision
    rolled back to."""

    start = time.monotonic()
    try:
        with lock:
            return _rollback(settings, kubeconfig, ours, lock, start)
    except ToolError as exc:  # the lock: held by another writer too long, or the API refused
        return Check("rollback", "failed", time.monotonic() - start, str(exc)), None


def _rollback(
    settings: Settings, kubeconfig: str, ours: int | None, lock: ReleaseLock, start: float
) -> tuple[Check, int | None]:
    """The rollback under the lock: the history read again there, so another writer's newer revision is left."""
    from tools.helm import helm_binary, rollback_refusal, rollback_target
    from tools.runner import run

    try:
        history = helm_history(settings, kubeconfig)
    except ToolError as exc:
        return Check("rollback", "failed", time.monotonic() - start, str(exc)), None
    if not history:
        return Check("rollback", "failed", time.monotonic() - start, f"release {settings.release} not found"), None
    current = history[-1]["revision"]
    refusal = rollback_refusal(settings.release, ours, (current, str(history[-1].get("status"))), made=False)
    if refusal:
        return Check("rollback", "skipped", time.monotonic() - start, refusal), None
    target = rollback_target(((h["revision"], str(h.get("status"))) for h in history), current)
    if target is None:
        detail = f"no earlier deployed revision than {current} to roll back to (first install?)"
        return Check("rollback", "failed", time.monotonic() - start, detail), None
    REPORTER.info(f"rolling back release {settings.release} from revision {current} to {target}")
    lock.writing(current + 1)
    then = "the next helm_deploy recovers the unfinished rollback at once"
    try:
        command = [helm_binary(), "rollback", settings.release, str(target), "-n", settings.namespace]
        with stage(f"while rolling release {settings.release} back to revision {target}", then):
            run([*command, "--kubeconfig", kubeconfig], what="helm rollback")
    except ToolError as exc:
        return Check("rollback", "failed", time.monotonic() - start, str(exc)), None
    return Check("rollback", "ok", time.monotonic() - start, f"revision {current} -> {target}"), target
