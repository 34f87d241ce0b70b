"""The rollout watch: re-judge the release's objects on every change the watch cache sees, until
done, a verdict that will not heal (tools/smoke/verdicts.py), or the deadline; then the evidence."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tools.errors import ToolError
from tools.report import REPORTER
from tools.smoke import objects
from tools.smoke.cache import Cluster
from tools.smoke.evidence import report_problem, report_waiting
from tools.smoke.objects import COMPONENT_LABEL, REVISION_ANNOTATION
from tools.smoke.results import Check, Outcome, print_check
from tools.smoke.verdicts import Problem, deployment_problem, pod_problem, rollout_state

DEFAULT_DEADLINE = 300.0  # seconds for a rollout (and for the rollback's)
DEFAULT_GRACE = 20.0  # seconds a pod may stay Unschedulable (or fail to be created); the storage check's too


def watch_until(
    cluster: Cluster,
    deadline: float,
    grace: float,
    judge: Callable[[], tuple[list[Problem], dict[str, str], dict[str, str]]],
    poll: Callable[[], float | None] = lambda: None,
) -> Outcome:
    """Re-judge on every change until done, a fatal problem, or the deadline.

    `judge` returns (problems, still waiting {name: why}, done {name: detail}); `poll` how soon to judge again
    without a change (None: on the next change), for what no watch event announces.
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
        again = poll()
        wake = min([end, *(first + grace for first in pending.values()), *([now + again] if again else [])])
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
