"""A plain cluster (kind, k3s, minikube): the user's kubeconfig, no bucket, no cloud identity."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from tools.cloud.base import Cloud
from tools.errors import ToolError


class LocalCloud(Cloud):
    """A plain cluster (kind, k3s, minikube): no cloud identity, no bucket."""

    name = "local"
    csi_driver = ""
    mount_options: ClassVar[list[str]] = []

    @property
    def ingress_class(self) -> str:  # type: ignore[override]
        return self.settings["INGRESS_CLASS"] or "nginx"

    def default_registry(self) -> str:
        return "127.0.0.1:5000"

    def storage_values(self) -> dict[str, Any]:
        return {}  # no bucket mounts: user pods get an emptyDir

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        """The user's own kubeconfig (KUBECONFIG or ~/.kube/config), pinned to KUBE_CONTEXT if given."""
        import tempfile  # with yaml: only when a cluster is reached, never for --help

        import yaml

        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
        if not os.path.exists(path):
            raise ToolError(f"no kubeconfig at {path}: set KUBECONFIG or create a cluster (kind, k3s, minikube)")
        context = self.settings["KUBE_CONTEXT"]
        if not context:
            yield path
            return
        with open(path, encoding="utf-8") as source:
            config = yaml.safe_load(source) or {}
        if context not in [c.get("name") for c in config.get("contexts") or []]:
            raise ToolError(f"KUBE_CONTEXT: context {context!r} is not in {path}: use `kubectl config get-contexts`")
        config["current-context"] = context
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=True) as handle:
            os.chmod(handle.name, 0o600)
            yaml.safe_dump(config, handle)
            handle.flush()
            yield handle.name

    def ingress_values(self) -> dict[str, Any]:
        return {"className": self.ingress_class, "certManager": {"email": self.settings["LETSENCRYPT_EMAIL"]}}
