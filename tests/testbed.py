"""The real test bed: Docker engine, registry, moto, GCS emulator, Kubernetes API emulator, PostgreSQL.

Each part starts on first use, on a free port of 127.0.0.1, under its own root folder, so two
test runs can share a machine. `python -m tests.testbed up` starts everything and prints the
environment to source; `down ROOT` stops it. In pytest, `tests/conftest.py` makes one fixture
per part, and a part that cannot be installed here skips (never in CI, where it fails).
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
from pathlib import Path

PGBIN = Path("/usr/lib/postgresql/15/bin")
HERE = Path(__file__).resolve().parent


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

    def __init__(self, root: str | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="cmb-testbed-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self._generation = 0  # how many fresh emulators so far
        self._pg_port: int | None = None
        self._exec_root: Path | None = None

    # -- process plumbing ------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, preexec_fn=_own_session
        )
        (self.root / f"{name}.pid").write_text(str(self.procs[name].pid))

    def _wait(self, name: str, probe, seconds: float = 40.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                break
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.1)
        tail = (self.root / f"{name}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"test bed part {name} did not start; log tail:\n{tail}")

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
        if "DOCKER_HOST" in self.env:
            return self.env["DOCKER_HOST"]
        dockerd = self._require("dockerd", "apt-get install docker.io busybox-static")
        if os.geteuid() != 0:
            raise PartUnavailable("dockerd needs root here")
        sock = self.root / "docker.sock"
        # exec-root path must be short: containerd sockets live under it
        self._exec_root = Path(tempfile.mkdtemp(prefix="dx", dir="/tmp"))
        self._spawn(
            "dockerd",
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--host",
                f"unix://{sock}",
                "--data-root",
                str(self.root / "docker"),
                "--exec-root",
                str(self._exec_root),
                "--pidfile",
                str(self.root / "docker.pid"),
            ],
        )
        host = f"unix://{sock}"
        self._wait(
            "dockerd",
            lambda: (
                subprocess.run(["/usr/bin/docker", "-H", host, "info"], capture_output=True, check=False).returncode
                == 0
            ),
            60,
        )
        self.env["DOCKER_HOST"] = host
        return host

    def registry(self) -> str:
        """A Docker registry v2 on 127.0.0.1. Returns host:port."""
        if "REGISTRY" in self.env:
            return self.env["REGISTRY"]
        binary = self._require("docker-registry", "apt-get install docker-registry")
        port = free_port()
        config = self.root / "registry.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage:\n  filesystem: {{rootdirectory: {self.root / 'registry'}}}\n  delete: {{enabled: true}}\n"
            f'http: {{addr: "127.0.0.1:{port}"}}\n'
        )
        self._spawn("registry", [binary, "serve", str(config)])
        self._wait("registry", lambda: self._http_ok(f"http://127.0.0.1:{port}/v2/"))
        self.env["REGISTRY"] = f"127.0.0.1:{port}"
        return self.env["REGISTRY"]

    def moto(self) -> str:
        """moto in server mode (AWS APIs). Returns the endpoint URL."""
        if "AWS_ENDPOINT_URL" in self.env:
            return self.env["AWS_ENDPOINT_URL"]
        binary = self._require(_venv_bin("moto_server"), "pip install 'moto[server]'")
        port = free_port()
        self._spawn("moto", [binary, "-H", "127.0.0.1", "-p", str(port)])
        url = f"http://127.0.0.1:{port}"
        self._wait("moto", lambda: self._http_ok(f"{url}/moto-api/"))
        self.env.update(
            {
                "AWS_ENDPOINT_URL": url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
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

    def start_all(self) -> dict[str, str]:
        for part in (self.docker, self.registry, self.moto, self.gcs, self.kubernetes, self.helm_sql):
            part()
        return dict(self.env)

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
        exec_root = self._exec_root
        if exec_root:
            subprocess.run(["umount", str(exec_root / "netns" / "default")], capture_output=True, check=False)
            shutil.rmtree(exec_root, ignore_errors=True)


def _stop_from_pids(root: Path) -> None:
    for pidfile in root.glob("*.pid"):
        if pidfile.name == "docker.pid":
            continue
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pidfile.read_text()), signal.SIGTERM)
        pidfile.unlink()


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"]:
        root = Path(argv[1]) if len(argv) > 1 else Path(".testbed")
        bed = TestBed(str(root.resolve()))
        env = bed.start_all()
        envfile = root / "env"
        envfile.write_text("".join(f"export {k}={json.dumps(v)}\n" for k, v in env.items()))
        print(f"test bed up under {root}; run: source {envfile}")
        return 0
    if argv[:1] == ["down"]:
        _stop_from_pids(Path(argv[1]) if len(argv) > 1 else Path(".testbed"))
        print("test bed stopped")
        return 0
    print("usage: python -m tests.testbed up|down [ROOT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
