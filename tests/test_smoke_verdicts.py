"""The rollout judgement (tools/smoke/verdicts.py) cause by cause, on pod and Deployment objects as the
API server returns them (no cluster: tests/test_smoke_test.py and tests/test_cluster_smoke.py watch
the same verdicts reached on a stand-in and on a real kubelet), and the tables' order against the
order the module documents."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tools.smoke import verdicts
from tools.smoke.verdicts import (
    CONTAINER_CAUSES,
    CRASH_HINTS,
    DEPLOYMENT_CAUSES,
    FATAL_WAITING,
    NEVER_STARTED,
    POD_CAUSES,
    container_cause,
    crashed_again,
    deployment_problem,
    failed_for_good,
    failed_mount,
    failed_pod,
    pod_problem,
    progress_deadline_exceeded,
    replica_failure,
    restarting_back_off,
    rollout_state,
    stuck_waiting,
    unschedulable,
)

WORKLOAD = "cmb-backend"
POD = "cmb-backend-5d9c7-x2x4q"


def container(name: str = "backend", restarts: int = 0, **state: Any) -> dict[str, Any]:
    """A containerStatuses entry; `state` holds waiting/running/terminated, `last` the lastState's terminated."""
    last = state.pop("last", None)
    status: dict[str, Any] = {"name": name, "ready": False, "restartCount": restarts, "state": state}
    if last:
        status["lastState"] = {"terminated": last}
    return status


def pod(
    *containers: dict[str, Any],
    phase: str = "Pending",
    restart: str = "Always",
    init: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": POD},
        "spec": {"restartPolicy": restart, "volumes": volumes or []},
        "status": {
            "phase": phase,
            "initContainerStatuses": init or [],
            "containerStatuses": list(containers),
            "conditions": conditions or [],
            **status,
        },
    }


def event(reason: str, message: str) -> dict[str, Any]:
    return {"reason": reason, "message": message, "involvedObject": {"kind": "Pod", "name": POD}}


def deployment(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": WORKLOAD, "generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2, "conditions": list(conditions), **status},
    }


WAITING = {"waiting": {"reason": "ContainerCreating"}}
RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
CRASHED = {"exitCode": 1, "reason": "Error"}
BACK_OFF = event("BackOff", f"Back-off restarting failed container backend in pod {POD}_ns(uid)")
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/1 nodes are available: 1 Insufficient memory.",
}
BUCKET_VOLUME = {"name": "user-data", "csi": {"driver": "gcsfuse.csi.storage.gke.io"}}
SECRET_VOLUME = {"name": "secrets", "secret": {"secretName": "cmb-backend-secrets"}}


# -- the order ------------------------------------------------------------------------------------------
def documented_order() -> list[str]:
    """The cause names of the module docstring's numbered lists, in the order they are written."""
    return re.findall(r"^\s*\d+\. `(\w+)`", verdicts.__doc__ or "", re.MULTILINE)


def test_the_tables_try_the_causes_in_the_documented_order() -> None:
    tables: list[str] = []
    for cause in POD_CAUSES:
        tables.append(cause.__name__)
        if cause is container_cause:
            tables += [c.__name__ for c in CONTAINER_CAUSES]
    tables += [c.__name__ for c in DEPLOYMENT_CAUSES]
    assert len(tables) == 10
    assert documented_order() == tables


