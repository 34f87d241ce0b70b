"""Benchmark: the whole local chain on the real cluster (`make bench-deploy`).

Three deploys of the stand-in application with the real chart, each step run as `make
deploy-local` runs it (`python -m tools.STEP ...`): a first deploy (cold build, install), a
no-op redeploy, and a redeploy with one image changed. For every step it prints the wall time,
the time from the process start to its first request of any kind (bench/first_request.py notes
the first connect() of the step's Python process: registry, Docker or cluster), and to its first
request to the cluster from any of its processes (helm too): the kubeconfig points at a
loopback TCP relay in front of the API server that notes when the first connection arrives.
Then one no-op `make deploy-local`, timed whole (helm_deploy makes no new revision: tools/unchanged.py).

Goals: a no-op `make deploy-local` under 4 s, a first deploy under 12 s (its steps together); no
step more than 0.5 s before its first request. The exit code is 1 when a goal is missed.
The cluster is the test bed's kit (or $CMB_TEST_KUBECONFIG); the registry and Docker engine
are the test bed's. The cluster has no ingress controller: smoke runs with --no-endpoints.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from tools.settings import REPO_ROOT

NOOP_GOAL, FIRST_GOAL = 4.0, 12.0  # seconds
STEPS = (
    ("validate", "validate_secrets", ()),
    ("build", "build_push", ("--output", "{images}")),
    ("secrets", "make_secrets", ()),
    ("helm-deploy", "helm_deploy", ("--images", "{images}")),
    ("smoke", "smoke_test", ("--images", "{images}", "--no-endpoints")),
)


class Relay:
    """A loopback TCP relay to the API server that remembers when the first connection came."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.first: float | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def reset(self) -> None:
        self.first = None

    def _serve(self) -> None:
        while True:
            client, _ = self.server.accept()
            if self.first is None:
                self.first = time.monotonic()
            upstream = socket.create_connection(self.target)
            for end in (client, upstream):  # relay each write at once (Nagle would add ~40 ms a request)
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def relayed_kubeconfig(kubeconfig: str, folder: Path) -> tuple[str, Relay]:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    host, _, port = cluster["server"].removeprefix("https://").rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"bench-deploy relays only a loopback API server, not {cluster['server']}")
    relay = Relay((host, int(port)))
    cluster["server"] = f"https://{host}:{relay.port}"
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path), relay


def run_chain(label: str, env: dict[str, str], env_file: Path, images: Path, relay: Relay) -> float:
    total = 0.0
    for step, tool, extra in STEPS:
        args = [a.format(images=images) for a in extra]
        marker = env_file.parent / "first-request"
        marker.unlink(missing_ok=True)
        relay.reset()
        start, wall = time.monotonic(), time.time()
        command = [sys.executable, "-m", "bench.first_request", str(marker), repr(wall), f"tools.{tool}"]
        command += ["--cloud", "local", "--env-file", str(env_file), *args]
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
        took = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"{label}: {step} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        first = f"{float(marker.read_text()):5.2f}s" if marker.exists() else "    -"
        cluster = f"{relay.first - start:5.2f}s" if relay.first is not None else "    -"
        print(
            f"{label:<18} {step:<12} {took:6.2f}s   first request {first}   first cluster request {cluster}", flush=True
        )
        total += took
    print(f"{label:<18} {'all steps':<12} {total:6.2f}s", flush=True)
    return total


def main() -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.envfiles import good_env, write_env
    from tests.fixtures.apps import stage_apps
    from tests.realcluster import create_namespace, delete_namespace, ensure_ingress_class
    from tests.testbed import PartUnavailable, TestBed

    bed = TestBed()
    try:
        try:
            kubeconfig, registry = bed.cluster_with_images()
        except PartUnavailable as exc:
            print(f"bench-deploy needs the real cluster: {exc}")
            return 1
        ensure_ingress_class(kubeconfig)
        with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
            folder = Path(tmp)
            relayed, relay = relayed_kubeconfig(kubeconfig, folder)
            namespace = create_namespace(kubeconfig, "bench-deploy")
            try:
                contexts = stage_apps(folder / "apps")
                values = good_env(
                    "local", NAMESPACE=namespace, REGISTRY_URL=registry, CLUSTER_NAME=f"bench{os.getpid()}"
                )
                values.update({f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in contexts.items()})
                env_file = write_env(folder / "local.env", values)
                images = folder / "images.json"
                env = {**os.environ, **bed.cluster_env(), "KUBECONFIG": relayed, "NO_COLOR": "1"}
                for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
                    env.pop(key, None)
                first = run_chain("first deploy", env, env_file, images, relay)
                noop = run_chain("no-op redeploy", env, env_file, images, relay)
                page = contexts["frontend"] / "www" / "index.html"
                page.write_text(page.read_text() + "\n<!-- changed -->\n")
                run_chain("one image changed", env, env_file, images, relay)
                start = time.monotonic()
                make = subprocess.run(
                    [
                        "make",
                        "--no-print-directory",
                        "deploy-local",
                        f"ENV_FILE={env_file}",
                        f"IMAGES_FILE={images}",
                        "SMOKE_ARGS=--no-endpoints",
                    ],
                    cwd=REPO_ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                whole = time.monotonic() - start
                if make.returncode != 0:
                    raise SystemExit(f"make deploy-local failed:\n{make.stdout[-2000:]}{make.stderr[-2000:]}")
                print(f"first deploy: {first:.2f}s in all steps (goal: under {FIRST_GOAL:.0f} s)")
                print(
                    f"no-op `make deploy-local`: {whole:.2f}s (steps alone {noop:.2f}s; goal: under {NOOP_GOAL:.0f} s)"
                )
                return 0 if whole < NOOP_GOAL and first < FIRST_GOAL else 1
            finally:
                delete_namespace(kubeconfig, namespace)
    finally:
        bed.stop()


if __name__ == "__main__":
    raise SystemExit(main())
