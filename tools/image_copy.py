"""Copy one image between registries by digest: the same bytes, so the same digest; nothing rebuilt.

A promotion into an environment whose registry is another account's or project's (another ECR
host, another Artifact Registry project) needs staging's exact images there. Everything moves
through the registry client (tools/registry.py) by digest, as the OCI distribution spec defines
it (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-manifests:
a manifest's blobs and, for an index, its manifests must exist before it is pushed): for an index
each platform's manifest (attestations included) first, for a manifest its config and layers,
then the manifest itself under its digest, then the tags. Every manifest is checked against the
digest it is fetched by (the registry client checks every blob), and what the target stored is
read back by digest. A tag the target already has for another image is refused before anything
is copied: a promotion never moves a tag. The fleet copies one build to each target with the
same two calls (`plan`, `copy`).

Blobs move whole through memory (the client uploads in one request): fine for this project's
images (a few hundred MB at most).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tools.image_index import INDEXES
from tools.registry import Registry, RegistryError


@dataclass
class Copy:
    """One image to put into the target: `source_repository@digest` -> `repository` with `tags`."""

    name: str
    source_repository: str
    repository: str
    digest: str
    tags: list[str]
    present: bool = False  # the target holds the manifest (and, so, everything it names)
    missing_tags: list[str] = field(default_factory=list)
    blobs: int = 0  # blobs uploaded by `copy`
    size: int = 0  # their bytes

    @property
    def status(self) -> str:
        if not self.present:
            return "copied"
        return "tagged" if self.missing_tags else "already there"

    def record(self) -> dict[str, object]:
        """The entry of the image list (tools/images.py) for the target."""
        return {"repository": self.repository, "tags": list(self.tags), "digest": self.digest}


def plan_copy(source: Registry, target: Registry, item: Copy) -> Copy:
    """Read-only: is the source image there, what does the target lack; refuse a tag that would move."""
    if source.digest(item.source_repository, item.digest) != item.digest:
        raise RegistryError(
            f"{item.name}: {item.source_repository}@{item.digest} is not in registry {source.host}: "
            "promote the image list the previous environment passed, or re-run the release from its tag"
        )
    item.present = target.digest(item.repository, item.digest) == item.digest
    item.missing_tags = []
    for tag in item.tags:
        current = target.digest(item.repository, tag)
        if current not in (None, item.digest):
            raise RegistryError(
                f"{item.name}: {item.repository}:{tag} already names another image ({current[:19]}), not "
                f"{item.digest[:19]}: a promotion never moves a tag; release a new tag"
            )
        if current is None:
            item.missing_tags.append(tag)
    return item


def copy(source: Registry, target: Registry, item: Copy) -> Copy:
    """Copy what `plan` found missing: the manifest tree by digest, then the tags; checked by digest."""
    media_type, body = _copy_manifest(source, target, item, item.digest)
    if item.missing_tags and not media_type:  # already there: the tags point at the target's own bytes
        media_type, body, _ = target.manifest(item.repository, item.digest)
    for tag in item.missing_tags:
        stored = target.put_manifest(item.repository, tag, body, media_type)
        if stored != item.digest:
            raise RegistryError(f"{item.name}: registry {target.host} stored {tag} as {stored[:19]}: not the image")
    if target.digest(item.repository, item.digest) != item.digest:
        raise RegistryError(f"{item.name}: registry {target.host} does not give back {item.digest[:19]} after the copy")
    return item


def _copy_manifest(source: Registry, target: Registry, item: Copy, digest: str) -> tuple[str, bytes]:
    """Copy the manifest or index at `digest` and what it names, unless the target has it: (media type, bytes)
    of what was copied, ("", b"") when nothing had to be."""
    if target.digest(item.repository, digest) == digest:
        return "", b""
    media_type, body, actual = source.manifest(item.source_repository, digest)
    if actual != digest:
        raise RegistryError(
            f"{item.name}: registry {source.host} gave other content for {item.source_repository}@{digest[:19]} "
            f"({actual[:19]}): nothing copied; check the source registry"
        )
    document = json.loads(body)
    if media_type in INDEXES:
        for entry in document.get("manifests") or []:
            _copy_manifest(source, target, item, entry["digest"])
    else:
        for blob in [document["config"], *(document.get("layers") or [])]:
            if not target.has_blob(item.repository, blob["digest"], push=True):
                data = source.blob(item.source_repository, blob["digest"])  # checked against its digest
                target.put_blob(item.repository, data)
                item.blobs += 1
                item.size += len(data)
    stored = target.put_manifest(item.repository, digest, body, media_type)
    if stored != digest:
        raise RegistryError(f"{item.name}: registry {target.host} stored {digest[:19]} as {stored[:19]}")
    return media_type, body
