"""`make demo`: the whole chain on a real cluster from a fresh clone, with nothing to configure.

It starts what it needs, writes a configuration of its own under `.demo/` (git-ignored; the
sign-in secret generated there, mode 0600, never printed; the application secrets generated and
kept by make_secrets), and runs `make deploy-local` on it exactly as a user does, timing each
step by make's own command lines. Run again, it is a no-op deploy. `--fail crash`
(`make demo DEMO_FAIL=crash`) then deploys a backend that crashes: smoke_test diagnoses it and
rolls back, the demo checks that the good release runs again, and exits 1.

The cluster: `KUBECONFIG` when set (your kind, k3s or minikube; it must pull from a plain-HTTP
registry on 127.0.0.1); else the Kubernetes kit (`../shared/k8s`, `$CMB_K8S_KIT`, or laid out
from the official release binaries: tools/kit.py). The kit allows one kubelet per machine: a
kubelet the demo did not start is named, never joined or stopped.

Why the test bed runs as commands (`python -m tests.testbed up|down`, `python -m
tests.fixtures.apps`) and is not imported: the test bed is the one place that starts the real
parts (a private Docker engine, a registry, the kit's cluster) and stops exactly them, and the
stand-in apps live beside it. Both ship in every clone (tests/ is part of the repository, like
`make testbed-up`, which runs the same command), so there is one copy of that logic and tools/
imports nothing from tests/. With `../cmbcluster` beside the repository its sources are built
instead of the stand-ins.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tools import cli, kube_ops
from tools.demo_report import print_figures, print_summary
from tools.errors import ToolError
from tools.images import load_images
from tools.kit import KIT_ENV, is_kit, kit_dir, lay_out_from_release, running_kubelets
from tools.kube_client import ApiError, path
from tools.report import REPORTER
from tools.runner import run, run_lines
from tools.settings import REPO_ROOT, read_env_file

DEFAULT_DIR = REPO_ROOT / ".demo"
NAMESPACE = "cmbcluster-demo"
RELEASE = "cmbcluster"
INGRESS_CLASS = "nginx"
SOURCES = REPO_ROOT.parent / "cmbcluster"  # the real applications, when they are beside the repository
SOURCE_CONTEXTS = {"BACKEND": "backend", "FRONTEND": "nextjs-frontend", "USER_ENV": "user-environment"}
# One line of make's per step of the chain: the command it runs, e.g. `.venv/bin/python -m tools.build_push ...`
STEP_LINE = re.compile(r"^\S*python3?\s+-m\s+tools\.(\w+)\s")
# The environment of `make demo` itself must not reach the chain's make (it is a user's fresh `make`)
# (make also exports its command-line variables, e.g. `make demo ARGS=...`, to its recipes' environment)
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
FRESH_MAKE_VARS = ("ARGS=", "DRY_RUN=", "HELM_DEPLOY_ARGS=")


class Demo:
    """One demo folder: its test bed, configuration, images files, figures and state."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.root, self.namespace = root.resolve(), namespace
        self.bed = self.root / "bed"
        self.env_file = self.root / "local.env"
        self.images = self.root / "images.json"
        self.figures_file = self.root / "figures.json"
        self.state_file = self.root / "state.json"
        self.laid_out_kit = self.root / "kit"  # where there is no kit: the release binaries, laid out once

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}

    def save_state(self, **changes: object) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **changes}, indent=1))

    def bed_env(self) -> dict[str, str]:
        """What `tests.testbed up` wrote to source (`export NAME="value"` lines), or {}."""
        envfile = self.bed / "env"
        if not envfile.is_file():
            return {}
        pairs = (line.removeprefix("export ").split("=", 1) for line in envfile.read_text().splitlines() if "=" in line)
        return {name: json.loads(value) for name, value in pairs}

    def own_kit_home(self) -> str:
        home = self.bed / "k8s.home"
        return home.read_text().strip() if home.is_file() else ""

    # -- the parts ----------------------------------------------------------------------------
    def cluster_source(self) -> str:
        """Where the cluster comes from: "yours" (KUBECONFIG) or "kit" (laid out first where there is none).
        Refuses a kubelet it did not start, and says what a machine without a kit needs."""
        kubeconfig = os.environ.get("KUBECONFIG", "")
        if kubeconfig:
            missing = [part for part in kubeconfig.split(os.pathsep) if part and not Path(part).is_file()]
            if missing:
                raise ToolError(f"KUBECONFIG={kubeconfig}: {missing[0]} is not a file: point it at your cluster's one")
            return "yours"
        own = self.own_kit_home()
        foreign = [k for k in running_kubelets() if not own or str(k.home) != own]
        if foreign:
            where = (
                f"KUBECONFIG={foreign[0].kubeconfig} make demo" if foreign[0].kubeconfig else "KUBECONFIG=... make demo"
            )
            raise ToolError(
                f"a kubelet the demo did not start runs here (pid {foreign[0].pid}) and the kit allows one per "
                f"machine: deploy into that cluster with `{where}`, or stop it first"
            )
        chosen = os.environ.get(KIT_ENV)
        kit = kit_dir()
        if chosen and (kit is None or not is_kit(kit)):
            raise ToolError(
                f"{KIT_ENV}={chosen} is not a Kubernetes kit (reference/up.sh, bin/SHA256SUMS): fix or unset it"
            )
        if os.geteuid() != 0:
            raise ToolError(
                "no cluster: the Kubernetes kit needs root (kubelet, containerd, iptables): run as root, "
                "or point KUBECONFIG at a cluster of your own (kind, k3s, minikube)"
            )
        if kit is None and not is_kit(self.laid_out_kit):
            with REPORTER.action("Kubernetes v1.36.2 from the official release binaries (SHA-256 checked)") as result:
                result.detail = str(lay_out_from_release(self.laid_out_kit))
        return "kit"

    def kit_env(self) -> dict[str, str]:
        """CMB_K8S_KIT for the test bed when the kit is the one laid out in the demo's folder (its up and down)."""
        return {KIT_ENV: str(self.laid_out_kit)} if kit_dir() is None and is_kit(self.laid_out_kit) else {}

    def start_parts(self, source: str) -> dict[str, str]:
        """The test bed's Docker engine and registry (and the kit's cluster): reused when up, else started."""
        env = self.bed_env()
        if env and self._alive(env, source):
            REPORTER.ok(f"test bed: running under {self.bed} (reused)")
            return env
        if self.bed.exists():
            self.testbed("down")
        parts = "docker,registry" + (",cluster" if source == "kit" else "")
        with REPORTER.action(f"test bed: {parts.replace(',', ', ')} under {self.bed}"):
            self.testbed("up", "--parts", parts)
        return self.bed_env()

    def _alive(self, env: dict[str, str], source: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{env['REGISTRY']}/v2/", timeout=2) as response:
                registry = response.status == 200
        except (OSError, KeyError):
            registry = False
        docker = Path(env.get("DOCKER_HOST", "").removeprefix("unix://")).is_socket()
        cluster = source == "yours" or any(str(k.home) == env.get("K8S_HOME") for k in running_kubelets())
        return registry and docker and cluster

    def testbed(self, action: str, *args: str) -> None:
        """`python -m tests.testbed ACTION` on the demo's bed."""
        self._command("tests.testbed", action, str(self.bed), *args, what=f"the test bed's {action}")

    def _command(self, module: str, *args: str, what: str) -> str:
        """`python -m MODULE ARGS` of the test bed (see the module's docstring); its last line when it fails."""
        # The test bed takes a cluster of your own from CMB_TEST_KUBECONFIG: the demo's choice is made above
        child = {k: v for k, v in {**os.environ, **self.kit_env()}.items() if k != "CMB_TEST_KUBECONFIG"}
        proc = run([sys.executable, "-m", module, *args], cwd=str(REPO_ROOT), env=child, check=False)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            reason = lines[-1].removeprefix("error: ") if lines else f"exit code {proc.returncode}"
            raise ToolError(f"{what} failed: {reason} (logs, if any: {self.bed}/*.log)")
        return proc.stdout

    # -- configuration ------------------------------------------------------------------------
    def contexts(self, variant: str = "") -> dict[str, str]:
        """The three build contexts: ../cmbcluster's sources when there, else the stand-ins staged here."""
        if not variant and all((SOURCES / folder).is_dir() for folder in SOURCE_CONTEXTS.values()):
            return {f"{name}_CONTEXT": str(SOURCES / folder) for name, folder in SOURCE_CONTEXTS.items()}
        folder = self.root / ("apps-" + variant if variant else "apps")
        extra = ("--backend-variant", variant) if variant else ()
        out = self._command("tests.fixtures.apps", str(folder), *extra, what="staging the stand-in apps")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def write_config(self, registry: str, path: Path, contexts: dict[str, str]) -> Path:
        """The demo's env file: local cloud, the test bed's registry, a generated sign-in secret (kept)."""
        kept = read_env_file(self.env_file) if self.env_file.is_file() else {}
        values = {
            "CLOUD_PROVIDER": "local",
            "ENVIRONMENT": "production",
            "CLUSTER_NAME": "cmbdemo",
            "NAMESPACE": self.namespace,
            "RELEASE_NAME": RELEASE,
            "BASE_DOMAIN": "cmbcluster.localtest.me",
            "INGRESS_CLASS": INGRESS_CLASS,
            "REGISTRY_URL": registry,
            **contexts,
            "AUTH_PROVIDER": "google",
            # No real sign-in here: a client of the right shape and a secret of its own (SECRET_KEY,
            # NEXTAUTH_SECRET and FILE_ENCRYPTION_KEY are left to make_secrets, which generates and keeps them)
            "GOOGLE_CLIENT_ID": "cmbcluster-demo.apps.googleusercontent.com",
            "GOOGLE_CLIENT_SECRET": kept.get("GOOGLE_CLIENT_SECRET") or secrets.token_urlsafe(32),
        }
        REPORTER.register_secrets([values["GOOGLE_CLIENT_SECRET"]])
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(
            "# written by `make demo` (tools/demo.py): a local-cloud site on the demo's cluster\n"
            + "".join(f"{name}={value}\n" for name, value in values.items())
        )
        return path

    def prepare_cluster(self, kubeconfig: str) -> None:
        """The namespace (a cluster admin's one-time job) and an IngressClass nginx when there is none."""
        api = kube_ops.api_client(kubeconfig)
        with REPORTER.action(f"namespace {self.namespace}") as result:
            result.detail = kube_ops.ensure_namespace(api, self.namespace)[1]
        found = kube_ops.call(
            api, lambda: api.get(path("ingressclasses", name=INGRESS_CLASS)), "reading IngressClass", True
        )
        if found is None:
            body = {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": INGRESS_CLASS},
                "spec": {"controller": "k8s.io/ingress-nginx"},
            }

            def create() -> bool:
                try:
                    api.create(path("ingressclasses"), body)
                except ApiError as exc:
                    if exc.status == 409:  # made meanwhile by someone else: theirs, left alone
                        return False
                    raise
                return True

            if not kube_ops.call(api, create, f"creating IngressClass {INGRESS_CLASS}"):
                return
            self.save_state(ingress_class_created=True)
            REPORTER.ok(
                f"IngressClass {INGRESS_CLASS}: created (no ingress controller answers it: smoke skips the endpoints)"
            )

    # -- the chain ----------------------------------------------------------------------------
    def chain(
        self, env: dict[str, str], env_file: Path, images: Path, *make_vars: str
    ) -> tuple[int, list[tuple[str, float]]]:
        """`make deploy-local` on the demo's configuration, its output passed through; the seconds per step."""
        command = [
            "make",
            "--no-print-directory",
            "deploy-local",
            f"ENV_FILE={env_file}",
            f"IMAGES_FILE={images}",
            "SMOKE_ARGS=--no-endpoints",
            *FRESH_MAKE_VARS,
            *make_vars,
        ]
        REPORTER.info(" ".join(command))
        child = {k: v for k, v in {**os.environ, **env}.items() if k not in MAKE_VARS}
        steps: list[tuple[str, float]] = []
        started = time.monotonic()

        def show(line: str) -> None:
            nonlocal started
            sys.stdout.write(REPORTER.redact(line))
            sys.stdout.flush()
            match = STEP_LINE.match(line)
            if match:
                now = time.monotonic()
                if steps:
                    steps[-1] = (steps[-1][0], now - started)
                steps.append((match.group(1), 0.0))
                started = now

        code = run_lines(command, show, env=child, cwd=str(REPO_ROOT))
        if steps:
            steps[-1] = (steps[-1][0], time.monotonic() - started)
        return code, steps


def up(demo: Demo, fail: str | None) -> int:
    start = time.monotonic()
    demo.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = demo.cluster_source()
    env = demo.start_parts(source)
    kubeconfig = os.environ["KUBECONFIG"] if source == "yours" else env["KUBECONFIG"]
    env = {**env, "KUBECONFIG": kubeconfig}
    demo.save_state(cluster=source, kubeconfig=kubeconfig, namespace=demo.namespace)
    demo.prepare_cluster(kubeconfig)
    demo.write_config(env["REGISTRY"], demo.env_file, demo.contexts())
    before = demo.images.read_text() if demo.images.is_file() else None
    code, steps = demo.chain(env, demo.env_file, demo.images)
    if code != 0:
        raise ToolError(
            f"make deploy-local failed (exit {code}): the lines above say why; make demo-down stops the demo"
        )
    label = (
        "first deploy" if before is None else ("no-op redeploy" if demo.images.read_text() == before else "redeploy")
    )
    print_figures(demo.figures_file, label, steps)
    REPORTER.ok(f"demo: {label} done, healthy", time.monotonic() - start)
    if fail == "crash":
        return crash(demo, env, kubeconfig)
    print_summary(RELEASE, demo.namespace, env, kubeconfig, demo.images)
    return 0


def crash(demo: Demo, env: dict[str, str], kubeconfig: str) -> int:
    """Deploy a backend that crashes: smoke diagnoses it and rolls back; check the good one runs again."""
    REPORTER.info("failure path: the same chain with a backend that exits at once (smoke diagnoses it, rolls back)")
    crash_env = demo.write_config(env["REGISTRY"], demo.root / "crash.env", demo.contexts("crash"))
    start = time.monotonic()
    code, _ = demo.chain(env, crash_env, demo.root / "images-crash.json", "HELM_DEPLOY_ARGS=--no-wait")
    if code == 0:
        raise ToolError("the crashing backend was not caught: smoke_test passed it (a defect: please report it)")
    good = load_images(demo.images)["backend"]
    wanted = f"{good['repository']}@{good['digest']}"
    api = kube_ops.api_client(kubeconfig)
    deployment = kube_ops.call(
        api, lambda: api.get(path("deployments", demo.namespace, f"{RELEASE}-backend")), "reading the backend"
    )
    running = deployment["spec"]["template"]["spec"]["containers"][0]["image"] if deployment else ""
    ready = (deployment or {}).get("status", {}).get("readyReplicas", 0)
    if running != wanted or not ready:
        raise ToolError(f"the good release was not restored: the backend runs {running or 'nothing'} ({ready} ready)")
    REPORTER.line(
        "error",
        f"demo: the crashing backend was diagnosed and rolled back; the good one runs again ({wanted}, {ready} ready)",
        time.monotonic() - start,
    )
    print_summary(RELEASE, demo.namespace, env, kubeconfig, demo.images)
    return 1


def down(demo: Demo) -> int:
    """Stop everything the demo started: its namespace (on your cluster), its IngressClass, the test bed."""
    state = demo.state()
    kubeconfig = str(state.get("kubeconfig") or "")
    if state.get("cluster") == "yours" and Path(kubeconfig).is_file():
        api = kube_ops.api_client(kubeconfig)
        with REPORTER.action(f"namespace {demo.namespace}") as result:
            gone = kube_ops.call(
                api, lambda: api.delete(path("namespaces", name=demo.namespace)), "deleting the namespace", True
            )
            result.detail = "deleted" if gone is not None else "not there"
        if state.get("ingress_class_created"):
            kube_ops.call(
                api, lambda: api.delete(path("ingressclasses", name=INGRESS_CLASS)), "deleting the IngressClass", True
            )
            REPORTER.ok(f"IngressClass {INGRESS_CLASS}: deleted (the demo created it)")
    if demo.bed.exists():
        with REPORTER.action(f"test bed under {demo.bed}: stopped"):
            demo.testbed("down")
        shutil.rmtree(demo.bed / "volumes", ignore_errors=True)  # the kit's database volume: a new cluster starts empty
    for leftover in (demo.state_file, demo.figures_file, demo.images, demo.root / "images-crash.json"):
        leftover.unlink(missing_ok=True)
    REPORTER.ok("demo stopped: nothing of it runs (make demo starts it again)")
    return 0


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    parser.add_argument("action", nargs="?", choices=("up", "down"), default="up")
    parser.add_argument("--fail", choices=("crash",), help="then show the failure path (make demo DEMO_FAIL=crash)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the demo's folder (default .demo/)")
    parser.add_argument("--namespace", default=NAMESPACE, help=f"where the release goes (default {NAMESPACE})")
    args = parser.parse_args(argv)
    demo = Demo(args.dir, args.namespace)
    return down(demo) if args.action == "down" else up(demo, args.fail)


if __name__ == "__main__":
    sys.exit(main())
