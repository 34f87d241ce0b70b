"""A small client for the Docker Registry HTTP API v2 (the local registry, ECR, Artifact Registry).

Only what build_push needs: is a tag there and what is its digest (HEAD manifest), copy a
tag (GET + PUT manifest, no image data moves), list repositories and tags. It speaks plain
HTTP to loopback registries (as Docker does) and HTTPS elsewhere, and answers the registry's
`WWW-Authenticate` challenge: Basic (ECR) or a Bearer token from the realm (Artifact
Registry, Docker Hub style), with the credentials the cloud shim gave. Standard library only,
so a run that builds nothing starts fast.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import urllib.parse

from tools.cloud import RegistryAuth
from tools.errors import ToolError

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
        self._connections: dict[tuple[str, str], _Connection] = {}

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
        """One HTTP exchange on a kept-alive connection (no redirects: manifests never need them)."""
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        key = (parts.scheme, parts.netloc)
        for retry in (False, True):
            reused = key in self._connections
            try:
                if not reused:
                    self._connections[key] = _Connection(parts.scheme, parts.netloc, self.timeout)
                connection = self._connections[key]
                status, response_headers, data, keep = connection.exchange(method, target, headers, body)
            except OSError as err:
                self._drop(key)
                if reused and not retry:
                    continue  # the server closed an idle kept-alive connection: once more on a new one
                raise RegistryError(
                    f"cannot reach registry {parts.netloc} ({err}): check REGISTRY_URL and that the registry is up"
                ) from None
            if not keep:
                self._drop(key)
            return status, response_headers, data
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, key: tuple[str, str]) -> None:
        connection = self._connections.pop(key, None)
        if connection:
            connection.close()

    def close(self) -> None:
        for key in list(self._connections):
            self._drop(key)

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
        if kind != "bearer" or scope in self._tokens:
            return False
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


class _Connection:
    """A minimal HTTP/1.1 client connection: Content-Length and chunked bodies, keep-alive, TLS.

    The standard library's http.client costs ~20 ms of imports (the email package), a fifth of
    a build_push run that builds nothing; the registry API needs no more than this.
    """

    def __init__(self, scheme: str, netloc: str, timeout: float) -> None:
        self.netloc = netloc
        host, _, port = netloc.rpartition(":") if netloc.rpartition(":")[2].isdigit() else (netloc, "", "")
        host = host.strip("[]")
        default_port = 443 if scheme == "https" else 80
        sock = socket.create_connection((host, int(port or default_port)), timeout=timeout)
        if scheme == "https":
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, Headers, bytes, bool]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.netloc}", "User-Agent: cmbcluster-deploy"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        status_line = self.reader.readline(65537)
        if not status_line:
            raise ConnectionResetError("the connection was closed")
        try:
            version, code = status_line.decode("latin-1").split(None, 2)[:2]
            status = int(code)
        except ValueError:
            raise OSError(f"not an HTTP answer: {status_line[:40]!r}") from None
        response_headers = Headers()
        while True:
            line = self.reader.readline(65537).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        data, to_eof = self._body(method, status, response_headers)
        connection = response_headers.get("Connection").lower()
        keep = connection != "close" and (version != "HTTP/1.0" or connection == "keep-alive") and not to_eof
        return status, response_headers, data, keep

    def _body(self, method: str, status: int, headers: Headers) -> tuple[bytes, bool]:
        """The body, and whether it ran to the end of the connection."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b"", False
        if "chunked" in headers.get("Transfer-Encoding").lower():
            chunks = []
            while True:
                size = int(self.reader.readline(1026).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks), False
                chunks.append(self._exactly(size))
                self.reader.readline(3)
        length = headers.get("Content-Length")
        if length.isdigit():
            return self._exactly(int(length)), False
        return self.reader.read(), True

    def _exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise ConnectionResetError("the connection closed in the middle of an answer")
        return data

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
