"""Small helpers over the official `kubernetes` client: one client per kubeconfig, one-line errors.

Every API call goes through `call()`, which turns the client's exceptions into a `ToolError`
saying what failed and how to fix it. The client is imported lazily (not on `--help`).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from tools.errors import ToolError

T = TypeVar("T")
TIMEOUT = (5, 30)  # connect, read seconds for each API request
VERBS = ("get", "create", "patch", "delete")  # what helm does to each kind a release manages
# Helm's release records (Secrets in the namespace) are also listed and updated.
EXTRA_VERBS = {"Secret": ("list", "update")}
# Kinds a namespace cannot hold: permission checks for them are cluster-wide.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "PersistentVolume",
        "StorageClass",
        "CSIDriver",
        "IngressClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ClusterIssuer",
    }
)


def api_client(kubeconfig: str) -> Any:
    """A `kubernetes.client.ApiClient` for the current context of `kubeconfig`."""
    from kubernetes import config

    try:
        return config.new_client_from_config(config_file=kubeconfig)
    except (config.ConfigException, OSError, ValueError) as exc:
        raise ToolError(f"kubeconfig {kubeconfig} is unusable: {exc}: fix it or point KUBECONFIG elsewhere") from None


def server(api: Any) -> str:
    return str(api.configuration.host)


def call(api: Any, fn: Callable[[], T], what: str, missing_ok: bool = False) -> T | None:
    """Run one API call; with `missing_ok` a 404 returns None. Every other failure is one clear line."""
    import urllib3.exceptions
    from kubernetes.client.rest import ApiException

    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404 and missing_ok:
            return None
        raise ToolError(f"{what}: {describe(exc)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ToolError(
            f"{what}: cannot reach the Kubernetes API at {server(api)} ({type(reason).__name__}): "
            "check that the cluster is running and that this kubeconfig/credentials point at it"
        ) from None


def describe(exc: Any) -> str:
    """One line for an ApiException: status, the server's message, and the fix when there is an obvious one."""
    import json

    message = exc.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(exc.body or "{}").get("message") or message
    message = str(message).splitlines()[0] if message else ""
    fixes = {
        401: "the credentials were rejected: refresh them (expired token?) and retry",
        403: "the credentials are not allowed to do this: ask a cluster admin for the permission",
    }
    fix = fixes.get(exc.status, "")
    return f"HTTP {exc.status} {message}" + (f": {fix}" if fix else "")


# -- secrets -----------------------------------------------------------------------------------
def read_secret(api: Any, namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's data decoded to text, or None when it does not exist."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    secret = call(
        api,
        lambda: core.read_namespaced_secret(name, namespace, _request_timeout=TIMEOUT),
        f"reading Secret {namespace}/{name}",
        missing_ok=True,
    )
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode("utf-8") for k, v in (secret.data or {}).items()}


def encode(values: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in values.items()}


def create_secret(api: Any, namespace: str, name: str, values: dict[str, str], labels: dict[str, str]) -> None:
    from kubernetes import client

    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        type="Opaque",
        data=encode(values),
    )
    core = client.CoreV1Api(api)
    call(
        api,
        lambda: core.create_namespaced_secret(namespace, body, _request_timeout=TIMEOUT),
        f"creating Secret {namespace}/{name}",
    )


def patch_secret(api: Any, namespace: str, name: str, values: dict[str, str]) -> None:
    """Change only the given keys (a merge patch of `data`; other keys stay as they are)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    call(
        api,
        lambda: core.patch_namespaced_secret(name, namespace, {"data": encode(values)}, _request_timeout=TIMEOUT),
        f"updating Secret {namespace}/{name}",
    )


# -- namespace ---------------------------------------------------------------------------------
def ensure_namespace(api: Any, namespace: str, dry_run: bool = False) -> tuple[bool, str]:
    """Create the namespace when it is missing. Returns (settled, what happened) for the report.

    A 403 on reading means the credentials are namespace-scoped: the namespace is assumed to
    exist (the writes that follow say so if not). A server error on creating is not fatal here
    for the same reason: the next write into the namespace is the definitive answer.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)

    def read() -> str | None:
        try:
            core.read_namespace(namespace, _request_timeout=TIMEOUT)
            return "exists"
        except ApiException as exc:
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
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        try:
            core.create_namespace(body, _request_timeout=TIMEOUT)
            return True, "created"
        except ApiException as exc:
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
def plural(kind: str) -> str:
    """The resource name of a kind, as Kubernetes' RESTMapper guesses it (Ingress -> ingresses)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"


def denied(api: Any, namespace: str, kinds: set[tuple[str, str]], verbs: tuple[str, ...] = VERBS) -> list[str]:
    """Which verbs on which (apiVersion, kind) the credentials may not use (SelfSubjectAccessReview).

    Returns e.g. ["create deployments.apps", ...]. Fails closed: a review the server answers
    without a verdict is an error, never a yes. `verbs` may map a kind to verbs of its own
    through `extra_verbs`.
    """
    from kubernetes import client

    authz = client.AuthorizationV1Api(api)
    refused = []
    for api_version, kind in sorted(kinds):
        group = api_version.split("/")[0] if "/" in api_version else ""
        resource = plural(kind)
        for verb in (*verbs, *EXTRA_VERBS.get(kind, ())):
            # A review has no name: the API server refuses one with metadata (HTTP 422).
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        group=group,
                        resource=resource,
                        verb=verb,
                        namespace=None if kind in CLUSTER_SCOPED else namespace,
                    )
                ),
            )
            answer = call(
                api,
                lambda r=review: authz.create_self_subject_access_review(r, _request_timeout=TIMEOUT),
                "checking permissions (SelfSubjectAccessReview)",
            )
            allowed = getattr(getattr(answer, "status", None), "allowed", None)
            if allowed is None:
                raise ToolError(
                    f"the Kubernetes API at {server(api)} answered the permission check for {verb} {resource} "
                    "without a verdict: it is not a conforming API server (or a proxy mangles the reply)"
                )
            if not allowed:
                refused.append(f"{verb} {resource}{'.' + group if group else ''}")
    return refused


def read_cluster_object(api: Any, read: Callable[[Any], Any], what: str) -> bool | None:
    """Whether a cluster-scoped object exists; None when these credentials may not read it (HTTP 403).

    Namespace-scoped deploy identities (`admin` in the namespace) cannot read cluster-scoped
    objects: the caller warns and goes on rather than refusing a deploy that would work.
    """
    from kubernetes.client.rest import ApiException

    def attempt() -> bool | None:
        try:
            read(api)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return None
            raise

    return call(api, attempt, f"reading {what}")
