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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.build_jobs import Job, plan_builds, release_tag, select_images
from tools.cli import main_boundary, parser, settings_from
from tools.cloud import Cloud, RegistryAuth, cloud_for
from tools.config_rules import require_valid
from tools.docker_engine import Docker
from tools.errors import ToolError, UsageError
from tools.image_index import checked_manifest, put_index
from tools.images import DEFAULT_OUTPUT, write_images
from tools.platforms import tag_suffix
from tools.registry import Registry
from tools.report import REPORTER, markdown_table
from tools.settings import IMAGES


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
