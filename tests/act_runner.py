"""Running `release.yml` in act on this machine: one run's events, and the bed its jobs run against.

Shared by tests/test_e2e_act.py (the local target) and tests/test_e2e_act_sim.py (the simulated EKS and GKE).
The workflows are not changed for act but for one line (nektos/act#6095, "Unknown Property queue"); the
third-party actions they pin are replaced by the stand-ins in tests/fixtures/actions; the configuration
reaches the jobs as GitHub would give it: repository variables (--var-file), secrets (--secret-file) and the
runner's environment (--env-file). act has no environments (nektos/act#1714): every job of a run reads the same
variables, so a run's staging and production share their settings (one registry, namespace and identity).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.envfiles import good_env, write_env
from tools.settings import REPO_ROOT, VARS_BY_NAME

BIN = Path(sys.executable).parent
ACT = BIN / "act"
STAND_INS = REPO_ROOT / "tests" / "fixtures" / "actions"
STAND_IN_FOR = {
    "actions/setup-python": "setup-python",
    "actions/checkout": "checkout",
    "aws-actions/configure-aws-credentials": "configure-aws-credentials",
    "google-github-actions/auth": "google-auth",
}
STEPS = ("validate", "build", "secrets", "certs", "helm-deploy", "dns", "smoke")
# what the app checkout in deploy.yml produces: the layout of the CMBCluster repository
APP_LAYOUT = {"backend": "backend", "frontend": "nextjs-frontend", "user-env": "user-environment"}
REPOSITORY = "CMBAgents/cmbcluster-deploy"
GITHUB_TOKEN = "e2e-github-token"
RELEASE = "cmbcluster"
ACT_TIMEOUT = 900
# act names a job of the top workflow WORKFLOW/JOB-NAME
TARGETS, SOURCE = "release/targets", "release/application source"


# -- one act run -----------------------------------------------------------------------------------
@dataclass
class ActRun:
    returncode: int
    events: list[dict[str, Any]]
    output: str
    seconds: float
    summaries: list[tuple[str, str]] = field(default_factory=list)

    def job_results(self) -> dict[str, str]:
        return {e["job"]: e["jobResult"] for e in self.events if "jobResult" in e}

    def chain(self, environment: str, target: str = "local") -> list[str]:
        """The act job names of the chain of `target` in one environment: the gate, then the approved job that
        runs every step. act names a job CALLER-JOB-NAME/WORKFLOW/JOB-NAME; deploy.yml's jobs carry the
        target and environment in their names."""
        names = [f"{environment}/deploy/{job} ({target}-{environment})" for job in ("gate", "deploy")]
        results = self.job_results()
        missing = [name for name in names if name not in results]
        assert not missing, f"jobs {missing} did not run; ran {sorted(results)}"
        return names

    def first(self, job: str, text: str) -> int:
        return next(i for i, e in enumerate(self.events) if e.get("job") == job and text in e.get("msg", ""))

    def last(self, job: str, text: str) -> int:
        return max(i for i, e in enumerate(self.events) if e.get("job") == job and text in e.get("msg", ""))

    def outputs(self, job: str) -> dict[str, str]:
        return {e["name"]: e["arg"] for e in self.events if e.get("job") == job and e.get("command") == "set-output"}


@dataclass
class Bed:
    env: dict[str, str]
    registry: str
    kubeconfig: str
    namespace: str
    workdir: Path
    values: dict[str, str]
    app_sha: str  # the application's commit, which every job of a run must use
    workflow_vars: dict[str, str] = field(default_factory=dict)  # the workflows' own (AWS_DEPLOY_ROLE_ARN, ...)

    def variables(self, **extra: str) -> dict[str, str]:
        """Repository variables: the non-secret configuration, plus the workflows' own."""
        plain = {k: v for k, v in self.values.items() if not VARS_BY_NAME[k].secret}
        return {
            **plain,
            "NAMESPACE": self.namespace,
            "RELEASE_NAME": RELEASE,
            # no ingress controller in the test bed's cluster: no address for the HTTPS checks
            "SMOKE_ARGS": "--no-endpoints --deadline 120",
            **self.workflow_vars,
            **extra,
        }

    def secrets(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if VARS_BY_NAME[k].secret}

    def repository(self, fleet: dict[str, list[str]] | None = None) -> Path:
        """This repository's tracked files as act reads them: the workflows without `queue: max`
        (nektos/act#6095), nothing else changed; with `fleet` (wave name -> local targets), its
        fleet.yaml and an env file per target, as an operator adds them."""
        copy = self.workdir / ("repository-fleet" if fleet else "repository")
        if copy.exists():
            return copy
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO_ROOT / name).is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / name, copy / name)
        dropped = 0
        for workflow in (copy / ".github" / "workflows").glob("*.yml"):
            lines = workflow.read_text().splitlines(keepends=True)
            kept = [line for line in lines if not re.match(r"^\s+queue: max\b", line)]
            dropped += len(lines) - len(kept)
            workflow.write_text("".join(kept))
        assert dropped == 2, f"expected the two `queue: max` of promote.yml, dropped {dropped}"
        if fleet:
            waves = "".join(f"  - name: {name}\n    targets: [{', '.join(t)}]\n" for name, t in fleet.items())
            (copy / "fleet.yaml").write_text(f"waves:\n{waves}")
            for target in (t for targets in fleet.values() for t in targets):
                write_env(copy / "env" / f"{target}.env.example", good_env("local", NAMESPACE=target))
        for command in (
            ["init", "-q"],
            ["add", "-A"],
            ["-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "the repository under test"],
            # act takes GITHUB_REPOSITORY from the remote (never contacted); the gate reads its environments
            ["remote", "add", "origin", f"https://github.com/{REPOSITORY}.git"],
        ):
            subprocess.run(["git", *command], cwd=copy, check=True, capture_output=True)
        return copy

    def act(
        self,
        event_name: str,
        event: dict[str, Any],
        variables: dict[str, str],
        fleet: dict[str, list[str]] | None = None,
    ) -> ActRun:
        run_dir = self.workdir / f"{event_name}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir()
        checkout = self.repository(fleet)
        files = {
            "event.json": json.dumps(event),
            "vars": _dotenv(variables),
            "secrets": _dotenv({**self.secrets(), "GITHUB_TOKEN": GITHUB_TOKEN}),  # act's github.token
            "env": _dotenv(self.env),
        }
        for name, text in files.items():
            (run_dir / name).write_text(text)
        command = [
            str(ACT),
            event_name,
            "-W",
            ".github/workflows/release.yml",
            "-e",
            str(run_dir / "event.json"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--var-file",
            str(run_dir / "vars"),
            "--secret-file",
            str(run_dir / "secrets"),
            "--env-file",
            str(run_dir / "env"),
            "--action-cache-path",
            str(run_dir / "act-cache"),
            "--no-cache-server",
            "--insecure-secrets",  # act's own masking would hide a leak by the tools
            "--json",
            *local_repositories(),
        ]
        start = time.monotonic()
        result = subprocess.run(
            command,
            cwd=checkout,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(run_dir)},
            capture_output=True,
            text=True,
            timeout=ACT_TIMEOUT,
            check=False,
        )
        events = []
        for line in result.stdout.splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        for event in events:  # act pads some job names to a common width
            if isinstance(event.get("job"), str):
                event["job"] = event["job"].rstrip()
        run = ActRun(result.returncode, events, result.stdout + result.stderr, time.monotonic() - start)
        run.summaries = [(e["job"], e["content"]) for e in events if e.get("command") == "summary"]
        (self.workdir / f"{run_dir.name}.log").write_text(run.output)
        return run


def dispatch_event(**inputs: str) -> dict[str, Any]:
    """A workflow_dispatch payload: GitHub sends every input as a string, booleans as "true"/"false"
    (act, like GitHub, types them from the workflow's inputs; a JSON `true` would read as false)."""
    return {"inputs": inputs, "ref": "refs/heads/main"}


def _dotenv(values: dict[str, str]) -> str:
    for key, value in values.items():
        assert "\n" not in value and "'" not in value, key
    return "".join(f"{k}='{v}'\n" for k, v in values.items())


def pinned_actions() -> dict[str, str]:
    """owner/repo -> SHA of every third-party action the workflows and actions pin."""
    pins = {}
    for path in [*REPO_ROOT.glob(".github/workflows/*.yml"), *REPO_ROOT.glob(".github/actions/*/action.yml")]:
        for repo, sha in re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})", path.read_text()):
            pins[repo] = sha
    return pins


def local_repositories() -> list[str]:
    flags = []
    for repo, sha in pinned_actions().items():
        assert repo in STAND_IN_FOR, f"{repo} has no stand-in in {STAND_INS}"
        flags += ["--local-repository", f"{repo}@{sha}={STAND_INS / STAND_IN_FOR[repo]}"]
    return flags


def application_repository(staged: dict[str, Path], folder: Path) -> str:
    """The stand-in application as a git repository in CMBCluster's layout; returns its commit, which the
    release resolves once and builds exactly."""
    for name, sub in APP_LAYOUT.items():
        shutil.copytree(staged[name], folder / sub)
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "the application"],
    ):
        subprocess.run(["git", *command], cwd=folder, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
    return sha.stdout.strip()
