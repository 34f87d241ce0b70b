"""Build the CMBCluster images (backend, frontend, user-env) and push them; skip what the registry has.

Tags
  content tag   `c-` + the first 12 hex digits of a SHA-256 over the image's Dockerfile and
                build context: every file and folder Docker would send (`.dockerignore`
                honoured with Docker's rules: `*`, `?`, `**`, `!` exceptions, parent folders),
                by relative path, kind, permission bits and content (not times or owners).
                An unchanged image keeps its tag, so a run with nothing changed builds nothing.
  release tag   `--tag`, else IMAGE_TAG, else under GitHub Actions a pushed git tag vX.Y.Z.
                Added to the content-tagged image, whether it was built now or before.

Platforms
  IMAGE_PLATFORMS (default linux/amd64): the CPUs of the cluster's nodes, not of the machine that
  builds. The engine's own platform alone is built as today, one image; any other set is one
  `docker build --platform` per platform (BuildKit or the classic builder), each pushed under
  `CONTENT-<arch>`, its config checked (and corrected where the builder recorded the engine's
  architecture), then assembled by the registry client into one index under the content tag
  (tools/image_index.py). A Dockerfile that runs commands (RUN) for a foreign CPU needs binfmt
  emulation: without it the build stops first with one line saying so.

Before building, the registry is asked (HTTP API v2, HEAD manifest) whether the content tag
is there; if so nothing is built and the release tag is added by copying the manifest.
`--force-rebuild` builds anyway; `--skip-build` builds nothing and fails unless the images
exist (the release tag when given, else the content tag).

Login goes through the cloud shim (ECR token from boto3, Artifact Registry token from
google-auth, none for the local registry); Docker gets it through stdin into a temporary
DOCKER_CONFIG folder that is deleted afterwards.

Output: `out/images.json` (`--output`), written atomically and only when every image
succeeded: {"registry": R, "images": {NAME: {"repository": REPO, "tags": [CONTENT, RELEASE?],
"digest": "sha256:..."}}}. Images not built in this run keep their entry from the previous
file (same registry), through tools/images.py, which the later steps read it with. Under GitHub Actions also the
step output `images` (the same JSON) and a row per image in the job summary.

Environment: DOCKER (the docker client, default `docker`), DOCKER_BUILDKIT (default: BuildKit
when buildx is installed, else the legacy builder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.cli import main_boundary, parser, settings_from
from tools.cloud import Cloud, RegistryAuth, cloud_for
from tools.config_rules import require_valid
from tools.content_tag import CONTENT_TAG, content_tag
from tools.errors import ToolError, UsageError
from tools.image_index import checked_manifest, put_index
from tools.images import DEFAULT_OUTPUT, write_images
from tools.platforms import DEFAULT_PLATFORMS, emulation_hint, emulation_missing, runs_commands, split, tag_suffix
from tools.registry import Registry
from tools.report import REPORTER, markdown_table
from tools.runner import run
from tools.settings import IMAGES, ConfigError, Settings

DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
GIT_RELEASE = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$")


# -- what to build ---------------------------------------------------------------------------
@dataclass
class Job:
    """One image: where it comes from, where it goes, and (after the run) what it became."""

    name: str
    repository: str
    context: Path | None = None
    dockerfile: Path | None = None
    content_tag: str | None = None
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    tags: list[str] = field(default_factory=list)
    digest: str = ""
    status: str = ""  # built | cached | existing
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"repository": self.repository, "tags": self.tags, "digest": self.digest}


def select_images(value: str | None) -> list[str]:
    """`--images backend,frontend` (default: all), in the canonical order."""
    if not value:
        return list(IMAGES)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMAGES]
    if unknown or not names:
        shown = ", ".join(repr(n) for n in unknown) or "none"
        raise UsageError(f"--images: unknown image {shown}: use one or more of {','.join(IMAGES)}")
    return [n for n in IMAGES if n in names]


def release_tag(flag: str | None, settings: Settings) -> str | None:
    """--tag, else IMAGE_TAG, else a pushed git tag vX.Y.Z under GitHub Actions."""
    tag = flag or settings["IMAGE_TAG"] or None
    if tag is None and os.environ.get("GITHUB_REF_TYPE") == "tag":
        ref = os.environ.get("GITHUB_REF_NAME", "")
        tag = ref if GIT_RELEASE.match(ref) else None
        if tag is None:
            REPORTER.warning(f"git tag {ref!r} is not vX.Y.Z: the images get no release tag (give --tag)")
    if tag is not None:
        if not DOCKER_TAG.match(tag):
            raise UsageError(f"release tag {tag!r} is not a Docker tag: use letters, digits, _ . - (e.g. v1.2.3)")
        if CONTENT_TAG.match(tag):
            raise UsageError(f"release tag {tag!r} looks like a content tag (c-...): choose another, e.g. v1.2.3")
    return tag


def plan_builds(settings: Settings, cloud: Cloud, names: Sequence[str], need_source: bool = True) -> list[Job]:
    """A job per image, with its content tag; every missing context or Dockerfile reported together."""
    repositories = {image.name: image.repository for image in cloud.images()}
    jobs, problems = [], []
    for name in names:
        job = Job(name, repositories[name], platforms=settings.platforms)
        key = name.upper().replace("-", "_")
        context = Path(settings.context(name)).expanduser().resolve()
        dockerfile = Path(settings.dockerfile(name)).expanduser().resolve()
        if not context.is_dir():
            if need_source:
                problems.append(
                    f"{name}: build context {context} is not a folder: set {key}_CONTEXT to the "
                    f"image's source folder (a checkout of the CMBCluster application)"
                )
        elif not dockerfile.is_file():
            if need_source:
                problems.append(f"{name}: Dockerfile {dockerfile} does not exist: set {key}_DOCKERFILE")
        else:
            job.context, job.dockerfile = context, dockerfile
            try:
                job.content_tag = content_tag(context, dockerfile, job.platforms)
            except OSError as exc:
                problems.append(f"{name}: cannot read the build context: {exc}: fix its permissions")
            except ToolError as exc:
                problems.append(f"{name}: {context}/{exc}")
        jobs.append(job)
    if problems:
        raise ConfigError(problems)
    return jobs


# -- docker -------------------------------------------------------------------------------------
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
        if self._config_dir:
            import shutil

            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None


# -- the run ---------------------------------------------------------------------------------------
class Publisher:
    """Makes sure every job's image is in the registry with its tags; fills in tags and digest."""

    def __init__(
        self,
        cloud: Cloud,
        release: str | None,
        *,
        force: bool = False,
        skip_build: bool = False,
        stream: bool = False,
        app_sha: str = "",
    ) -> None:
        self.cloud = cloud
        self.release = release
        self.app_sha = app_sha  # the application commit a pinned release builds (its tag never moves)
        self.force = force
        self.skip_build = skip_build
        self.stream = stream
        self.immutable = cloud.immutable_tags

    def run(self, jobs: Sequence[Job]) -> None:
        registry = self.cloud.registry()
        if not self.skip_build:
            for name in self.cloud.ensure_repositories():
                REPORTER.ok(f"created repository {name}")
        auth = self.cloud.registry_login()
        self.registry = Registry(registry, auth)
        have = self._lookup(jobs, registry, auth)
        docker = Docker(auth, self.stream)
        try:
            if not self.skip_build:  # every image checked before the first is built: nothing half-done
                for job in jobs:
                    if self.force or not have.get(job.name):
                        docker.check_emulation(job)
            for job in jobs:
                start = time.monotonic()
                with REPORTER.action(job.name) as result:
                    try:
                        self._one(job, docker, have.get(job.name))
                    except ToolError as exc:
                        if not str(exc).startswith(f"{job.name}:"):
                            exc.args = (f"{job.name}: {exc}",)
                        raise
                    job.seconds = time.monotonic() - start
                    shown = f"{job.repository}:{','.join(job.tags)} {job.digest[:19]}"
                    if job.status == "built":
                        result.set("ok", f"built and pushed {shown}")
                    else:
                        result.set("skip", f"{job.status}, not built: {shown}")
        finally:
            docker.close()
            self.registry.close()

    def _lookup(self, jobs: Sequence[Job], registry: str, auth: RegistryAuth | None) -> dict[str, str | None]:
        """Ask the registry for every content tag at once: {name: digest or None}.

        One client (connection, token) per image, in parallel: a cloud registry answers in
        ~100 ms per request and Artifact Registry wants a token per repository.
        """
        asked = [job for job in jobs if job.content_tag]
        answers: dict[str, str | ToolError | None] = {}

        def ask(job: Job) -> None:
            client = Registry(registry, auth) if len(asked) > 1 else self.registry
            try:
                answers[job.name] = client.digest(job.repository, job.content_tag or "")
            except ToolError as exc:
                answers[job.name] = exc
            finally:
                if client is not self.registry:
                    client.close()

        if len(asked) > 1:
            import threading

            threads = [threading.Thread(target=ask, args=(job,), daemon=True) for job in asked]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            for job in asked:
                ask(job)
        failed = [(job.name, answers[job.name]) for job in asked if isinstance(answers[job.name], ToolError)]
        if failed:
            name, error = failed[0]
            if len(failed) == len(asked) and "cannot reach" in str(error):
                raise ToolError(f"{error} (needed for {', '.join(j.name for j in jobs)})")
            raise ToolError(f"{name}: {error}")
        return {name: answer for name, answer in answers.items() if not isinstance(answer, ToolError)}

    def _one(self, job: Job, docker: Docker, have: str | None) -> None:
        if self.skip_build:
            self._existing(job, have)
        elif have and not self.force:
            job.status, job.digest, job.tags = "cached", have, [job.content_tag or ""]
            if self.release:
                self._add_release(job)
        else:
            self._build(job, docker, have)

    def _existing(self, job: Job, have: str | None) -> None:
        """--skip-build: the release tag when given (else the content tag) must be in the registry."""
        tag = self.release or job.content_tag
        if not tag:
            raise ToolError("--skip-build needs a release tag (--tag) or the build context to know the image")
        digest = have if tag == job.content_tag else self.registry.digest(job.repository, tag)
        if not digest:
            raise ToolError(
                f"{job.repository}:{tag} is not in the registry and --skip-build forbids building it: "
                "run without --skip-build, or give the --tag of an image that was pushed"
            )
        job.status, job.digest = "existing", digest
        job.tags = [job.content_tag, tag] if have == digest and tag != job.content_tag else [tag]  # type: ignore[list-item]

    def _add_release(self, job: Job) -> None:
        """Point the release tag at the content-tagged image through the registry API (no Docker)."""
        assert self.release and job.content_tag
        current = self.registry.digest(job.repository, self.release)
        if current != job.digest:
            if current:
                self._may_move(job, self.release, current)
            self.registry.copy_tag(job.repository, job.content_tag, self.release)
        job.tags.append(self.release)

    def _may_move(self, job: Job, tag: str, current: str) -> None:
        if self.app_sha:  # a release pinned to a commit: a re-run builds the same content or stops here
            raise ToolError(
                f"{job.repository}:{tag} already names another image ({current[:19]}), built from other sources "
                f"than application commit {self.app_sha[:12]}: a release is never rebuilt from different code; "
                "give a new release tag, or redeploy the release's images with skip_build"
            )
        if self.immutable:
            raise ToolError(
                f"{job.repository}:{tag} already names another image ({current[:19]}) and this registry's tags "
                "are immutable: give a new release tag"
            )
        REPORTER.warning(f"{job.name}: moving {job.repository}:{tag} away from {current[:19]}")

    def _build(self, job: Job, docker: Docker, have: str | None) -> None:
        assert job.content_tag
        push = [job.content_tag]
        if have and self.immutable:
            # --force-rebuild on ECR: the content tag cannot be pushed again; only a new release tag can.
            if not self.release:
                raise ToolError(
                    f"--force-rebuild cannot replace {job.repository}:{job.content_tag}: this registry's tags "
                    "are immutable: give a new release tag (--tag) or drop --force-rebuild"
                )
            push = []
        if self.release:
            current = self.registry.digest(job.repository, self.release)
            if current:
                self._may_move(job, self.release, current)
            push.append(self.release)
        docker.prepare()
        REPORTER.info(f"{job.name}: building {job.repository}:{job.content_tag} for {','.join(job.platforms)}")
        if job.platforms == (docker.platform,):
            docker.build(job, [job.content_tag, *([self.release] if self.release else [])])
            for tag in push:
                docker.push(job, tag)
            digest = self.registry.digest(job.repository, push[0])
            if not digest:
                raise ToolError(f"pushed {job.repository}:{push[0]} but the registry does not list it: retry")
            manifest, corrected = checked_manifest(self.registry, job.repository, push[0], docker.platform)
            if corrected:
                for tag in push:
                    self.registry.copy_tag(job.repository, manifest.digest, tag)
                digest = manifest.digest
        else:
            digest = self._build_index(job, docker, push)
        job.status, job.digest, job.tags = "built", digest, push

    def _build_index(self, job: Job, docker: Docker, tags: Sequence[str]) -> str:
        """One build per platform, pushed as TAG-<arch>, config checked; the index under `tags`.

        TAG is the first tag pushed: the content tag, or on an immutable registry's forced rebuild
        the new release tag (the content tag's own TAG-<arch> tags cannot be pushed again there).
        """
        manifests = []
        for platform in job.platforms:
            transport = f"{tags[0]}-{tag_suffix(platform)}"
            docker.build(job, [transport], platform)
            docker.push(job, transport)
            manifest, corrected = checked_manifest(self.registry, job.repository, transport, platform)
            if corrected:
                REPORTER.info(f"{job.name}: {platform}: the builder wrote another CPU into the config: corrected")
            manifests.append(manifest)
        return put_index(self.registry, job.repository, manifests, tags)


