"""The docker client build_push drives: engine check, builder choice, login, build, push.

A class of its own so the engine is reached (and logged in to) only when an image must really be
built: a run that finds every image in the registry never calls docker. The login's credentials
go through stdin into a temporary DOCKER_CONFIG folder, removed by `close`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tools.build_jobs import Job
from tools.cloud import RegistryAuth
from tools.errors import ToolError
from tools.platforms import emulation_hint, emulation_missing, runs_commands, split
from tools.runner import run


class Docker:
    """The docker client, prepared on first use: engine reachable, builder chosen, logged in."""

    def __init__(self, auth: RegistryAuth | None, stream: bool) -> None:
        self.binary = os.environ.get("DOCKER", "docker")
        self.auth = auth
        self.stream = stream
        self.env: dict[str, str] | None = None
        self.platform = ""  # the engine's own, os/arch
        self._config_dir: str | None = None

    def prepare(self) -> None:
        """Reach the engine, pick the builder and log in, once: only a run that builds pays for it."""
        if self.env is not None:
            return
        env = dict(os.environ)
        version_format = "{{.Server.Version}} {{.Server.Os}}/{{.Server.Arch}}"
        version = run([self.binary, "version", "--format", version_format], check=False, env=env)
        if version.returncode != 0:
            reason = (version.stderr or version.stdout).strip().splitlines()[-1:] or ["no answer"]
            where = env.get("DOCKER_HOST") or "the default socket"
            raise ToolError(f"cannot reach the Docker engine at {where} ({reason[0]}): start Docker or set DOCKER_HOST")
        self.platform = version.stdout.strip().rpartition(" ")[2]
        if "DOCKER_BUILDKIT" not in env:
            buildx = run([self.binary, "buildx", "version"], check=False, env=env)
            env["DOCKER_BUILDKIT"] = "1" if buildx.returncode == 0 else "0"
        if self.auth:
            import tempfile  # only for a registry login, never for --help

            self._config_dir = tempfile.mkdtemp(prefix="cmb-docker-")
            env["DOCKER_CONFIG"] = self._config_dir
            host = self.auth.registry.split("/")[0]
            run(
                [self.binary, "login", "--username", self.auth.username, "--password-stdin", host],
                input=self.auth.password,
                env=env,
                what=f"docker login {host}",
            )
        self.env = env

    def build(self, job: Job, tags: Sequence[str], platform: str = "") -> None:
        assert job.context and job.dockerfile and job.content_tag
        cmd = [self.binary, "build", "--file", str(job.dockerfile), *(["--platform", platform] if platform else [])]
        for tag in tags:
            cmd += ["--tag", f"{job.repository}:{tag}"]
        cmd += ["--label", f"org.cmbcluster.content-tag={job.content_tag}", str(job.context)]

        run(cmd, env=self.env, stream=self.stream, what=f"{job.name}: docker build {platform}".rstrip())

    def check_emulation(self, job: Job) -> None:
        """Stop before building when the Dockerfile runs commands for a CPU this machine cannot emulate.

        Checked only for an engine on this Linux machine (its kernel's binfmt_misc is the engine's);
        Docker Desktop's VM and remote engines bring their own.
        """
        if not (job.dockerfile and runs_commands(job.dockerfile)):
            return
        self.prepare()
        assert self.env is not None
        local = self.env.get("DOCKER_HOST", "unix://").startswith("unix://")
        engine_arch = split(self.platform)["architecture"] if self.platform.count("/") else ""
        if not (sys.platform == "linux" and local and engine_arch):
            return
        missing = emulation_missing(job.platforms, engine_arch)
        if missing:
            raise ToolError(emulation_hint(job.name, missing, engine_arch), exit_code=1)

    # What the push needs of ECR or Artifact Registry is declared beside the login it pushes with
    # (tools/cloud/ecr.py, tools/cloud/gcp.py), so the policy is collected without importing a step
    def push(self, job: Job, tag: str) -> None:
        run([self.binary, "push", f"{job.repository}:{tag}"], env=self.env, what=f"{job.name}: docker push {tag}")

    def close(self) -> None:
        """Delete the login's DOCKER_CONFIG folder: the registry token must not outlive the run."""
        if self._config_dir:
            import shutil

            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None
