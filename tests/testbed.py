"""The real test bed: Docker engine, registry, moto, GCS emulator, a real Kubernetes cluster, and the
Kubernetes API emulator with PostgreSQL (Helm's SQL driver) for what a real cluster cannot stage.

Each part starts on first use, on a free port of 127.0.0.1, under its own root folder. In
pytest the parts die with the test run; `python -m tests.testbed up ROOT` starts them detached
(they outlive the command) and writes ROOT/env to source; `down ROOT` stops exactly them.
`tests/conftest.py` makes one fixture per part; a part that cannot be installed here skips
(never in CI, where it fails).

The real cluster is the kit in `../shared/k8s` (or `$CMB_K8S_KIT`): Kubernetes v1.36
(apiserver, scheduler, controller-manager, kubelet with containerd, CNI, kube-proxy) started
on free loopback ports under a folder of its own. `$CMB_TEST_KUBECONFIG` points the tests at
a cluster of your own instead (kind, k3s, minikube: it must pull from a plain-HTTP registry on
127.0.0.1, as the kit does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.waiting import eventually
from tools.kit import HOME_PREFIX, KIT_ENV, kit_dir

PGBIN = Path("/usr/lib/postgresql/15/bin")
HERE = Path(__file__).resolve().parent
CLUSTER_ENV = "CMB_TEST_KUBECONFIG"
KIT_PORTS = (
    "K8S_APISERVER_PORT",
    "K8S_ETCD_CLIENT_PORT",
    "K8S_ETCD_PEER_PORT",
    "K8S_ETCD_METRICS_PORT",
    "K8S_KUBELET_PORT",
    "K8S_KUBELET_HEALTHZ_PORT",
    "K8S_CONTROLLER_MANAGER_PORT",
    "K8S_SCHEDULER_PORT",
    "K8S_PROXY_HEALTHZ_PORT",
    "K8S_PROXY_METRICS_PORT",
)
TEST_STORAGE_CLASS = "cmb-testbed-hostpath"
TEST_VOLUMES = 40  # hostPath PersistentVolumes for a cluster with no provisioner (the kit has none)


class PartUnavailable(Exception):
    """A part is not installed on this machine (the message says how to install it)."""


def _own_session() -> None:
    """In the child: a session of its own (stopped as a group), ended if the test run dies."""
    os.setsid()
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class TestBed:
    """Starts parts on demand; `stop()` ends every process it started."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: str | None = None, detached: bool = False) -> None:
        self.detached = detached  # parts outlive this process (`up`), else they die with it
        self.root = Path(root or tempfile.mkdtemp(prefix="cmb-testbed-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self._generation = 0  # how many fresh emulators so far
        self._pg_port: int | None = None
        self._exec_roots: list[Path] = []  # each dockerd's
        self._k8s_home: Path | None = None

    # -- process plumbing ------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=os.setsid if self.detached else _own_session,
        )
        (self.root / f"{name}.pid").write_text(str(self.procs[name].pid))

    def _wait(self, name: str, probe, seconds: float = 40.0) -> None:  # type: ignore[no-untyped-def]
        def tail() -> str:
            return (self.root / f"{name}.log").read_text(errors="replace")[-1500:]

        def started() -> bool:
            proc = self.procs.get(name)
            assert proc is None or proc.poll() is None, f"test bed part {name} exited; log tail:\n{tail()}"
            return bool(probe())

        eventually(started, lambda: f"test bed part {name} started; log tail:\n{tail()}", seconds, pause=0.1)

    @staticmethod
    def _http_ok(url: str, any_status: bool = False) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as err:
            return any_status and err.code < 500

    @staticmethod
    def _require(binary: str, install: str) -> str:
        path = shutil.which(binary) or (binary if Path(binary).exists() else None)
        if not path:
            raise PartUnavailable(f"{binary} is not installed: {install}")
        return path

    # -- parts ---------------------------------------------------------------------------
    def docker(self) -> str:
        """A private dockerd (own socket, data and exec root, host networking only). Returns DOCKER_HOST."""
        if "DOCKER_HOST" not in self.env:
            self.env["DOCKER_HOST"] = self.dockerd("docker")
        return self.env["DOCKER_HOST"]

    def dockerd(self, name: str, env: dict[str, str] | None = None) -> str:
        """Another private dockerd, files named `name`, started with `env` added (e.g. the network edge's
        proxy and CA: dockerd reads them only at start). Returns its DOCKER_HOST."""
        dockerd = self._require("dockerd", "apt-get install docker.io busybox-static")
        if os.geteuid() != 0:
            raise PartUnavailable("dockerd needs root here")
        sock = self.root / f"{name}.sock"
        # exec-root path must be short: containerd sockets live under it
        exec_root = Path(tempfile.mkdtemp(prefix="dx", dir="/tmp"))
        self._exec_roots.append(exec_root)
        (self.root / f"{name}.execroot").write_text(str(exec_root))
        self._spawn(
            f"{name}d",
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--host",
                f"unix://{sock}",
                "--data-root",
                str(self.root / name),
                "--exec-root",
                str(exec_root),
                "--pidfile",
                str(self.root / f"{name}.pid"),
            ],
            env,
        )
        host = f"unix://{sock}"
        self._wait(
            f"{name}d",
            lambda: (
                subprocess.run(["/usr/bin/docker", "-H", host, "info"], capture_output=True, check=False).returncode
                == 0
            ),
            60,
        )
        return host

    def registry(self) -> str:
        """A Docker registry v2 on 127.0.0.1. Returns host:port."""
        return self._registry("registry", "REGISTRY")

    def second_registry(self) -> str:
        """Another registry (another account's or project's, for copies between registries). Returns host:port;
        its storage is `registry_storage("registry-2")`."""
        return self._registry("registry-2", "REGISTRY_2")

    def registry_storage(self, name: str) -> Path:
        """Where a registry this bed started keeps its blobs (the distribution filesystem driver's layout)."""
        return self.root / name / "docker" / "registry" / "v2"

    def _registry(self, name: str, key: str) -> str:
        if key in self.env:
            return self.env[key]
        binary = self._require("docker-registry", "apt-get install docker-registry")
        port = free_port()
        config = self.root / f"{name}.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage:\n  filesystem: {{rootdirectory: {self.root / name}}}\n  delete: {{enabled: true}}\n"
            f'http: {{addr: "127.0.0.1:{port}"}}\n'
        )
        self._spawn(name, [binary, "serve", str(config)])
        self._wait(name, lambda: self._http_ok(f"http://127.0.0.1:{port}/v2/"))
        self.env[key] = f"127.0.0.1:{port}"
        return self.env[key]

    def moto(self) -> str:
        """moto in server mode (AWS APIs). Returns the endpoint URL."""
        if "AWS_ENDPOINT_URL" in self.env:
            return self.env["AWS_ENDPOINT_URL"]
        # ACM issues a DNS-validated certificate on the first read after the request, as if the
        # validation records had been seen at once (moto's own switch: MOTO_ACM_VALIDATION_WAIT)
        url = self._moto_server("moto", acm_validation_wait=0)
        self.env.update(
            {
                "AWS_ENDPOINT_URL": url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        return url

    def moto_acm_stuck(self) -> str:
        """A second moto whose ACM never validates a certificate (the DNS validation never completes).
        Returns its endpoint URL (for AWS_ENDPOINT_URL_ACM: the other services stay on the first moto)."""
        if "MOTO_ACM_STUCK_URL" not in self.env:
            self.env["MOTO_ACM_STUCK_URL"] = self._moto_server("moto-acm-stuck", acm_validation_wait=10**9)
        return self.env["MOTO_ACM_STUCK_URL"]

    def _moto_server(self, name: str, acm_validation_wait: int) -> str:
        binary = self._require(_venv_bin("moto_server"), "pip install 'moto[server]'")
        port = free_port()
        env = {"MOTO_ACM_VALIDATION_WAIT": str(acm_validation_wait)}
        self._spawn(name, [binary, "-H", "127.0.0.1", "-p", str(port)], env=env)
        url = f"http://127.0.0.1:{port}"
        self._wait(name, lambda: self._http_ok(f"{url}/moto-api/"))
        return url

    def moto_iam(self) -> str:
        """A second moto server that enforces IAM (the shared one allows everything): started with
        INITIAL_NO_AUTH_ACTION_COUNT, so it lets through requests unchecked only until a test turns
        checking on (`POST /moto-api/reset-auth` with 0) after seeding what the deploy role finds.
        Returns the endpoint URL."""
        if "MOTO_IAM_URL" in self.env:
            return self.env["MOTO_IAM_URL"]
        self._require(_venv_bin("moto_server"), "pip install 'moto[server]'")
        port = free_port()
        command = [sys.executable, "-m", "tests.moto_iam_server", "-H", "127.0.0.1", "-p", str(port)]
        self._spawn(
            "moto-iam",
            command,
            {"INITIAL_NO_AUTH_ACTION_COUNT": "1e9", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        url = f"http://127.0.0.1:{port}"
        self._wait("moto-iam", lambda: self._http_ok(f"{url}/moto-api/"))
        self.env["MOTO_IAM_URL"] = url
        return url

    def gcs(self) -> str:
        """The GCS emulator over HTTP. Returns STORAGE_EMULATOR_HOST."""
        if "STORAGE_EMULATOR_HOST" in self.env:
            return self.env["STORAGE_EMULATOR_HOST"]
        binary = self._require(_venv_bin("gcp-storage-emulator"), "pip install gcp-storage-emulator")
        port = free_port()
        self._spawn("gcs", [binary, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"])
        url = f"http://127.0.0.1:{port}"
        self._wait("gcs", lambda: self._http_ok(url + "/", any_status=True))
        self.env["STORAGE_EMULATOR_HOST"] = url
        return url

    def kubernetes(self) -> str:
        """The kmock Kubernetes API emulator. Returns the path of a kubeconfig for it."""
        if "KUBECONFIG" in self.env:
            return self.env["KUBECONFIG"]
        port = free_port()
        self._spawn("kmock", [sys.executable, str(HERE / "kmock_server.py"), str(port)])
        self._wait("kmock", lambda: self._http_ok(f"http://127.0.0.1:{port}/version"))
        kubeconfig = self.root / f"kubeconfig{self._generation or ''}"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f'clusters: [{{name: kmock, cluster: {{server: "http://127.0.0.1:{port}"}}}}]\n'
            "users: [{name: kmock, user: {token: dummy}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: kmock, namespace: default}}]\n"
            "current-context: kmock\n"
        )
        self.env["KUBECONFIG"] = str(kubeconfig)
        self.env["KMOCK_URL"] = f"http://127.0.0.1:{port}"
        return str(kubeconfig)

    def cluster(self) -> str:
        """A real Kubernetes cluster. Returns the path of an admin kubeconfig.

        $CMB_TEST_KUBECONFIG wins (a cluster of your own); else the kit is installed and started
        under a short folder of its own (unix sockets live under it), on free loopback ports.
        A cluster with no default StorageClass gets one, backed by hostPath volumes.
        """
        if "CLUSTER_KUBECONFIG" in self.env:
            return self.env["CLUSTER_KUBECONFIG"]
        own = os.environ.get(CLUSTER_ENV)
        if own:
            if not Path(own).is_file():
                raise PartUnavailable(f"{CLUSTER_ENV}={own} is not a file: point it at a kubeconfig")
            kubeconfig = own
        else:
            kubeconfig = self._start_kit()
        self.env["CLUSTER_KUBECONFIG"] = kubeconfig
        ensure_test_storage(kubeconfig, self.root / "volumes" if not own else None)
        return kubeconfig

    def cluster_with_images(self) -> tuple[str, str]:
        """The real cluster and what puts images in front of its kubelet: (kubeconfig, registry)."""
        kubeconfig = self.cluster()
        self.docker()
        return kubeconfig, self.registry()

    def cluster_env(self) -> dict[str, str]:
        """The started parts' environment for a process that talks to the real cluster: its
        kubeconfig, and none of the emulator's settings (kmock, Helm's SQL driver)."""
        kubeconfig = self.cluster()
        parts = {k: v for k, v in self.env.items() if not k.startswith(("HELM_DRIVER", "KMOCK"))}
        return {**parts, "KUBECONFIG": kubeconfig}

    def _start_kit(self) -> str:
        kit = kit_dir()
        if kit is None:
            raise PartUnavailable(
                f"no Kubernetes cluster: put the kit at ../shared/k8s, set {KIT_ENV}=DIR, "
                f"or set {CLUSTER_ENV}=KUBECONFIG of a cluster of your own"
            )
        if os.geteuid() != 0:
            raise PartUnavailable("the Kubernetes kit needs root (kubelet, containerd, iptables)")
        stop_orphaned_kits()
        home = Path(tempfile.mkdtemp(prefix=HOME_PREFIX, dir="/tmp"))  # <= 64 characters
        self._k8s_home = home
        (self.root / "k8s.home").write_text(str(home))
        (home / "owner.pid").write_text(str(os.getpid() if not self.detached else 0))
        env = {**os.environ, "K8S_HOME": str(home), **{var: str(free_port()) for var in KIT_PORTS}}
        log = self.root / "k8s.log"
        for step in ("install.sh", "up.sh"):
            with open(log, "ab") as out:
                proc = subprocess.run(
                    ["bash", str(kit / "reference" / step), str(home)],
                    stdout=subprocess.PIPE,
                    stderr=out,
                    env=env,
                    check=False,
                    timeout=600,
                )
            if proc.returncode != 0:
                tail = log.read_text(errors="replace")[-2500:]
                raise RuntimeError(f"the Kubernetes kit's {step} failed; log tail:\n{tail}")
        self.env["K8S_HOME"] = str(home)
        return str(home / "kubeconfig")

    def helm_sql(self) -> str:
        """PostgreSQL for Helm's SQL release driver (kmock cannot store Helm's Secrets). Returns the DSN."""
        if "HELM_DRIVER_SQL_CONNECTION_STRING" in self.env:
            return self.env["HELM_DRIVER_SQL_CONNECTION_STRING"]
        if not (PGBIN / "initdb").exists():
            raise PartUnavailable("PostgreSQL 15 is not installed: apt-get install postgresql-15")
        port = free_port()
        pgroot = Path(tempfile.mkdtemp(prefix="cmb-pg-"))
        data = pgroot / "data"
        as_postgres: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            shutil.chown(pgroot, "postgres")
            as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, str(PGBIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "helm"],
            check=True,
            capture_output=True,
        )
        self._spawn(
            "postgres",
            [
                *as_postgres,
                str(PGBIN / "postgres"),
                "-D",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(pgroot),
            ],
        )

        def ready() -> bool:
            return (
                subprocess.run(
                    [str(PGBIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True, check=False
                ).returncode
                == 0
            )

        self._wait("postgres", ready)
        self._pg_port = port
        return self._new_helm_database("helm")

    def _new_helm_database(self, name: str) -> str:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self._pg_port),
                "-U",
                "helm",
                "-d",
                "postgres",
                "-qc",
                f"create database {name}",
            ],
            check=True,
            capture_output=True,
        )
        dsn = f"postgresql://helm@127.0.0.1:{self._pg_port}/{name}?sslmode=disable"
        self.env.update({"HELM_DRIVER": "sql", "HELM_DRIVER_SQL_CONNECTION_STRING": dsn})
        return dsn

    # -- a clean cluster per test module ------------------------------------------------------
    def fresh_kubernetes(self) -> str:
        """Replace the emulator with an empty one (and give Helm an empty release database).

        kmock keeps every object and every watch it ever served; one emulator shared by the
        whole session grows slower with each module, so each test module gets its own.
        """
        self._generation += 1
        if "kmock" in self.procs:
            self._stop("kmock")
        for key in ("KUBECONFIG", "KMOCK_URL"):
            self.env.pop(key, None)
        kubeconfig = self.kubernetes()
        if self._pg_port:
            self._new_helm_database(f"helm{self._generation}")
        return kubeconfig

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def start_all(self, parts: Sequence[str] = ("docker", "registry", "moto", "gcs", "cluster")) -> dict[str, str]:
        """The parts for manual use: KUBECONFIG is the real cluster (the emulator is the tests' own)."""
        for part in parts:
            getattr(self, part)()
        cluster = {"KUBECONFIG": self.env["CLUSTER_KUBECONFIG"]} if "CLUSTER_KUBECONFIG" in self.env else {}
        return {**self.env, **cluster}

    # -- stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        for exec_root in self._exec_roots:
            subprocess.run(["umount", str(exec_root / "netns" / "default")], capture_output=True, check=False)
            shutil.rmtree(exec_root, ignore_errors=True)
        self._exec_roots.clear()
        if self._k8s_home:
            stop_kit(self._k8s_home)
            self._k8s_home = None


def stop_kit(home: Path) -> None:
    """down.sh of the kit for this cluster (exactly what up.sh started), then its folder."""
    kit = kit_dir()
    if kit is not None and (home / "run").exists():
        subprocess.run(["bash", str(kit / "reference" / "down.sh"), str(home)], capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def stop_orphaned_kits() -> None:
    """A test run that was killed leaves its cluster up, and the kit allows one per machine: stop it."""
    for home in Path("/tmp").glob(f"{HOME_PREFIX}*"):
        try:
            owner = int((home / "owner.pid").read_text() or 0)
        except (OSError, ValueError):
            owner = -1
        if owner == 0 and os.environ.get("CI") != "true":  # `testbed up`'s: `testbed down` stops it
            continue
        if owner > 0 and Path(f"/proc/{owner}").exists():
            continue
        stop_kit(home)


def ensure_test_storage(kubeconfig: str, volumes: Path | None) -> None:
    """Give a cluster without a default StorageClass one, with hostPath volumes under `volumes`.

    The kit has no volume provisioner; the chart's database claim needs a volume to bind.
    Volumes are made Available again (emptied) when their claim is gone.
    """
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    storage = client.StorageV1Api(api)
    classes = storage.list_storage_class().items
    default = "storageclass.kubernetes.io/is-default-class"
    if any((c.metadata.annotations or {}).get(default) == "true" for c in classes) or volumes is None:
        return
    if not any(c.metadata.name == TEST_STORAGE_CLASS for c in classes):
        storage.create_storage_class(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": TEST_STORAGE_CLASS, "annotations": {default: "true"}},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
                "reclaimPolicy": "Retain",
            }
        )
    core = client.CoreV1Api(api)
    existing = {pv.metadata.name for pv in core.list_persistent_volume().items}
    for index in range(TEST_VOLUMES):
        name = f"{TEST_STORAGE_CLASS}-{index:02d}"
        if name in existing:
            continue
        path = volumes / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        core.create_persistent_volume(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"cmb-testbed": "volume"}},
                "spec": {
                    "capacity": {"storage": "2Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": TEST_STORAGE_CLASS,
                    "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                },
            }
        )


def recycle_test_volumes(kubeconfig: str) -> int:
    """Empty the test volumes whose claim was deleted and make them Available again. Returns how many."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    recycled = 0
    for pv in core.list_persistent_volume(label_selector="cmb-testbed=volume").items:
        if pv.status.phase != "Released":
            continue
        path = Path(pv.spec.host_path.path)
        if path.is_dir():
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        core.patch_persistent_volume(pv.metadata.name, {"spec": {"claimRef": None}})
        recycled += 1
    return recycled


def _stop_from_pids(root: Path) -> None:
    """Stop exactly the parts `up` started under `root` (their process groups, and the kit's cluster)."""
    groups = []
    for pidfile in root.glob("*.pid"):
        if pidfile.name == "docker.pid":
            continue
        with contextlib.suppress(ProcessLookupError, ValueError):
            pid = int(pidfile.read_text())
            os.killpg(pid, signal.SIGTERM)
            groups.append(pid)
        pidfile.unlink()
    deadline = time.monotonic() + 15
    while groups and time.monotonic() < deadline:
        groups = [pid for pid in groups if _group_alive(pid)]
        time.sleep(0.1)
    for pid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    home = root / "k8s.home"
    if home.exists():
        stop_kit(Path(home.read_text().strip()))
        home.unlink()
    exec_root = root / "docker.execroot"
    if exec_root.exists():
        folder = Path(exec_root.read_text().strip())
        subprocess.run(["umount", str(folder / "netns" / "default")], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        exec_root.unlink()
    env = root / "env"
    if env.exists():
        env.unlink()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


MANUAL_PARTS = ("docker", "registry", "moto", "gcs", "cluster")


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description="start or stop the test bed")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("root", nargs="?", default=".testbed", help="its folder (default .testbed)")
    parser.add_argument("--parts", default=",".join(MANUAL_PARTS), help=f"with up: some of {','.join(MANUAL_PARTS)}")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.action == "down":
        _stop_from_pids(root)
        print("test bed stopped")
        return 0
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(MANUAL_PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: use some of {','.join(MANUAL_PARTS)}")
    bed = TestBed(str(root.resolve()), detached=True)
    try:
        env = bed.start_all(parts)
    except PartUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        _stop_from_pids(root)
        return 1
    envfile = root / "env"
    envfile.write_text("".join(f"export {k}={json.dumps(v)}\n" for k, v in env.items()))
    print(f"test bed up under {root}; run: source {envfile}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