@pytest.mark.parametrize(
    ("first", "then", "workload_pod", "events", "want"),
    [
        # a container's own state before the kubelet's BackOff event
        (
            "container_cause",
            "restarting_back_off",
            pod(container(restarts=2, waiting={"reason": "ImagePullBackOff"})),
            [BACK_OFF],
            "ImagePullBackOff",
        ),
        # a crash loop before a mount failure the pod also had
        (
            "restarting_back_off",
            "failed_mount",
            pod(container(restarts=1, **WAITING), volumes=[BUCKET_VOLUME]),
            [event("FailedMount", 'MountVolume.SetUp failed for volume "user-data"'), BACK_OFF],
            "CrashLoopBackOff",
        ),
        # a failed run-once pod is failed, whatever it could not mount
        (
            "failed_pod",
            "failed_mount",
            pod(phase="Failed", restart="Never", volumes=[BUCKET_VOLUME], reason="DeadlineExceeded"),
            [event("FailedMount", 'MountVolume.SetUp failed for volume "user-data"')],
            "DeadlineExceeded",
        ),
        # a scheduled pod that cannot mount is not unschedulable any more
        (
            "failed_mount",
            "unschedulable",
            pod(container(**WAITING), volumes=[BUCKET_VOLUME], conditions=[UNSCHEDULABLE]),
            [event("FailedMount", 'MountVolume.SetUp failed for volume "user-data"')],
            "FailedMount",
        ),
    ],
    ids=["container-before-back-off", "back-off-before-mount", "failed-before-mount", "mount-before-unschedulable"],
)
def test_of_two_causes_the_earlier_in_the_table_is_the_verdict(
    first: str, then: str, workload_pod: dict[str, Any], events: list[dict[str, Any]], want: str
) -> None:
    names = [c.__name__ for c in POD_CAUSES]
    assert names.index(first) < names.index(then)
    later = getattr(verdicts, then)(WORKLOAD, workload_pod, events)
    assert later is not None, f"{then} holds too, so the order decides"
    problem = pod_problem(WORKLOAD, workload_pod, events)
    assert problem is not None and problem.reason == want


def test_a_waiting_state_comes_before_the_crash_it_follows() -> None:
    looping = container(restarts=3, waiting={"reason": "CrashLoopBackOff", "message": "back-off 40s"}, last=CRASHED)
    assert crashed_again(WORKLOAD, pod(looping), looping) is not None
    problem = pod_problem(WORKLOAD, pod(looping, phase="Running"), [])
    assert (
        problem is not None
        and problem.reason == "CrashLoopBackOff"
        and problem.detail == "3 restarts, last exit code 1 Error"
    )


def test_the_first_failing_container_is_judged_before_any_later_cause() -> None:
    """Container by container (init containers first), each against CONTAINER_CAUSES in order."""
    crashing_init = container("migrate", restarts=1, terminated=CRASHED)
    not_pulled = container("backend", waiting={"reason": "ImagePullBackOff"})
    problem = container_cause(WORKLOAD, pod(not_pulled, init=[crashing_init]), [])
    assert problem is not None and (problem.container, problem.reason) == ("migrate", "Error")
    problem = container_cause(WORKLOAD, pod(container("sidecar", running={}), not_pulled), [])
    assert problem is not None and (problem.container, problem.reason) == ("backend", "ImagePullBackOff")


