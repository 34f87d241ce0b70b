"""A small client for the Docker Registry HTTP API v2 (the local registry, ECR, Artifact Registry).

Only what the toolkit needs: is a tag there and what is its digest (HEAD manifest), copy a
tag (GET + PUT manifest, no image data moves), list repositories and tags, read and store a
manifest or index and a small blob (an image config: tools/image_index.py assembles
multi-platform images from them). It speaks plain
HTTP to loopback registries (as Docker does) and HTTPS elsewhere, and answers the registry's
`WWW-Authenticate` challenge: Basic (ECR) or a Bearer token from the realm (Artifact
Registry, Docker Hub style), with the credentials the cloud shim gave; a bearer token the
registry stops accepting (401 after a long build) is fetched again once.

Transport: urllib3, through the proxy of HTTPS_PROXY/HTTP_PROXY unless NO_PROXY names the host
(as Docker reads them), with bounded retries: a dropped connection, 429 and 5xx are retried with
exponential backoff, honouring Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tools.cloud import Cloud, RegistryAuth, ecr_repositories
from tools.cloud_permissions import need
from tools.errors import ToolError

# Beside the manifest calls below: HEAD/GET a manifest, PUT one (a release tag on an existing image)
need("aws", ("ecr:BatchGetImage", "ecr:PutImage"), ecr_repositories, "read an image's digest, add a release tag")
need(
    "aws",
    (
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
    ),
    ecr_repositories,
    "read an image's config, store a corrected one (multi-platform images), copy an image here by digest",
)

# Every manifest kind a build can produce; the registry answers with the one it holds.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_JSON = ("application/json",)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIES = 4  # each request: at most this many retries (connection errors, 429, 5xx)
BACKOFF = 0.3  # seconds, doubled each retry (a Retry-After header wins)


class RegistryError(ToolError):
    """The registry could not be reached or refused a request."""


def is_loopback(host: str) -> bool:
    """Docker talks plain HTTP to these (127.0.0.0/8 is insecure-allowed by default)."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "[::1]") or name.startswith("127.")


