"""Render the chart with real Helm (3 and 4) and look into the manifests.

Renders are cached per (helm, values, namespace, release, extra args), so every combination is
rendered once per test session however many tests look at it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.envfiles import good_env
from tests.skips import unavailable
from tools.cloud import Cloud, cloud_for
from tools.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm"
VALUES_DIR = Path(__file__).resolve().parent / "chart_values"
BIN = Path(sys.executable).parent
HELMS = {"helm4": BIN / "helm", "helm3": BIN / "helm3"}
CLOUDS = ("gcp", "aws", "local")
AUTHS = ("google", "cognito", "both")
RELEASE = "cmbcluster"
NAMESPACE = "cmbcluster"
DIGEST = "sha256:" + "ab" * 32


def helm_bin(name: str) -> str:
    """The path of `helm4` or `helm3`; skip (fail under CI) when it is not installed."""
    path = HELMS[name]
    if not path.exists():
        unavailable(f"{path} missing: run `python -m tools.install_helm --with-helm3`")
    return str(path)


@dataclass(frozen=True)
class Render:
    rc: int
    out: str
    err: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        return found[0]

    def deployment(self, component: str) -> dict[str, Any]:
        return self.one("Deployment", f"{RELEASE}-{component}")

    def container(self, component: str) -> dict[str, Any]:
        (container,) = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        return container

    def env(self, component: str) -> dict[str, Any]:
        """name -> literal value, or ('secret'|'configmap', name, key) for references."""
        out: dict[str, Any] = {}
        for item in self.container(component).get("env", []):
            assert item["name"] not in out, f"{item['name']} set twice in {component}"
            if "value" in item:
                out[item["name"]] = item["value"]
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                out[item["name"]] = ("secret", ref["name"], ref["key"])
            else:
                out[item["name"]] = ("other", item["valueFrom"])
        return out

    def pod_specs(self) -> list[dict[str, Any]]:
        return [d["spec"]["template"]["spec"] for d in self.docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]

    def configmap_data(self) -> dict[str, str]:
        return self.one("ConfigMap", f"{RELEASE}-user-environment")["data"]


def write_values(values: dict[str, Any]) -> str:
    """A values file for `values` (kept for the session: renders are cached by content).

    Written as JSON (valid YAML): yaml.safe_dump leaves a string such as 092634716137 unquoted
    and Helm then reads a number, so an AWS account id starting with 0 would break.
    """
    return _values_file(json.dumps(values, sort_keys=True, indent=1))


@functools.cache
def _values_file(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="chart-values-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def render(
    helm: str = "helm4",
    values: dict[str, Any] | None = None,
    files: tuple[str | Path, ...] = (),
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    args: tuple[str, ...] = (),
    chart: Path = CHART,
) -> Render:
    paths = tuple(str(f) for f in files) + ((write_values(values),) if values is not None else ())
    return _render(helm_bin(helm), paths, namespace, release, args, str(chart))


@functools.cache
def _render(
    helm: str, files: tuple[str, ...], namespace: str, release: str, args: tuple[str, ...], chart: str
) -> Render:
    cmd = [helm, "template", release, chart, "--namespace", namespace, *args]
    for f in files:
        cmd += ["--values", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d] if proc.returncode == 0 else []
    return Render(proc.returncode, proc.stdout, proc.stderr, docs)


def settings_for(cloud: str, auth: str = "google", **overrides: str | None):
    return load_settings(cloud=cloud, environ=good_env(cloud, auth, **overrides))


def shim(cloud: str, auth: str = "google", **overrides: str | None) -> Cloud:
    return cloud_for(settings_for(cloud, auth, **overrides))


def shim_values(cloud: str, auth: str = "google", digests: bool = False, **overrides: str | None) -> dict[str, Any]:
    """What the deploy tools pass to the chart: `Cloud.chart_values()` for a valid configuration."""
    c = shim(cloud, auth, **overrides)
    images = None
    if digests:
        images = {i.name: {"repository": i.repository, "tag": "v1.2.3", "digest": DIGEST} for i in c.images()}
    return json.loads(json.dumps(c.chart_values(images)))  # plain types only


def without_checkov(annotations: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items() if not k.startswith("checkov.io/")}


def helm_install(kubeconfig: str, folder: Path, values: dict[str, Any], namespace: str) -> subprocess.CompletedProcess:
    """`helm install` of the chart with `values` as the identity of `kubeconfig` (the simulated clouds' tests)."""
    path = folder / "values.json"
    path.write_text(json.dumps(values))
    command = [str(HELMS["helm4"]), "install", "cmbcluster", str(CHART), "-n", namespace, "-f", str(path)]
    return subprocess.run([*command, "--kubeconfig", kubeconfig], capture_output=True, text=True, check=False, cwd=REPO)
