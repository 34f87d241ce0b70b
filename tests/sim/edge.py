"""The network edge: the tools reach the test bed at the providers' real host names, unmodified.

`NetworkEdge` starts the test CA and the intercepting proxy (tests/sim/edge_ca.py, edge_proxy.py;
the host map is tests/sim/edge_routes.py) and gives the environment that points each client the
tools use at it, through each client's documented variables only:

| client (used by)                                 | proxy                       | CA                     |
|--------------------------------------------------|-----------------------------|------------------------|
| boto3/botocore (tools/cloud/aws.py, route53, acm)| HTTPS_PROXY [1]             | AWS_CA_BUNDLE [2]      |
| requests: google-auth, google-cloud-storage      | HTTPS_PROXY [3]             | REQUESTS_CA_BUNDLE [3] |
|   (tools/cloud/gcp.py, clouddns.py)              |                             |                        |
| urllib3 (tools/registry.py)                      | HTTPS_PROXY (read there)    | SSL_CERT_FILE [4]      |
| dockerd (docker login/push of build_push)        | HTTPS_PROXY [5]             | SSL_CERT_FILE [6]      |
| containerd of the kit (the kubelet's pulls)      | hosts.toml mirror [7]       | (plain-HTTP mirror)    |
| tools/kube_client.py (urllib3, no proxy), helm (Go,  | not proxied: the cluster's endpoint and CA come    |
|   honours HTTPS_PROXY)                           | from the kubeconfig; NO_PROXY names loopback       |

[1] https://boto3.amazonaws.com/v1/documentation/api/latest/guide/configuration.html#using-proxies and
    https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-proxy.html (botocore.utils.get_environ_proxies)
[2] https://docs.aws.amazon.com/sdkref/latest/guide/feature-gen-config.html (ca_bundle, AWS_CA_BUNDLE)
[3] https://requests.readthedocs.io/en/latest/user/advanced/#proxies and #ssl-cert-verification
[4] urllib3 without ca_certs loads OpenSSL's default paths, which SSL_CERT_FILE overrides:
    https://docs.python.org/3/library/ssl.html#ssl.SSLContext.load_default_certs
[5] https://docs.docker.com/engine/daemon/proxy/#environment-variables ("checks ... in its start-up environment")
[6] Go's crypto/x509 on Linux: SSL_CERT_FILE "overrides the system default" (crypto/x509/root_unix.go),
    https://pkg.go.dev/crypto/x509#SystemCertPool
[7] https://github.com/containerd/containerd/blob/main/docs/hosts.md (read at each pull, no restart)

Nothing outside the test bed's folders is written, except the kit's containerd hosts.toml files for
the mapped registry hosts, which `containerd_mirror` removes on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import certifi

from tests.sim.edge_ca import TestCa
from tests.sim.edge_proxy import TOKEN_URI, EdgeProxy
from tests.sim.edge_routes import AR_REGISTRY, ECR_REGISTRY, EKS, GCS, GOOGLE_TOKEN, MOTO
from tests.sim.gke_tokens import GoogleTokenServer

LOOPBACK = "127.0.0.1,localhost,::1"


class NetworkEdge:
    """The CA, the proxy and the clients' environment, under `folder`."""

    def __init__(self, folder: Path, *, moto: str, registry: str, gcs: str, eks: str | None = None) -> None:
        self.folder = folder
        self.ca = TestCa(folder / "ca")
        self.bundle = folder / "ca-bundle.pem"  # the public roots and the test CA: one file for every client
        self.bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + self.ca.cert_file.read_bytes())
        registry_url = f"http://{registry}"
        # the one issuer of Google access tokens: the edge's token endpoint, GCS, Artifact Registry and the
        # simulated GKE (its authenticator and cluster API, tests/sim/gke.py) all take its tokens
        self.google = GoogleTokenServer()
        parts = {MOTO: moto, EKS: eks or moto, ECR_REGISTRY: registry_url, AR_REGISTRY: registry_url, GCS: gcs}
        self.proxy = EdgeProxy(self.ca, {**parts, GOOGLE_TOKEN: self.google.url}, self.google)

    def client_env(self) -> dict[str, str]:
        """What a process needs to reach the providers' hosts through the edge (see the table above)."""
        url = self.proxy.url
        return {
            "HTTPS_PROXY": url,
            "https_proxy": url,
            "NO_PROXY": LOOPBACK,
            "no_proxy": LOOPBACK,
            "AWS_CA_BUNDLE": str(self.bundle),
            "REQUESTS_CA_BUNDLE": str(self.bundle),
            "SSL_CERT_FILE": str(self.bundle),
        }

    @contextlib.contextmanager
    def routed(self, part: str, url: str) -> Iterator[None]:
        """`part` answered by `url` for a while (e.g. `eks` by tests/sim/eks_api.py), then as before (a part
        with no answer before, e.g. `gke`, is refused again)."""
        before = self.proxy.parts.get(part)
        self.proxy.parts[part] = url
        try:
            yield
        finally:
            if before is None:
                self.proxy.parts.pop(part, None)
            else:
                self.proxy.parts[part] = before

    def google_service_account(self, email: str, project: str, registered: bool = True) -> Path:
        """A service-account key file (as IAM's keys.create gives it) whose token_uri is Google's real endpoint,
        answered through the edge by the one issuer (unless `registered` is False: a key Google never issued);
        point GOOGLE_APPLICATION_CREDENTIALS at it."""
        return self.google.key_file(self.folder, email, project, registered=registered, token_uri=TOKEN_URI)

    def stop(self) -> None:
        self.proxy.stop()
        self.google.stop()


def containerd_certs_dir(kubeconfig: str, k8s_home: str | None) -> Path | None:
    """The kit's containerd `config_path` (K8S_HOME/containerd/certs.d): the test bed's kit, or the kit
    whose kubeconfig CMB_TEST_KUBECONFIG names (K8S_HOME/kubeconfig). None for another cluster."""
    home = Path(k8s_home) if k8s_home else Path(kubeconfig).parent
    certs = home / "containerd" / "certs.d"
    return certs if certs.is_dir() else None


MARK = "# written by the cmbcluster test bed's network edge, process "


@contextlib.contextmanager
def containerd_mirror(certs: Path, hosts: list[str], registry: str) -> Iterator[None]:
    """The kubelet's pulls of `hosts` go to the test bed's registry (plain HTTP on loopback), through
    containerd's registry host configuration; each hosts.toml written here is removed on exit. One left
    by a test run that was killed is taken over; one of a live run, or not the test bed's, stops here."""
    written: list[Path] = []
    try:
        for host in hosts:
            folder = certs / host
            toml = folder / "hosts.toml"
            if toml.exists() and not _orphaned(toml):
                raise RuntimeError(f"{toml} exists and is not an orphan of this test bed: not overwriting it")
            folder.mkdir(exist_ok=True)
            written.append(folder)
            toml.write_text(
                f"{MARK}{os.getpid()}\n"
                f'server = "https://{host}"\n\n[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
            )
        yield
    finally:
        for folder in written:
            shutil.rmtree(folder, ignore_errors=True)


def _orphaned(toml: Path) -> bool:
    first = toml.read_text().partition("\n")[0]
    if not first.startswith(MARK):
        return False
    pid = first[len(MARK) :].strip()
    return pid.isdigit() and not Path(f"/proc/{pid}").exists()
