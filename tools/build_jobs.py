"""What build_push builds: the images asked for, the release tag, and a job per image.

Kept apart from the Docker calls and the registry so that the choice of images and tags, and the
problems with the sources (every missing context or Dockerfile at once), are settled and reported
before any engine or registry is touched, and can be tested without either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.cloud import Cloud
from tools.content_tag import CONTENT_TAG, content_tag
from tools.errors import ToolError, UsageError
from tools.platforms import DEFAULT_PLATFORMS
from tools.report import REPORTER
from tools.settings import IMAGES, ConfigError, Settings

DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
GIT_RELEASE = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$")


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
