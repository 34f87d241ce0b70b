"""Put the promoted images into this environment's registry by digest, when it is another registry.

Production deploys staging's very images. Where production's registry differs from the one the
image list names (another AWS account's ECR, another project's Artifact Registry), the images are
copied there by digest (tools/image_copy.py): manifests, indexes and blobs, each checked against
its digest, nothing rebuilt, nothing copied twice (a second run says "already there"). The image
list for this environment is written to --output in build_push's format (tools/images.py), with
this registry's repositories and the same tags and digests, and handed on as the step output
`images`. The same registry: nothing to copy, the list stays as it is.

    python -m tools.copy_images --cloud aws [--images-file out/images.json] [--output out/images.json] [--dry-run]

Credentials: this cloud's registry login goes to its own registry and to a source registry of the
same provider only (another account's ECR host, another Artifact Registry host), which must let
this environment's deploy identity pull (ECR: a repository policy; Artifact Registry: reader).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools import cli
from tools.cloud import RegistryAuth, cloud_for
from tools.config_rules import require_valid
from tools.errors import ToolError
from tools.image_copy import Copy, copy, plan_copy
from tools.images import DEFAULT_OUTPUT, load_images, write_images
from tools.registry import Registry
from tools.report import REPORTER, markdown_table

# A provider's registry token opens its other registries too, where the account or project grants
# the identity access: ECR's "can be used to access any Amazon ECR registry that your IAM principal
# has access to" (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetAuthorizationToken.html);
# Artifact Registry takes the identity's OAuth access token on every host
# (https://cloud.google.com/artifact-registry/docs/docker/authentication#token). Any other host gets none.
PROVIDER_REGISTRY = {
    "aws": re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$"),
    "gcp": re.compile(r"^[a-z0-9-]+-docker\.pkg\.dev$"),
}


def source_auth(cloud_name: str, host: str, own: RegistryAuth | None) -> RegistryAuth | None:
    """The cloud's registry credentials for `host` when it is a registry of the same provider, else None."""
    pattern = PROVIDER_REGISTRY.get(cloud_name)
    if own is None or pattern is None or not pattern.match(host):
        return None
    return RegistryAuth(host, own.username, own.password)


def read_list(path: Path) -> tuple[str, dict[str, dict[str, Any]], str]:
    """(registry, {name: entry with all its tags}, app_sha) of an image list build_push's reader accepts."""
    load_images(path)  # the one check of the format: a malformed list is refused in one line
    data = json.loads(path.read_text(encoding="utf-8"))
    registry = data.get("registry")
    if not isinstance(registry, str) or not registry:
        raise ToolError(f"{path} names no registry: write it again with tools.build_push or tools.promoted_images")
    return registry, data["images"], str(data.get("app_sha") or "")


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--images-file", default=DEFAULT_OUTPUT, help=f"the promoted list (default {DEFAULT_OUTPUT})")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"this environment's list (default {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    source_path, output = Path(args.images_file), Path(args.output)
    source_registry, entries, app_sha = read_list(source_path)
    settings = cli.settings_from(args)
    require_valid(settings, "copy_images", uses_secrets=False)  # before anything is copied
    cloud = cloud_for(settings)
    target_registry = cloud.registry()
    if source_registry == target_registry:
        REPORTER.ok(f"images already in {target_registry} (the list's registry): nothing to copy", 0.0)
        if output.resolve() != source_path.resolve() and not args.dry_run:
            write_images(output, target_registry, {n: dict(e) for n, e in entries.items()}, app_sha=app_sha)
        _hand_on(output if output.is_file() else source_path)
        return 0
    targets = {image.name: image.repository for image in cloud.images()}
    items = [
        Copy(name, str(e["repository"]), targets[name], str(e["digest"]), [str(t) for t in e["tags"]])
        for name, e in entries.items()
    ]
    own = cloud.registry_login()
    source = Registry(source_registry.split("/")[0], source_auth(cloud.name, source_registry.split("/")[0], own))
    target = Registry(target_registry.split("/")[0], own)
    try:
        for item in items:  # every check before the first copy: nothing half-done
            plan_copy(source, target, item)
        if args.dry_run:
            for item in items:
                what = "already there" if item.status == "already there" else f"would be {item.status}"
                REPORTER.info(f"{item.name}: {item.repository}@{item.digest[:19]}: {what}")
            REPORTER.info(f"would write {output}")
            return 0
        created = cloud.ensure_repositories()
        if created:
            REPORTER.ok(f"created repositories {', '.join(created)}")
        for item in items:
            start = time.monotonic()
            copy(source, target, item)
            detail = f" ({item.blobs} blob(s), {item.size / 1e6:.1f} MB)" if item.blobs else ""
            REPORTER.ok(
                f"{item.name}: {item.repository}@{item.digest[:19]}: {item.status}{detail}", time.monotonic() - start
            )
    finally:
        source.close()
        target.close()
    write_images(output, target_registry, {item.name: item.record() for item in items}, app_sha=app_sha)
    copied = sum(item.status != "already there" for item in items)
    REPORTER.ok(
        f"{len(items)} image(s) by digest in {target_registry}, {copied} copied from {source_registry}; wrote {output}",
        time.monotonic() - started,
    )
    rows = [(f"`{i.name}`", i.status, f"`{i.source_repository}`", f"`{i.repository}`", f"`{i.digest}`") for i in items]
    REPORTER.summary(
        "### Images copied by digest\n\n" + markdown_table(["image", "result", "from", "to", "digest"], rows)
    )
    _hand_on(output)
    return 0


def _hand_on(path: Path) -> None:
    """The step output `images`: this environment's list, for the environment after it."""
    REPORTER.output("images", json.dumps(json.loads(path.read_text(encoding="utf-8")), separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