class Registry:
    """One registry host. `repository` arguments are full image names (`host[/path]/name`)."""

    def __init__(
        self, registry: str, auth: RegistryAuth | None = None, timeout: float = 15.0, secure: bool | None = None
    ) -> None:
        """`secure`: HTTPS or not; default HTTP for loopback hosts (as Docker), else HTTPS."""
        self.host = registry.split("/")[0]
        secure = not is_loopback(self.host) if secure is None else secure
        self.base = f"{'https' if secure else 'http'}://{self.host}"
        self.auth = auth
        self.timeout = timeout
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False  # the registry asked for Basic auth
        self._pools: dict[str, Any] = {}  # proxy URL ("" for none) -> urllib3 pool manager

    # -- questions ------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise a clear error unless the registry answers the v2 API."""
        self._request("GET", "/v2/", scope="")

    def digest(self, repository: str, tag: str) -> str | None:
        """The manifest digest behind `repository:tag`, or None when the tag is not there."""
        status, headers, _ = self._request(
            "HEAD", self._manifest_path(repository, tag), scope=self._scope(repository), ok=(200, 404)
        )
        if status == 404:
            return None
        digest = headers.get("Docker-Content-Digest", "")
        if not DIGEST.match(digest):
            raise RegistryError(f"registry {self.host} gave no digest for {repository}:{tag}")
        return digest

    def tags(self, repository: str) -> list[str]:
        path = f"/v2/{self.name(repository)}/tags/list"
        status, _, body = self._request("GET", path, scope=self._scope(repository), ok=(200, 404), accept=_JSON)
        return [] if status == 404 else sorted(json.loads(body or b"{}").get("tags") or [])

    def catalog(self) -> list[str]:
        _, _, body = self._request("GET", "/v2/_catalog?n=1000", scope="registry:catalog:*", accept=_JSON)
        return sorted(json.loads(body).get("repositories") or [])

    # -- changes ------------------------------------------------------------------------
    def copy_tag(self, repository: str, source: str, tag: str) -> str:
        """Point `tag` at the manifest of `source` (same bytes, so the same digest). Returns it."""
        scope = self._scope(repository, push=True)
        _, headers, body = self._request(
            "GET", self._manifest_path(repository, source), scope=scope, accept=MANIFEST_TYPES
        )
        media_type = headers.get("Content-Type", "").split(";")[0] or json.loads(body).get("mediaType", "")
        _, put_headers, _ = self._request(
            "PUT",
            self._manifest_path(repository, tag),
            scope=scope,
            ok=(201,),
            body=body,
            content_type=media_type,
        )
        return put_headers.get("Docker-Content-Digest", "")

    def manifest(self, repository: str, reference: str) -> tuple[str, bytes, str]:
        """(media type, bytes, digest) of the manifest or index at a tag or digest."""
        _, headers, body = self._request(
            "GET", self._manifest_path(repository, reference), scope=self._scope(repository)
        )
        media_type = headers.get("Content-Type", "").split(";")[0]
        if media_type not in MANIFEST_TYPES:
            media_type = json.loads(body or b"{}").get("mediaType", media_type)
        return media_type, body, "sha256:" + hashlib.sha256(body).hexdigest()

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """Store a manifest or index under a tag (or its own digest); returns its digest."""
        _, headers, _ = self._request(
            "PUT",
            self._manifest_path(repository, reference),
            scope=self._scope(repository, push=True),
            ok=(201,),
            body=body,
            content_type=media_type,
        )
        return headers.get("Docker-Content-Digest", "") or "sha256:" + hashlib.sha256(body).hexdigest()

    def blob(self, repository: str, digest: str) -> bytes:
        """A blob's bytes (an image config), following the registry's redirect to its storage without credentials."""
        path = f"/v2/{self.name(repository)}/blobs/{digest}"
        status, headers, body = self._request("GET", path, scope=self._scope(repository), ok=(200, 302, 303, 307))
        # ECR and Artifact Registry send blobs from a signed storage URL: a redirect the OCI distribution spec
        # allows (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-blobs)
        if status != 200:
            # the signed URL carries its own authorization: the registry's credentials never go to the storage host
            storage = urllib.parse.urljoin(self.base + path, headers.get("Location"))
            status, _, body = self._send("GET", storage, {}, None)
            if status != 200:
                raise RegistryError(f"registry {self.host}: blob {digest[:19]} of {repository} answered {status}")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"registry {self.host}: blob {digest[:19]} of {repository} has other content: retry")
        return body

    def has_blob(self, repository: str, digest: str, push: bool = False) -> bool:
        """Whether the repository holds the blob (HEAD: nothing is downloaded)."""
        path = f"/v2/{self.name(repository)}/blobs/{digest}"
        status, _, _ = self._request("HEAD", path, scope=self._scope(repository, push=push), ok=(200, 404))
        return status == 200

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload a small blob in one request (POST, then PUT with the digest), unless it is there; its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        name, scope = self.name(repository), self._scope(repository, push=True)
        if self.has_blob(repository, digest, push=True):
            return digest
        _, headers, _ = self._request("POST", f"/v2/{name}/blobs/uploads/", scope=scope, ok=(202,))
        location = urllib.parse.urlsplit(headers.get("Location"))
        query = "&".join(q for q in (location.query, urllib.parse.urlencode({"digest": digest})) if q)
        octets = "application/octet-stream"
        self._request("PUT", f"{location.path}?{query}", scope=scope, ok=(201,), body=data, content_type=octets)
        return digest

    # -- plumbing -------------------------------------------------------------------------
    def name(self, repository: str) -> str:
        """The repository's name inside the registry (the part after the host)."""
        host, _, name = repository.partition("/")
        if host != self.host or not name:
            raise RegistryError(f"{repository} is not an image of registry {self.host}")
        return name

    def _manifest_path(self, repository: str, reference: str) -> str:
        return f"/v2/{self.name(repository)}/manifests/{urllib.parse.quote(reference, safe=':')}"

    def _scope(self, repository: str, push: bool = False) -> str:
        return f"repository:{self.name(repository)}:{'pull,push' if push else 'pull'}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        ok: tuple[int, ...] = (200,),
        body: bytes | None = None,
        content_type: str | None = None,
        accept: tuple[str, ...] = MANIFEST_TYPES,
    ) -> tuple[int, Headers, bytes]:
        for attempt in range(2):
            headers = {"Accept": ", ".join(accept)}
            if content_type:
                headers["Content-Type"] = content_type
            authorization = self._authorization(scope)
            if authorization:
                headers["Authorization"] = authorization
            status, response_headers, data = self._send(method, self.base + path, headers, body)
            challenge = response_headers.get("WWW-Authenticate", "") if status == 401 and attempt == 0 else ""
            if challenge and self._answer_challenge(challenge, scope):
                continue
            if status in ok:
                return status, response_headers, data
            raise RegistryError(self._explain(method, path, status, data))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, Headers, bytes]:
        """One HTTP exchange, with the retries and the proxy of the module docstring (no redirects)."""
        import urllib3

        retry = urllib3.util.Retry(
            total=RETRIES,
            backoff_factor=BACKOFF,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD", "PUT"}),  # a manifest PUT is idempotent
            respect_retry_after_header=True,
            raise_on_status=False,
            redirect=False,
        )
        netloc = urllib.parse.urlsplit(url).netloc
        try:
            response = self._pool(url).request(
                method,
                url,
                body=body,
                headers={"User-Agent": "cmbcluster-deploy", **headers},
                retries=retry,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except urllib3.exceptions.HTTPError as err:
            reason = getattr(err, "reason", None) or err
            raise RegistryError(
                f"cannot reach registry {netloc} ({type(reason).__name__}: {reason}): check REGISTRY_URL, "
                "that the registry is up, and HTTPS_PROXY/NO_PROXY"
            ) from None
        return response.status, Headers({k.lower(): v for k, v in response.headers.items()}), response.data or b""

    def _pool(self, url: str) -> Any:
        """The pool for `url`: through the environment's proxy for its scheme unless NO_PROXY names the host."""
        import urllib.request  # with urllib3: imports ssl, which --help must not pay for

        import urllib3

        parts = urllib.parse.urlsplit(url)
        proxy = urllib.request.getproxies_environment().get(parts.scheme, "")
        if proxy and urllib.request.proxy_bypass_environment(parts.hostname or ""):  # type: ignore[attr-defined]
            proxy = ""
        if proxy not in self._pools:
            self._pools[proxy] = urllib3.ProxyManager(proxy, maxsize=4) if proxy else urllib3.PoolManager(maxsize=4)
        return self._pools[proxy]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.clear()
        self._pools.clear()

    def _authorization(self, scope: str) -> str | None:
        if scope in self._tokens:
            return f"Bearer {self._tokens[scope]}"
        if self._basic and self.auth:
            return "Basic " + base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
        return None

    def _answer_challenge(self, challenge: str, scope: str) -> bool:
        """Learn how to authenticate from a 401; True when a retry can succeed."""
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic" and self.auth and not self._basic:
            self._basic = True
            return True
        if kind != "bearer":
            return False
        self._tokens.pop(scope, None)  # a token the registry no longer takes (expired): fetch a new one
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm")
        if not realm:
            return False
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope or None)) if v}
        url = f"{realm}?{urllib.parse.urlencode(query)}" if query else realm
        headers = {"Accept": "application/json"}
        if self.auth:
            creds = base64.b64encode(f"{self.auth.username}:{self.auth.password}".encode()).decode()
            headers["Authorization"] = f"Basic {creds}"
        status, _, data = self._send("GET", url, headers, None)
        if status != 200:
            raise RegistryError(
                f"registry {self.host} refused the credentials (token service answered {status}): "
                "log in again (a fresh token from the cloud) or check the account's permissions"
            )
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            raise RegistryError(f"registry {self.host}: token service {realm} answered no JSON") from None
        token = answer.get("token") or answer.get("access_token")
        if not token:
            return False
        self._tokens[scope] = token
        return True

    def _explain(self, method: str, path: str, status: int, data: bytes) -> str:
        what = f"registry {self.host}: {method} {path} answered {status}"
        if status == 401:
            hint = (
                "the credentials were refused: check the account's permissions"
                if self.auth
                else "it wants credentials and this cloud gives none: use a registry without authentication"
            )
            return f"{what} (unauthorized): {hint}"
        if status == 403:
            return f"{what} (forbidden): the account may not use this repository"
        try:
            errors = json.loads(data or b"{}").get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = ""
        return f"{what}{': ' + detail if detail else ''}"


class Headers(dict[str, str]):
    """Response headers; names are matched without regard to case."""

    def get(self, name: str, default: str = "") -> str:  # type: ignore[override]
        return super().get(name.lower(), default)


@contextmanager
def image_registries(cloud: Cloud) -> Iterator[Callable[[str], Registry]]:
    """A registry client per host, on demand: the cloud's credentials go only to the cloud's own registry."""
    own = cloud.registry().split("/")[0]
    clients: dict[str, Registry] = {}

    def client(repository: str) -> Registry:
        host = repository.split("/")[0]
        if host not in clients:
            clients[host] = Registry(host, cloud.registry_login() if host == own else None)
        return clients[host]

    try:
        yield client
    finally:
        for registry in clients.values():
            registry.close()
