"""Benchmark: how fast smoke_test diagnoses a failing pod (`make bench-smoke`).

Real cluster (the test bed's kit, or $CMB_TEST_KUBECONFIG): the real chart is deployed with the
stand-in images, then, alternately, a backend that exits 3 at start (CrashLoopBackOff) or one
whose tag is not in the loopback registry (ImagePullBackOff) is deployed (`helm_deploy
--no-wait`) and `python -m tools.smoke_test` (default deadline and grace; endpoints, storage
check and rollback off) watches it. Each run is timed from the moment the failing pod is
created (its ADDED event, seen by this benchmark's own watch) to smoke_test's diagnosis line.
Goal: median under 3 s (a real kubelet shows CrashLoopBackOff's waiting state only after
10-40 s; `kubectl rollout status` and `helm --wait` take 300 to 600 s).

Emulator (kmock): a release whose backend pod is still creating is put into CrashLoopBackOff
or ImagePullBackOff at once, as no real kubelet does; the figure isolates the tool's own
reaction time (watch to verdict to exit).

Prints every run and min/median/max of each.
"""

from __future__ import annotations

import argparse
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


def real_cluster_runs(runs: int) -> list[tuple[str, float]] | None:
    """Diagnosis latency on a real kubelet; None when no real cluster can be had here."""
    import threading

    from tests.realcluster import Site, StandIns, create_namespace, delete_namespace
    from tests.testbed import PartUnavailable, TestBed
    from tools.kube_client import ApiError, Kube, path

    bed = TestBed()
    try:
        try:
            kubeconfig, registry = bed.cluster_with_images()
        except PartUnavailable as exc:
            print(f"real cluster: not available here ({exc})")
            return None
        env = {**os.environ, **bed.cluster_env(), "NO_COLOR": "1"}
        os.environ.update({"KUBECONFIG": kubeconfig, "DOCKER_HOST": env["DOCKER_HOST"]})
        with tempfile.TemporaryDirectory(prefix="bench-smoke-real-") as folder:
            stand_ins = StandIns.build(Path(folder), env, registry)
            namespace = create_namespace(kubeconfig, "bench-smoke")
            site = Site(Path(folder), kubeconfig, namespace, stand_ins)
            kube = Kube(kubeconfig)
            try:
                if site.secrets().returncode != 0 or site.deploy().returncode != 0:
                    raise SystemExit("real cluster: the good release did not deploy")
                results = []
                for index in range(runs):
                    state = list(STATES)[index % len(STATES)]
                    bad_image = (
                        f"{registry}/cmbtest-backend@{stand_ins.variants['crash']['digest']}"
                        if state == "CrashLoopBackOff"
                        else f"{registry}/cmbtest-backend:never-pushed"
                    )
                    created: list[float] = []

                    def follow(image: str = bad_image, seen: list[float] = created) -> None:
                        url = path("pods", namespace)
                        end = time.monotonic() + 120
                        while not seen and time.monotonic() < end:
                            try:
                                version = kube.get(url)["metadata"]["resourceVersion"]
                                for event in kube.watch(url, version, 60, lambda: bool(seen)):
                                    spec = (event.get("object") or {}).get("spec") or {}
                                    if event.get("type") == "ADDED" and spec["containers"][0]["image"] == image:
                                        seen.append(time.monotonic())
                            except ApiError:
                                time.sleep(0.05)

                    watcher = threading.Thread(target=follow, daemon=True)
                    watcher.start()
                    time.sleep(0.5)  # the watch is open
                    if state == "CrashLoopBackOff":
                        deployed = site.deploy("--no-wait", images=stand_ins.with_backend(Path(folder), "crash"))
                    else:
                        missing = {"repository": f"{registry}/cmbtest-backend", "tag": "never-pushed", "digest": ""}
                        deployed = site.deploy("--no-wait", values={"backend": {"image": missing}})
                    if deployed.returncode != 0:
                        raise SystemExit(f"run {index}: deploy failed:\n{deployed.stdout}{deployed.stderr}")
                    command = [sys.executable, "-m", "tools.smoke_test", *site.argv()]
                    command += ["--no-rollback", "--no-endpoints", "--no-storage-check"]
                    proc = subprocess.Popen(
                        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    )
                    verdict = None
                    assert proc.stderr is not None
                    for line in proc.stderr:
                        if "rollout failed:" in line:
                            verdict = time.monotonic()
                            break
                    out, err = proc.communicate(timeout=300)
                    watcher.join(10)
                    if verdict is None or not created:
                        raise SystemExit(f"run {index}: no diagnosis (exit {proc.returncode}):\n{out}{err}")
                    took = verdict - created[0]
                    results.append((state, took))
                    print(
                        f"real cluster run {index + 1:2d}: {state:<17} diagnosed {took:.2f}s after the pod was created"
                    )
                    if site.deploy().returncode != 0:  # back to the good release for the next run
                        raise SystemExit(f"run {index}: the good release did not come back")
                return results
            finally:
                delete_namespace(kubeconfig, namespace)
    finally:
        bed.stop()


def _stats(label: str, results: list[tuple[str, float]], goal: float) -> bool:
    times = [t for _, t in results]
    median = statistics.median(times)
    by_state = ", ".join(
        f"{state} median {statistics.median([t for s, t in results if s == state]):.2f}s"
        for state in STATES
        if any(s == state for s, _ in results)
    )
    print(
        f"{label}: {len(times)} runs, min {min(times):.2f}s, median {median:.2f}s, max {max(times):.2f}s "
        f"({by_state}; goal: median < {goal:.0f}s)"
    )
    return median < goal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="emulator runs (at least 10; default 12)")
    parser.add_argument("--real-runs", type=int, default=6, help="real-cluster runs (default 6; 0: none)")
    args = parser.parse_args(argv)
    if args.runs < 10:
        parser.error("--runs must be at least 10")
    sys.path.insert(0, str(REPO_ROOT))
    real = real_cluster_runs(args.real_runs) if args.real_runs > 0 else None
    emulated = emulator_runs(args.runs)
    ok = True
    if real:
        ok = _stats("real cluster", real, 3.0)
    ok = _stats("emulator", emulated, 2.0) and ok
    return 0 if ok else 1


def emulator_runs(runs: int) -> list[tuple[str, float]]:
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
            for index in range(runs):
                state = list(STATES)[index % len(STATES)]
                took = one_run(core, apps, env, Path(workdir), index, state)
                results.append((state, took))
                print(f"emulator run {index + 1:2d}: {state:<17} detected and exited in {took:.3f}s", flush=True)
        return results
    finally:
        bed.stop()


if __name__ == "__main__":
    raise SystemExit(main())