def test_a_healthy_pod_and_deployment_have_no_verdict() -> None:
    healthy = pod(container(**RUNNING), phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    assert [cause(WORKLOAD, healthy, [event("Started", "Started container backend")]) for cause in POD_CAUSES] == [
        None
    ] * len(POD_CAUSES)
    assert pod_problem(WORKLOAD, healthy, []) is None
    rolled = deployment(updatedReplicas=1, replicas=1, availableReplicas=1)
    assert deployment_problem(rolled) is None
    assert rollout_state(rolled) == (True, "1/1 ready", None)


# -- container causes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", sorted(FATAL_WAITING))
def test_stuck_waiting_fails_at_once_with_the_states_hint(reason: str) -> None:
    status = container(restarts=1, waiting={"reason": reason, "message": "why"}, last=CRASHED)
    problem = stuck_waiting(WORKLOAD, pod(status), status)
    assert problem is not None
    assert (problem.reason, problem.message, problem.pod, problem.container) == (reason, "why", POD, "backend")
    assert problem.hint == FATAL_WAITING[reason] and not problem.grace
    assert problem.logs == (reason not in NEVER_STARTED)
    assert problem.previous and problem.detail == "1 restart, last exit code 1 Error"


@pytest.mark.parametrize("state", [WAITING, {"waiting": {"reason": "PodInitializing"}}, RUNNING])
def test_stuck_waiting_lets_states_that_heal_pass(state: dict[str, Any]) -> None:
    status = container(**state)
    assert stuck_waiting(WORKLOAD, pod(status), status) is None


def test_crashed_again_after_a_restart() -> None:
    ended = container(restarts=1, terminated={"exitCode": 2, "reason": "Error"}, last=CRASHED)
    problem = crashed_again(WORKLOAD, pod(ended), ended)
    assert problem is not None and problem.reason == "Error"
    assert problem.message == "exited with code 2 again after 1 restart, last exit code 1 Error"
    assert problem.hint == CRASH_HINTS["Error"] and not problem.previous  # the current instance ended

    restarted = container(restarts=2, running={}, last={"exitCode": 137, "reason": "OOMKilled"})
    problem = crashed_again(WORKLOAD, pod(restarted), restarted)
    assert problem is not None and problem.reason == "OOMKilled"
    assert problem.hint == CRASH_HINTS["OOMKilled"] and problem.previous  # the previous instance crashed


@pytest.mark.parametrize(
    ("status", "restart"),
    [
        (container(restarts=1, running={}, last=CRASHED), "Always"),  # one crash it survived
        (container(restarts=0, terminated=CRASHED), "Always"),  # never restarted yet
        (container(restarts=3, running={}, last={"exitCode": 0, "reason": "Completed"}), "Always"),
        (container(restarts=1, terminated=CRASHED), "Never"),  # failed_for_good's case
    ],
    ids=["one-crash", "first-exit", "clean-exits", "never-restarted"],
)
def test_crashed_again_is_not_a_single_crash_or_a_clean_exit(status: dict[str, Any], restart: str) -> None:
    assert crashed_again(WORKLOAD, pod(status, restart=restart), status) is None


def test_failed_for_good_in_a_pod_that_is_never_restarted() -> None:
    ended = container("check", terminated={"exitCode": 3, "reason": "Error", "message": "read back something else"})
    problem = failed_for_good(WORKLOAD, pod(ended, restart="Never"), ended)
    assert problem is not None and (problem.reason, problem.container) == ("Error", "check")
    assert problem.message == "exited with code 3: read back something else"
    assert failed_for_good(WORKLOAD, pod(ended, restart="Always"), ended) is None
    done = container("check", terminated={"exitCode": 0, "reason": "Completed"})
    assert failed_for_good(WORKLOAD, pod(done, restart="Never"), done) is None


# -- pod causes ---------------------------------------------------------------------------------------------
def test_restarting_back_off_names_the_container_of_the_event() -> None:
    sidecar = container("sidecar", running={})
    backend = container("backend", restarts=1, running={}, last={"exitCode": 137, "reason": "OOMKilled"})
    problem = restarting_back_off(WORKLOAD, pod(sidecar, backend, phase="Running"), [BACK_OFF])
    assert problem is not None and (problem.container, problem.reason) == ("backend", "OOMKilled")
    assert problem.hint == CRASH_HINTS["OOMKilled"] and problem.previous
    assert problem.message == BACK_OFF["message"] and problem.detail == "1 restart, last exit code 137 OOMKilled"

    plain = container("backend", restarts=1, running={}, last=CRASHED)
    problem = restarting_back_off(WORKLOAD, pod(plain, phase="Running"), [BACK_OFF])
    assert problem is not None and problem.reason == "CrashLoopBackOff"


@pytest.mark.parametrize(
    ("events", "restart"),
    [
        ([event("BackOff", 'Back-off pulling image "cmb/backend:v2"')], "Always"),  # not a restart
        ([BACK_OFF], "Never"),
        ([], "Always"),
    ],
    ids=["pull-back-off", "never-restarted", "no-event"],
)
def test_restarting_back_off_needs_a_restart_back_off(events: list[dict[str, Any]], restart: str) -> None:
    assert restarting_back_off(WORKLOAD, pod(container(running={}), restart=restart), events) is None


def test_failed_pod_only_when_it_is_never_restarted() -> None:
    failed = pod(restart="Never", phase="Failed", reason="DeadlineExceeded", message="active deadline passed")
    problem = failed_pod(WORKLOAD, failed, [])
    assert problem is not None and (problem.reason, problem.message, problem.pod) == (
        "DeadlineExceeded",
        "active deadline passed",
        POD,
    )
    assert failed_pod(WORKLOAD, pod(restart="Always", phase="Failed"), []) is None
    assert failed_pod(WORKLOAD, pod(restart="Never", phase="Succeeded"), []) is None


def test_failed_mount_of_a_bucket_volume_is_fatal_and_of_another_volume_waits_for_the_grace() -> None:
    volumes = [BUCKET_VOLUME, SECRET_VOLUME]
    bucket = event("FailedMount", 'MountVolume.SetUp failed for volume "user-data" : gcsfuse: bucket access denied')
    problem = failed_mount(WORKLOAD, pod(volumes=volumes), [bucket])
    assert problem is not None and problem.reason == "FailedMount" and not problem.grace and not problem.logs
    assert "'user-data' cannot be mounted" in problem.hint

    listed = event("FailedMount", "Unable to attach or mount volumes: unmounted volumes=[secrets], unattached ...")
    problem = failed_mount(WORKLOAD, pod(volumes=volumes), [bucket, listed])  # the latest event counts
    assert problem is not None and problem.grace and problem.hint == "a volume cannot be mounted"

    attach = event("FailedAttachVolume", "AttachVolume.Attach failed: unmounted volumes=[user-data secrets]")
    problem = failed_mount(WORKLOAD, pod(volumes=volumes), [attach])
    assert problem is not None and problem.reason == "FailedAttachVolume" and not problem.grace


def test_failed_mount_is_history_once_the_pod_runs() -> None:
    bucket = event("FailedMount", 'MountVolume.SetUp failed for volume "user-data"')
    assert failed_mount(WORKLOAD, pod(phase="Running", volumes=[BUCKET_VOLUME]), [bucket]) is None
    assert failed_mount(WORKLOAD, pod(volumes=[BUCKET_VOLUME]), [event("Scheduled", "assigned")]) is None


def test_unschedulable_waits_for_the_grace_and_yields_to_a_scale_up() -> None:
    pending = pod(conditions=[UNSCHEDULABLE])
    problem = unschedulable(WORKLOAD, pending, [])
    assert problem is not None and problem.reason == "Unschedulable" and problem.grace and not problem.logs
    assert problem.message == UNSCHEDULABLE["message"]
    assert unschedulable(WORKLOAD, pending, [event("TriggeredScaleUp", "pod triggered scale-up")]) is None
    assert unschedulable(WORKLOAD, pod(phase="Running", conditions=[UNSCHEDULABLE]), []) is None
    assert unschedulable(WORKLOAD, pod(conditions=[{**UNSCHEDULABLE, "reason": "SchedulingGated"}]), []) is None


# -- Deployment causes ----------------------------------------------------------------------------------------
PROGRESS_DEADLINE = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "cmb-backend-5d9c7" has timed out progressing.',
}
REPLICA_FAILURE = {
    "type": "ReplicaFailure",
    "status": "True",
    "reason": "FailedCreate",
    "message": 'pods "cmb-backend-5d9c7-" is forbidden: exceeded quota',
}


