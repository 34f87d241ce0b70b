"""Benchmark: how fast smoke_test diagnoses a failing pod (`make bench-smoke`).

Starts its own Kubernetes API emulator (kmock, through tests/testbed.py) and, for each run,
a release in a fresh namespace: a Ready frontend and a backend whose pod is still creating.
It starts `python -m tools.smoke_test` (default deadline and grace; the endpoint and storage
checks and the rollback switched off, since they play no part in detection), waits until it
watches, then puts the backend pod into CrashLoopBackOff or ImagePullBackOff (alternately),
as a kubelet would, and times from that moment to smoke_test's exit with the diagnosis.
Prints every run and min/median/max. Target: median under 2 s (the anchors: 300 to 600 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.settings import REPO_ROOT

SETTLE = 0.2  # after smoke_test says it watches, so its watch requests are surely open
STATES = {
    "CrashLoopBackOff": (
        {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"},
        3,
        ("BackOff", "Back-off restarting failed container"),
    ),
    "ImagePullBackOff": (
        {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry.example/backend:missing"'},
        0,
        ("Failed", 'Failed to pull image "registry.example/backend:missing": not found'),
    ),
}


def _deployment(namespace: str, component: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": "cmbcluster", "app.kubernetes.io/component": component}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"cmbcluster-{component}",
            "namespace": namespace,
            "labels": labels,
            "annotations": {"meta.helm.sh/release-name": "cmbcluster", "meta.helm.sh/release-namespace": namespace},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": component, "image": f"registry.example/{component}:v1"}]},
            },
        },
    }


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    name = deployment["metadata"]["name"] + "-7d9f8c6b5-x2x4q"
    meta = {"name": name, "namespace": deployment["metadata"]["namespace"], "labels": template["metadata"]["labels"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def _container_status(name: str, image: str, state: dict[str, Any], ready: bool, restarts: int) -> dict[str, Any]:
    return {"name": name, "image": image, "imageID": "", "ready": ready, "restartCount": restarts, "state": state}


def prepare(core: Any, apps: Any, namespace: str) -> str:
    """A release whose frontend is Ready and whose backend pod is still being created."""
    for component in ("frontend", "backend"):
        deployment = _deployment(namespace, component)
        apps.create_namespaced_deployment(namespace, deployment, _preload_content=False)
        pod = _pod(deployment)
        core.create_namespaced_pod(namespace, pod, _preload_content=False)
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        ready = component == "frontend"
        state = {"running": {}} if ready else {"waiting": {"reason": "ContainerCreating"}}
        status = {"phase": "Running" if ready else "Pending", "containerStatuses": []}
        status["containerStatuses"].append(_container_status(component, image, state, ready, 0))
        core.patch_namespaced_pod_status(pod["metadata"]["name"], namespace, {"status": status}, _preload_content=False)
        replicas = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": int(ready), "availableReplicas": int(ready)}
        apps.patch_namespaced_deployment_status(
            deployment["metadata"]["name"], namespace, {"status": replicas}, _preload_content=False
        )
    return _pod(_deployment(namespace, "backend"))["metadata"]["name"]


def fail_pod(core: Any, namespace: str, pod: str, state: str) -> None:
    """What a kubelet reports: the event, then the container's waiting state."""
    waiting, restarts, (reason, message) = STATES[state]
    core.create_namespaced_event(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{pod}.bench", "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": 1,
        },
        _preload_content=False,
    )
    status = {
        "phase": "Running" if restarts else "Pending",
        "containerStatuses": [
            _container_status("backend", "registry.example/backend:v1", {"waiting": waiting}, False, restarts)
        ],
    }
    core.patch_namespaced_pod_status(pod, namespace, {"status": status}, _preload_content=False)


def one_run(core: Any, apps: Any, env: dict[str, str], workdir: Path, index: int, state: str) -> float:
    namespace = f"bench-{index}-{os.getpid()}"
    pod = prepare(core, apps, namespace)
    env_file = workdir / f"{namespace}.env"
    env_file.write_text(f"CLOUD_PROVIDER=local\nBASE_DOMAIN=cmb.example.org\nNAMESPACE={namespace}\n")
    command = [sys.executable, "-m", "tools.smoke_test", "--env-file", str(env_file)]
    command += ["--no-rollback", "--no-endpoints", "--no-storage-check"]
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "watching the rollout" in line:
            break
    else:
        raise SystemExit(f"run {index}: smoke_test ended before watching:\n{''.join(seen)}{proc.stderr.read()}")
    time.sleep(SETTLE)
    start = time.monotonic()
    fail_pod(core, namespace, pod, state)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - start
    diagnosis = f"rollout failed: pod {pod}, container backend: {state}"
    if proc.returncode != 1 or diagnosis not in err:
        raise SystemExit(f"run {index}: exit {proc.returncode} without the diagnosis:\n{out}{err}")
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="number of runs (at least 10; default 12)")
    args = parser.parse_args(argv)
    if args.runs < 10:
        parser.error("--runs must be at least 10")
    sys.path.insert(0, str(REPO_ROOT))
    from kubernetes import client, config

    from tests.testbed import TestBed

    bed = TestBed()
    try:
        kubeconfig = bed.kubernetes()
        api = config.new_client_from_config(config_file=kubeconfig)
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        env = {**os.environ, "KUBECONFIG": kubeconfig, "NO_COLOR": "1"}
        for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "CLOUD_PROVIDER", "NAMESPACE", "RELEASE_NAME"):
            env.pop(key, None)
        results: list[tuple[str, float]] = []
        with tempfile.TemporaryDirectory(prefix="bench-smoke-") as workdir:
            for index in range(args.runs):
                state = list(STATES)[index % len(STATES)]
                took = one_run(core, apps, env, Path(workdir), index, state)
                results.append((state, took))
                print(f"run {index + 1:2d}: {state:<17} detected and exited in {took:.3f}s", flush=True)
        times = [t for _, t in results]
        print(
            f"detection latency over {len(times)} runs: min {min(times):.3f}s, "
            f"median {statistics.median(times):.3f}s, max {max(times):.3f}s (target: median < 2s)"
        )
        print(
            json.dumps({"runs": len(times), "min": min(times), "median": statistics.median(times), "max": max(times)})
        )
        return 0 if statistics.median(times) < 2.0 else 1
    finally:
        bed.stop()


if __name__ == "__main__":
    raise SystemExit(main())
