"""A small Kubernetes API client: a kubeconfig's credentials, JSON requests, watches, one-line errors.

Why not the official `kubernetes` package: importing it costs 0.7 s (its package imports the
dynamic client, informers, ...) and each API class 1-2 s more (every model it names), paid by
every step before its first request. This client needs only urllib3 and PyYAML and speaks the
few REST paths the steps use. It reads what kubectl reads from a kubeconfig: the current
context (or one named), the server, its CA (inline or a file, or insecure-skip-tls-verify,
tls-server-name), and the user's bearer token, token file, client certificate or exec credential
plugin. An exec credential is run again when it expires or the server answers 401, so a run
longer than one token keeps working.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tools.errors import ToolError

if TYPE_CHECKING:
    import ssl
from tools.report import REPORTER
from tools.runner import run

T = TypeVar("T")
TIMEOUT = (5.0, 30.0)  # connect, read seconds for each API request
# Where each resource the steps use lives (the API group's path prefix).
PREFIXES = {
    "namespaces": "/api/v1",
    "nodes": "/api/v1",
    "pods": "/api/v1",
    "secrets": "/api/v1",
    "configmaps": "/api/v1",
    "events": "/api/v1",
    "services": "/api/v1",
    "serviceaccounts": "/api/v1",
    "persistentvolumes": "/api/v1",
    "persistentvolumeclaims": "/api/v1",
    "deployments": "/apis/apps/v1",
    "replicasets": "/apis/apps/v1",
    "ingresses": "/apis/networking.k8s.io/v1",
    "ingressclasses": "/apis/networking.k8s.io/v1",
    "csidrivers": "/apis/storage.k8s.io/v1",
    "storageclasses": "/apis/storage.k8s.io/v1",
    "selfsubjectaccessreviews": "/apis/authorization.k8s.io/v1",
    "selfsubjectrulesreviews": "/apis/authorization.k8s.io/v1",
    "leases": "/apis/coordination.k8s.io/v1",
}
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, body: bytes = b"") -> None:
        self.status, self.reason, self.body = status, reason, body
        super().__init__(f"HTTP {status} {reason}")

    @property
    def message(self) -> str:
        """The server's own message (a Status object's), first line only."""
        with contextlib.suppress(ValueError, AttributeError):
            text = json.loads(self.body or b"{}").get("message") or ""
            return str(text).splitlines()[0] if text else ""
        return ""


class Unreachable(Exception):
    """The API server could not be reached (connection refused, TLS failure, timeout)."""


def path(resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """The REST path of a collection or an object, e.g. path("pods", "ns", "p", "log")."""
    parts = [PREFIXES[resource]]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(resource)
    if name:
        parts.append(name)
    if sub:
        parts.append(sub)
    return "/".join(parts)


def _select(items: list[dict[str, Any]] | None, name: str, what: str, source: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what.rstrip("s")) or {}
    raise ToolError(f"kubeconfig {source}: no {what.rstrip('s')} named {name!r}: fix the kubeconfig")


class Credentials:
    """The user part of a kubeconfig: what goes into each request, and how to renew it."""

    def __init__(self, user: dict[str, Any], base: str) -> None:
        self.user, self.base = user, base
        self._token: str | None = user.get("token")
        self._renew_at: float | None = None  # when an exec token is renewed (90% of its lifetime, as client-go)
        self._lock = threading.Lock()  # the smoke test's watch threads share one client
        self.exec_spec = user.get("exec")
        if user.get("username") or user.get("auth-provider"):
            raise ToolError(
                "kubeconfig user uses basic auth or a removed auth-provider: use a token, a client "
                "certificate or an exec credential plugin"
            )

    def headers(self, refresh: bool = False) -> dict[str, str]:
        token = self.token(refresh)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def token(self, refresh: bool = False) -> str | None:
        if self.exec_spec:
            with self._lock:
                if refresh or self._token is None or (self._renew_at is not None and time.time() >= self._renew_at):
                    self._run_exec()
                return self._token
        token_file = self.user.get("tokenFile")
        if token_file:  # read each time: a projected token is rotated on disk
            with open(self._resolve(token_file), encoding="utf-8") as handle:
                return handle.read().strip()
        return self._token

    @property
    def renewable(self) -> bool:
        return bool(self.exec_spec or self.user.get("tokenFile"))

    def _resolve(self, file: str) -> str:
        return file if os.path.isabs(file) else os.path.join(self.base, file)

    def _run_exec(self) -> None:
        """Run the exec credential plugin and keep its token and expiry (client.authentication.k8s.io)."""
        spec = self.exec_spec or {}
        command = [spec.get("command", ""), *(spec.get("args") or [])]
        env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
        env["KUBERNETES_EXEC_INFO"] = json.dumps(
            {"apiVersion": spec.get("apiVersion"), "kind": "ExecCredential", "spec": {"interactive": False}}
        )
        proc = run(command, env=env, what="the kubeconfig's exec credential plugin")
        try:
            status = json.loads(proc.stdout).get("status") or {}
        except ValueError:
            raise ToolError(f"exec credential plugin {command[0]} printed no ExecCredential JSON") from None
        token = status.get("token")
        if not token:
            raise ToolError(
                f"exec credential plugin {command[0]} gave no token (client certificates are not supported)"
            )
        REPORTER.register_secrets([token])
        self._token = token
        expiry = status.get("expirationTimestamp")
        if expiry:
            now = time.time()
            expires = datetime.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
            self._renew_at = now + max(0.0, expires - now) * 0.9
        else:
            self._renew_at = None


class KubeApi(Protocol):
    """The Kubernetes client seam: what the tools ask of a cluster. `Kube` answers it; a function takes
    a `KubeApi` so that it names what it needs, not how the client is made."""

    server: str  # the API server's URL, for messages

    def request(
        self,
        method: str,
        url_path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] = TIMEOUT,
        stream: bool = False,
    ) -> Any: ...

    def get(self, url_path: str, **query: Any) -> Any: ...

    def create(self, url_path: str, body: dict[str, Any]) -> Any: ...

    def patch(self, url_path: str, body: dict[str, Any]) -> Any: ...

    def delete(self, url_path: str) -> Any: ...

    def watch(
        self, url_path: str, resource_version: str | None, seconds: int, stop: Callable[[], bool]
    ) -> Iterator[dict[str, Any]]: ...


class Kube:
    """One cluster, as the current context of a kubeconfig names it. Use as a context manager."""

    def __init__(self, kubeconfig: str, context: str | None = None) -> None:
        import urllib3
        import yaml

        try:
            with open(kubeconfig, encoding="utf-8") as handle:
                config = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ToolError(
                f"kubeconfig {kubeconfig} is unusable: {exc}: fix it or point KUBECONFIG elsewhere"
            ) from None
        name = context or config.get("current-context")
        if not name:
            raise ToolError(f"kubeconfig {kubeconfig} has no current-context: set one (kubectl config use-context)")
        chosen = _select(config.get("contexts"), name, "contexts", kubeconfig)
        cluster = _select(config.get("clusters"), chosen.get("cluster", ""), "clusters", kubeconfig)
        user = _select(config.get("users"), chosen.get("user", ""), "users", kubeconfig) if chosen.get("user") else {}
        self.server = str(cluster.get("server") or "").rstrip("/")
        if not self.server:
            raise ToolError(f"kubeconfig {kubeconfig}: cluster {chosen.get('cluster')!r} has no server")
        self.namespace = chosen.get("namespace") or "default"
        base = os.path.dirname(os.path.abspath(kubeconfig))
        self.credentials = Credentials(user, base)
        options: dict[str, Any] = {"maxsize": 8, "retries": False}
        if self.server.startswith("https://"):
            options["ssl_context"] = _tls_context(cluster, user, base)
            if cluster.get("tls-server-name"):
                options["server_hostname"] = cluster["tls-server-name"]
            if cluster.get("insecure-skip-tls-verify"):
                options["assert_hostname"] = False
        self.pool = urllib3.PoolManager(**options)

    # -- plumbing -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url_path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] = TIMEOUT,
        stream: bool = False,
    ) -> Any:
        """One request; JSON back (or the raw response with `stream`). ApiError on an error status."""
        import urllib3

        url = self.server + url_path
        if query:
            from urllib.parse import urlencode

            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            headers = {"Accept": "application/json", **self.credentials.headers(refresh=attempt == 1)}
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                response = self.pool.request(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                    preload_content=not stream,
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise Unreachable(_reason(exc)) from None
            if response.status == 401 and attempt == 0 and self.credentials.renewable:
                response.drain_conn()
                continue  # the token expired: renew it once
            break
        if response.status >= 400:
            body_bytes = response.read() if stream else response.data
            response.release_conn()
            raise ApiError(response.status, response.reason or "", body_bytes)
        if stream:
            return response
        if not response.data:
            return {}
        if (response.headers.get("Content-Type") or "").startswith("application/json"):
            return json.loads(response.data)
        return response.data

    def get(self, url_path: str, **query: Any) -> Any:
        return self.request("GET", url_path, query=query or None)

    def create(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", url_path, body)

    def patch(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", url_path, body, content_type=MERGE_PATCH)

    def delete(self, url_path: str) -> Any:
        return self.request("DELETE", url_path)

    def watch(
        self, url_path: str, resource_version: str | None, seconds: int, stop: Callable[[], bool]
    ) -> Iterator[dict]:
        """The events of a watch on a collection, until the server ends it (after `seconds`) or `stop()`."""
        query = {"watch": "true", "timeoutSeconds": seconds, "allowWatchBookmarks": "false"}
        if resource_version:
            query["resourceVersion"] = resource_version
        response = self.request("GET", url_path, query=query, timeout=(TIMEOUT[0], seconds + 5), stream=True)
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
                    if stop():
                        return
        finally:
            response.release_conn()

    def close(self) -> None:
        self.pool.clear()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tls_context(cluster: dict[str, Any], user: dict[str, Any], base: str) -> ssl.SSLContext:
    """Trust the cluster's CA (not the system's, as kubectl does when a CA is given); present the user's cert."""
    import ssl  # with tempfile: only when a client is made, never for --help (every step imports this module)
    import tempfile

    def resolve(file: str) -> str:
        return file if os.path.isabs(file) else os.path.join(base, file)

    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode("ascii")
        )
    elif cluster.get("certificate-authority"):
        context = ssl.create_default_context(cafile=resolve(cluster["certificate-authority"]))
    else:
        context = ssl.create_default_context()
    cert, key = user.get("client-certificate-data"), user.get("client-key-data")
    if cert and key:
        # ssl loads a key pair only from files: a private folder that is gone once loaded
        with tempfile.TemporaryDirectory(prefix="cmb-tls-") as folder:
            for file, data in (("cert.pem", cert), ("key.pem", key)):
                with os.fdopen(os.open(os.path.join(folder, file), os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                    out.write(base64.b64decode(data))
            context.load_cert_chain(os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
    elif user.get("client-certificate") and user.get("client-key"):
        context.load_cert_chain(resolve(user["client-certificate"]), resolve(user["client-key"]))
    return context


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
