"""What the steps ask of a cluster: Secrets, the namespace, permission checks, cluster-scoped reads.

Every API call goes through `call()`, which turns the client's errors into a `ToolError` saying
what failed and how to fix it. The client is `tools.kube_client` (imported on first use, not on
`--help`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

from tools.errors import ToolError
from tools.kube_client import ApiError, Kube, KubeApi, Unreachable, path
from tools.kube_rights import Right

T = TypeVar("T")
RELEASE_ANNOTATION = "meta.helm.sh/release-name"  # on every object Helm made for a release


def api_client(kubeconfig: str) -> Any:
    """A `tools.kube_client.Kube` for the current context of `kubeconfig`."""
    return Kube(kubeconfig)


@overload
def call(api: KubeApi, fn: Callable[..., T], what: str, missing_ok: Literal[False] = False) -> T: ...
@overload
def call(api: KubeApi, fn: Callable[..., T], what: str, missing_ok: bool) -> T | None: ...
def call(api: KubeApi, fn: Callable[..., T], what: str, missing_ok: bool = False) -> T | None:
    """Run one API call; with `missing_ok` a 404 returns None. Every other failure is one clear line."""
    try:
        return fn()
    except ApiError as exc:
        if exc.status == 404 and missing_ok:
            return None
        raise ToolError(f"{what}: {describe(exc)}") from None
    except Unreachable as exc:
        raise ToolError(
            f"{what}: cannot reach the Kubernetes API at {api.server} ({exc}): "
            "check that the cluster is running and that this kubeconfig/credentials point at it"
        ) from None


def describe(exc: Any) -> str:
    """One line for an ApiError: status, the server's message, and the fix when there is an obvious one."""
    message = exc.message or exc.reason or ""
    fixes = {
        401: "the credentials were rejected: refresh them (expired token?) and retry",
        403: "the credentials are not allowed to do this: ask a cluster admin for the permission",
    }
    fix = fixes.get(exc.status, "")
    return f"HTTP {exc.status} {message}" + (f": {fix}" if fix else "")


# -- secrets -----------------------------------------------------------------------------------
def read_secret(api: KubeApi, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's data decoded to text, or None when it does not exist."""
    secret = call(api, lambda: api.get(path("secrets", namespace, name)), f"reading Secret {namespace}/{name}", True)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode("utf-8") for k, v in (secret.get("data") or {}).items()}


def encode(values: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in values.items()}


def create_secret(api: KubeApi, namespace: str, name: str, values: dict[str, str], labels: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "data": encode(values),
    }
    call(api, lambda: api.create(path("secrets", namespace), body), f"creating Secret {namespace}/{name}")


def patch_secret(api: KubeApi, namespace: str, name: str, values: dict[str, str]) -> None:
    """Change only the given keys (a merge patch of `data`; other keys stay as they are)."""
    call(
        api,
        lambda: api.patch(path("secrets", namespace, name), {"data": encode(values)}),
        f"updating Secret {namespace}/{name}",
    )


# -- namespace ---------------------------------------------------------------------------------
def ensure_namespace(api: KubeApi, namespace: str, dry_run: bool = False) -> tuple[bool, str]:
    """Create the namespace when it is missing. Returns (settled, what happened) for the report.

    A 403 on reading means the credentials are namespace-scoped: the namespace is assumed to
    exist (the writes that follow say so if not). A server error on creating is not fatal here
    for the same reason: the next write into the namespace is the definitive answer.
    """

    def read() -> str | None:
        try:
            api.get(path("namespaces", name=namespace))
            return "exists"
        except ApiError as exc:
            if exc.status == 403:
                return "not readable with these credentials (assumed to exist)"
            if exc.status == 404:
                return None
            raise

    state = call(api, read, f"reading namespace {namespace}")
    if state:
        return True, state
    if dry_run:
        return True, "would be created"

    def create() -> tuple[bool, str]:
        try:
            api.create(path("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            return True, "created"
        except ApiError as exc:
            if exc.status == 409:
                return True, "exists"
            if exc.status in (401, 403):
                raise ToolError(
                    f"cannot create namespace {namespace}: {describe(exc)} "
                    f"(or have an admin run `kubectl create namespace {namespace}`)"
                ) from None
            return False, f"could not be created ({describe(exc)}); continuing: the next write shows whether it exists"

    return call(api, create, f"creating namespace {namespace}") or (False, "")


# -- permissions -------------------------------------------------------------------------------
def denied(api: KubeApi, namespace: str, rights: list[Right]) -> list[str]:
    """Which of `rights` the credentials lack (SelfSubjectAccessReview), e.g. ["create deployments.apps"].

    Fails closed: a review the server answers without a verdict is an error, never a yes.
    """
    refused = []
    for right in rights:
        for verb, object_name, name in right.checks():
            attributes = {"group": right.group, "resource": right.resource, "verb": verb}
            if object_name:
                attributes["name"] = object_name
            if not right.cluster_scoped:
                attributes["namespace"] = namespace
            # A review has no name: the API server refuses one with metadata (HTTP 422).
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            }
            answer = call(
                api,
                lambda r=review: api.create(path("selfsubjectaccessreviews"), r),
                "checking permissions (SelfSubjectAccessReview)",
            )
            allowed = ((answer or {}).get("status") or {}).get("allowed") if isinstance(answer, dict) else None
            if allowed is None:
                raise ToolError(
                    f"the Kubernetes API at {api.server} answered the permission check for {name} "
                    "without a verdict: it is not a conforming API server (or a proxy mangles the reply)"
                )
            if not allowed:
                refused.append(name)
    return refused


def read_cluster_object(api: KubeApi, resource: str, name: str, what: str) -> bool | None:
    """Whether a cluster-scoped object exists; None when these credentials may not read it (HTTP 403).

    Namespace-scoped deploy identities (`admin` in the namespace) cannot read cluster-scoped
    objects: the caller warns and goes on rather than refusing a deploy that would work.
    """
    found = read_cluster_objects(api, resource, what, name)
    return None if found is None else bool(found)


def read_cluster_objects(
    api: KubeApi, resource: str, what: str, name: str | None = None
) -> list[dict[str, Any]] | None:
    """The cluster-scoped object `name` ([] when missing), or every object of `resource`; None on HTTP 403."""

    def attempt() -> list[dict[str, Any]] | None:
        try:
            answer = api.get(path(resource, name=name))
        except ApiError as exc:
            if exc.status == 404 and name:
                return []
            if exc.status == 403:
                return None
            raise
        return [answer] if name else list(answer.get("items") or [])

    return call(api, attempt, f"reading {what}")


# -- ingress -------------------------------------------------------------------------------------
def status_address(ingress: dict[str, Any]) -> str:
    """The load balancer's host name or IP from an Ingress's status ('' while it has none)."""
    for entry in ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if entry.get("hostname") or entry.get("ip"):
            return entry.get("hostname") or entry.get("ip")
    return ""


def release_ingresses(api: KubeApi, namespace: str, release: str) -> list[dict[str, Any]]:
    """The Ingresses Helm made for `release` (not the user environments' ones), by name."""
    listing = call(api, lambda: api.get(path("ingresses", namespace)), f"listing Ingresses in {namespace}") or {}
    found = [
        i
        for i in listing.get("items") or []
        if ((i.get("metadata") or {}).get("annotations") or {}).get(RELEASE_ANNOTATION) == release
    ]
    return sorted(found, key=lambda i: i["metadata"]["name"])