def test_progress_deadline_exceeded_is_fatal() -> None:
    problem = progress_deadline_exceeded(deployment(PROGRESS_DEADLINE))
    assert problem is not None and problem.reason == "ProgressDeadlineExceeded" and not problem.grace
    assert (problem.workload, problem.message) == (WORKLOAD, PROGRESS_DEADLINE["message"])
    assert progress_deadline_exceeded(deployment({**PROGRESS_DEADLINE, "reason": "ReplicaSetUpdated"})) is None


def test_replica_failure_waits_for_the_grace() -> None:
    problem = replica_failure(deployment(REPLICA_FAILURE))
    assert problem is not None and (problem.reason, problem.grace, problem.logs) == ("FailedCreate", True, False)
    assert replica_failure(deployment({**REPLICA_FAILURE, "status": "False"})) is None


def test_a_deployment_that_gave_up_is_judged_before_its_replica_failure() -> None:
    both = deployment(REPLICA_FAILURE, PROGRESS_DEADLINE)
    assert replica_failure(both) is not None
    problem = deployment_problem(both)
    assert problem is not None and problem.reason == "ProgressDeadlineExceeded"


@pytest.mark.parametrize(
    ("metadata", "status", "want"),
    [
        ({"generation": 3}, {"observedGeneration": 2}, "the controller has not seen generation 3 yet (observed 2)"),
        ({}, {"updatedReplicas": 0}, "0 of 1 replicas updated to the new revision"),
        ({}, {"updatedReplicas": 1, "replicas": 2}, "1 old replica(s) still terminating"),
        ({}, {"updatedReplicas": 1, "replicas": 1, "availableReplicas": 0}, "0 of 1 updated replicas available"),
    ],
)
def test_rollout_state_says_what_it_waits_for(metadata: dict[str, Any], status: dict[str, Any], want: str) -> None:
    waiting = deployment(**status)
    waiting["metadata"].update(metadata)
    assert rollout_state(waiting) == (False, want, None)