def report_github(data: dict[str, Any], jobs: Sequence[Job]) -> None:
    """Step output `images` and a job-summary row per image (no-ops outside GitHub Actions)."""
    REPORTER.output("images", json.dumps(data, separators=(",", ":")))
    if data.get("app_sha"):
        REPORTER.summary(f"Application source: commit `{data['app_sha']}`\n")
    rows = [
        (f"`{j.name}`", j.status, f"`{j.repository}`", ", ".join(f"`{t}`" for t in j.tags), f"`{j.digest}`")
        for j in jobs
    ]
    REPORTER.summary("### Images\n\n" + markdown_table(["image", "result", "repository", "tags", "digest"], rows))


# -- CLI ---------------------------------------------------------------------------------------
APP_SHA = re.compile(r"^[0-9a-f]{40}$")


def build_parser() -> argparse.ArgumentParser:
    p = parser("Build the backend, frontend and user-env images and push them; skip what the registry has.")
    p.add_argument("--images", metavar="LIST", help=f"comma-separated subset of {','.join(IMAGES)} (default: all)")
    p.add_argument("--tag", metavar="TAG", help="release tag to add, e.g. v1.2.3 (default: IMAGE_TAG)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--force-rebuild", action="store_true", help="build even when the content tag exists")
    mode.add_argument("--skip-build", action="store_true", help="build nothing; fail unless the images exist")
    p.add_argument(
        "--app-sha",
        metavar="SHA",
        default=os.environ.get("APP_SHA", ""),
        help="the application commit the contexts were checked out at (default APP_SHA): recorded in the image "
        "list; with it a release tag never moves to other content",
    )
    p.add_argument("--output", metavar="PATH", default=DEFAULT_OUTPUT, help=f"image list (default: {DEFAULT_OUTPUT})")
    p.add_argument("--verbose", "-v", action="store_true", help="stream build logs (default: shown on failure)")
    p.epilog = "Content tags are c-<12 hex> hashes of context + Dockerfile; see the module docstring."
    return p


