"""A control-plane-only Kubernetes (its own etcd and kube-apiserver) with a provider's webhooks, from the kit's files.

Why not the test bed's real cluster: the kit allows one kubelet per machine, and that cluster is a
singleton shared by every test (and, here, by other suites), whose apiserver flags are fixed at its
first start. Authentication, authorization and admission are the apiserver's alone, so a second
apiserver with the webhook flags stages EKS's or GKE's access path faithfully and starts in seconds, with no
kubelet: objects are stored and checked, no pod runs. It uses the kit's own PKI and start scripts
(`mkpki.sh`, `start-etcd.sh`, `start-kube-apiserver.sh`, with `K8S_AUTHORIZATION_MODE` empty and the
structured authorization configuration in `K8S_APISERVER_EXTRA_ARGS`), plus a kube-controller-manager
running only the ClusterRole aggregation controller, which fills the user-facing roles (`admin`,
`edit`, `view`) that RBAC bindings and the access policies refer to.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.sim.webhook_server import WebhookServer
from tests.testbed import free_port
from tests.waiting import eventually

BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl")


class ControlPlane:
    """etcd + kube-apiserver (+ the aggregation controller) under `home`, on free loopback ports.

    With `storage` (the K8S_HOME of the test bed's running kit cluster), only a second kube-apiserver starts:
    on that cluster's etcd, PKI and service-account keys, as a highly available control plane runs several.
    What the provider's identities make through it is the real cluster's: its scheduler places the pods and
    its kubelet runs them, so a whole deploy chain runs on the simulated provider. The kit's own apiserver
    (Node,RBAC, no webhooks) keeps serving the kubelet, the controllers and every other test.
    """

    def __init__(
        self,
        kit: Path,
        home: Path,
        hooks: WebhookServer,
        authorizer: str = "eks-access-policies",
        storage: Path | None = None,
    ) -> None:
        self.kit, self.home, self.hooks, self.storage = kit, home, hooks, storage
        self.authorizer = authorizer  # the Webhook authorizer's name, after Node and RBAC
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        # system:masters, for the test's set-up only (the kit's own admin kubeconfig when on its storage)
        self.kubeconfig = str((storage or home) / "kubeconfig")

    def start(self) -> None:
        if self.storage is None:
            (self.home / "bin").mkdir(parents=True, exist_ok=True)
            _unpack(self.kit, self.home / "bin")
        authz = self.home / "authorization.json"
        # (GKE's chain has the same shape: tests/sim/gke.py)
        # EKS's authorizer chain: Node, RBAC, then the webhook of access policies, so RBAC's escalation
        # check for a Role or RoleBinding reads RBAC rules first and then asks the chain for escalate/bind
        # (https://docs.aws.amazon.com/eks/latest/userguide/access-policies.html: "Amazon EKS ... RBAC
        # authorization ... before access policies"; aws/containers-roadmap#2682)
        authz.write_text(
            json.dumps(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "AuthorizationConfiguration",
                    "authorizers": [
                        {"type": "Node", "name": "node"},
                        {"type": "RBAC", "name": "rbac"},
                        {
                            "type": "Webhook",
                            "name": self.authorizer,
                            "webhook": {
                                "timeout": "5s",
                                "authorizedTTL": "1s",
                                "unauthorizedTTL": "1s",
                                "subjectAccessReviewVersion": "v1",
                                "matchConditionSubjectAccessReviewVersion": "v1",
                                "failurePolicy": "Deny",
                                "connectionInfo": {
                                    "type": "KubeConfigFile",
                                    "kubeConfigFile": str(self.hooks.kubeconfig("/authorize")),
                                },
                            },
                        },
                    ],
                }
            )
        )
        flags = [
            f"--authentication-token-webhook-config-file={self.hooks.kubeconfig('/authenticate')}",
            "--authentication-token-webhook-version=v1",
            "--authentication-token-webhook-cache-ttl=1s",
            f"--authorization-config={authz}",
        ]
        env = {
            **os.environ,
            "K8S_HOME": str(self.home),
            "K8S_APISERVER_PORT": str(self.port),
            "K8S_ETCD_CLIENT_PORT": str(free_port()),
            "K8S_ETCD_PEER_PORT": str(free_port()),
            "K8S_ETCD_METRICS_PORT": str(free_port()),
            "K8S_AUTHORIZATION_MODE": "",
            "K8S_APISERVER_EXTRA_ARGS": " ".join(flags),
        }
        scripts = self.kit / "reference"
        if self.storage is not None:
            self._start_on_storage(self.storage, env, flags)
            return
        subprocess.run(["bash", str(scripts / "mkpki.sh"), str(self.home)], env=env, check=True, capture_output=True)
        self._spawn("etcd", ["bash", str(scripts / "start-etcd.sh"), str(self.home)], env)
        self._spawn("kube-apiserver", ["bash", str(scripts / "start-kube-apiserver.sh"), str(self.home)], env)
        self._wait("kube-apiserver", lambda: self.get("/readyz") == "ok")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.home / "bin" / "kube-controller-manager"),
                # the admin's credentials: on a real cluster this controller runs as its own service account
                # (--use-service-account-credentials), whose token controller this control plane does not run
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=clusterrole-aggregation",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
            env,
        )
        self._wait("kube-controller-manager", lambda: bool(self.cluster_role("admin").get("rules")))

    def _start_on_storage(self, kit_home: Path, env: dict[str, str], flags: list[str]) -> None:
        """A second kube-apiserver of the running kit cluster: its settings, PKI and binaries, its etcd."""
        settings = _settings(kit_home / "run" / "settings.env")
        for name in ("pki", "bin"):
            link = self.home / name
            if not link.exists():
                link.symlink_to(kit_home / name)
        for name in ("K8S_ETCD_CLIENT_PORT", "K8S_SERVICE_CIDR", "K8S_NODEPORT_RANGE"):
            env[name] = settings[name]
        # The kit's apiserver owns the `kubernetes` Service's endpoints (its port): this one must not rewrite them
        # (--endpoint-reconciler-type:
        # https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/)
        env["K8S_APISERVER_EXTRA_ARGS"] = " ".join([*flags, "--endpoint-reconciler-type=none"])
        script = self.kit / "reference" / "start-kube-apiserver.sh"
        self._spawn("kube-apiserver", ["bash", str(script), str(self.home)], env)
        self._wait("kube-apiserver", lambda: self.get("/readyz") == "ok")

    def get(self, path: str) -> Any:
        pki = self.home / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        with urllib.request.urlopen(f"https://127.0.0.1:{self.port}{path}", context=context, timeout=5) as resp:
            body = resp.read().decode()
        return json.loads(body) if body.startswith("{") else body

    def cluster_role(self, name: str) -> dict[str, Any]:
        return self.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")

    def kubectl(self, *args: str, kubeconfig: str | None = None, env: dict[str, str] | None = None) -> Any:
        command = [str(self.home / "bin" / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_own_session_ended_with_parent
        )

    def _wait(self, name: str, probe: Any, seconds: float = 60.0) -> None:
        def tail() -> str:
            return (self.home / f"{name}.log").read_text(errors="replace")[-1500:]

        def ready() -> bool:
            assert self.procs[name].poll() is None, f"simulated control plane: {name} exited; log tail:\n{tail()}"
            return bool(probe())

        eventually(ready, lambda: f"simulated control plane: {name} ready; log tail:\n{tail()}", seconds, pause=0.2)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def kit_home(kubeconfig: str, k8s_home: str | None) -> Path | None:
    """The running kit cluster's K8S_HOME (the test bed's, or the folder of a kit kubeconfig), if it is the kit."""
    home = Path(k8s_home) if k8s_home else Path(kubeconfig).resolve().parent
    return home if (home / "run" / "settings.env").is_file() and (home / "pki" / "sa.key").is_file() else None


def _settings(path: Path) -> dict[str, str]:
    """The kit's recorded settings (run/settings.env: NAME=value lines, shell-quoted as bash's printf %q does)."""
    import shlex

    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: (shlex.split(value) or [""])[0] for name, value in pairs}


def _own_session_ended_with_parent() -> None:
    """In the child: a process group of its own (stopped as one), sent SIGTERM if the test run dies
    (PR_SET_PDEATHSIG survives the start scripts' exec)."""
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _unpack(kit: Path, target: Path) -> None:
    """The kit's compressed binaries, each checked against its SHA256SUMS line (as install.sh does)."""
    lines = (kit / "bin" / "SHA256SUMS").read_text().split("\n")
    sums = {name: digest for digest, name in (line.split() for line in lines if line)}
    for name in BINARIES:
        binary = target / name
        if not binary.exists():
            subprocess.run(["zstd", "-q", "-d", "-f", str(kit / "bin" / f"{name}.zst"), "-o", str(binary)], check=True)
            binary.chmod(0o755)
        digest = hashlib.sha256(binary.read_bytes()).hexdigest()
        if sums.get(name) != digest:
            raise RuntimeError(f"{binary}: SHA-256 {digest} is not the kit's {sums[name]}")
