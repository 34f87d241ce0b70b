"""What `make demo` prints at the end: the release that runs, its images and pods, the commands to look at,
open and stop it, and the seconds per step of each run so far (kept in the demo's figures file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tools import kube_ops
from tools.helm import helm_binary
from tools.images import load_images
from tools.kube_client import path
from tools.report import REPORTER
from tools.runner import run


def print_summary(release: str, namespace: str, env: dict[str, str], kubeconfig: str, images: Path) -> None:
    """What runs now, read from the cluster (not assumed from the chain's exit code), and what to do next."""
    status = run(
        [helm_binary(), "status", release, "-n", namespace, "-o", "json", "--kubeconfig", kubeconfig],
        env={**os.environ, **env},
        what="helm status",
    )
    info = json.loads(status.stdout)
    REPORTER.ok(f"demo: release {release} revision {info['version']} {info['info']['status']} in namespace {namespace}")
    for name, image in load_images(images).items():
        REPORTER.info(f"image {name:<9} {image['repository']}@{image['digest']}")
    api = kube_ops.api_client(kubeconfig)
    pods = kube_ops.call(api, lambda: api.get(path("pods", namespace)), "listing the demo's pods") or {}
    for pod in pods.get("items", []):
        statuses = pod.get("status", {}).get("containerStatuses") or []
        ready = sum(1 for s in statuses if s.get("ready"))
        REPORTER.info(f"pod   {pod['metadata']['name']:<40} {pod['status'].get('phase')} {ready}/{len(statuses)} ready")
    kubectl = Path(env.get("K8S_HOME", "/nonexistent")) / "bin" / "kubectl"
    ctl = f"{kubectl if kubectl.is_file() else 'kubectl'} --kubeconfig {kubeconfig} -n {namespace}"
    REPORTER.info(f"look:  {ctl} get pods,svc,ingress")
    REPORTER.info(f"open:  {ctl} port-forward svc/{release}-frontend 8501:8501   then http://127.0.0.1:8501")
    REPORTER.info(
        "stop:  make demo-down   (again: make demo, a no-op deploy; the failure path: make demo DEMO_FAIL=crash)"
    )


def print_figures(figures_file: Path, label: str, steps: list[tuple[str, float]]) -> None:
    """Record this run's seconds per step under `label` and print every run's side by side (first vs no-op)."""
    figures = json.loads(figures_file.read_text()) if figures_file.is_file() else {}
    figures[label] = steps
    figures_file.write_text(json.dumps(figures, indent=1))
    labels = list(figures)
    REPORTER.info("figures (seconds per step)   " + "".join(f"{name:>16}" for name in labels))
    for index, (step, _) in enumerate(steps):
        cells = [figures[name][index][1] if index < len(figures[name]) else None for name in labels]
        REPORTER.info(f"  {step:<27}" + "".join(f"{c:>15.1f}s" if c is not None else f"{'-':>16}" for c in cells))
    totals = [sum(s for _, s in figures[name]) for name in labels]
    REPORTER.info(f"  {'whole chain':<27}" + "".join(f"{t:>15.1f}s" for t in totals))