@main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = select_images(args.images)
    settings = settings_from(args)

    require_valid(settings, "build_push", uses_secrets=False)  # before any repository is made or image pushed
    cloud = cloud_for(settings)
    release = release_tag(args.tag, settings)
    if args.app_sha and not APP_SHA.match(args.app_sha):
        raise UsageError(f"--app-sha {args.app_sha!r}: give the application's full 40-character commit SHA")
    jobs = plan_builds(settings, cloud, names, need_source=not (args.skip_build and release))
    if args.dry_run:
        for job in jobs:
            tags = ", ".join(t for t in (job.content_tag, release) if t)
            REPORTER.info(
                f"{job.name}: would make sure {job.repository} has {tags} for {','.join(job.platforms)} "
                "(build if missing)"
            )
        REPORTER.info(f"would write {args.output}")
        return 0
    stream = args.verbose or REPORTER.github
    publisher = Publisher(
        cloud, release, force=args.force_rebuild, skip_build=args.skip_build, stream=stream, app_sha=args.app_sha
    )
    publisher.run(jobs)
    records = {job.name: job.record() for job in jobs}
    data = write_images(Path(args.output), cloud.registry(), records, app_sha=args.app_sha)
    report_github(data, jobs)
    built = sum(j.status == "built" for j in jobs)
    REPORTER.ok(f"{len(jobs)} image(s) ready, {built} built; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
