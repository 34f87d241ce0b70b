"""Multi-platform images in a registry: each platform's manifest checked, the index assembled, platforms read back.

Everything goes through the registry client (tools/registry.py) by digest, so the same steps
copy an image between registries. Docker 20.10's classic builder writes the host's architecture
into the config of a `FROM scratch` image built with `--platform`; `checked_manifest` writes the
platform's, so a runtime that reads the config (or the index built from it) sees the truth.
Manifest and index formats: https://github.com/opencontainers/image-spec/blob/main/image-index.md
and https://distribution.github.io/distribution/spec/manifest-v2-2/ (manifest list).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools.platforms import join, matches, split
from tools.registry import Registry, RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEXES = (DOCKER_LIST, OCI_INDEX)


@dataclass(frozen=True)
class Descriptor:
    """One platform's manifest, as an index lists it."""

    media_type: str
    digest: str
    size: int
    platform: str

    def entry(self) -> dict[str, Any]:
        platform = split(self.platform)
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, "platform": platform}


def checked_manifest(registry: Registry, repository: str, reference: str, platform: str) -> tuple[Descriptor, bool]:
    """The manifest at `reference`, its config made to say `platform` (a corrected one is stored by its digest).

    Returns its descriptor and whether the config had to be corrected.
    """
    media_type, body, digest = registry.manifest(repository, reference)
    if media_type in INDEXES:  # Docker's containerd image store pushes an index (image + attestation)
        entries = json.loads(body).get("manifests") or []
        found = [e for e in entries if matches(platform, e.get("platform") or {})]
        if not found:
            raise RegistryError(f"{repository}:{reference} has no {platform} image: build it again")
        return checked_manifest(registry, repository, found[0]["digest"], platform)
    manifest = json.loads(body)
    config = json.loads(registry.blob(repository, manifest["config"]["digest"]))
    if matches(platform, config):
        return Descriptor(media_type, digest, len(body), platform), False
    config.pop("variant", None)
    config.update(split(platform))
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest["config"] = {
        **manifest["config"],
        "digest": registry.put_blob(repository, config_bytes),
        "size": len(config_bytes),
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    digest = registry.put_manifest(repository, "sha256:" + hashlib.sha256(body).hexdigest(), body, media_type)
    return Descriptor(media_type, digest, len(body), platform), True


def put_index(registry: Registry, repository: str, manifests: Sequence[Descriptor], tags: Sequence[str]) -> str:
    """Store an index of `manifests` under each of `tags`; its digest (the same bytes, so the same for every tag).

    A Docker manifest list for Docker manifests (what Docker's own builds make), else an OCI index.
    """
    docker = all(m.media_type == DOCKER_MANIFEST for m in manifests)
    media_type = DOCKER_LIST if docker else OCI_INDEX
    index = {"schemaVersion": 2, "mediaType": media_type, "manifests": [m.entry() for m in manifests]}
    body = json.dumps(index, separators=(",", ":")).encode()
    digest = ""
    for tag in tags:
        digest = registry.put_manifest(repository, tag, body, media_type)
    return digest


def image_platforms(registry: Registry, repository: str, reference: str) -> list[str]:
    """The platforms an image runs on: an index's entries (attestations left out), else its config's."""
    media_type, body, _ = registry.manifest(repository, reference)
    document = json.loads(body)
    if media_type in INDEXES:
        found = [join(m.get("platform") or {}) for m in document.get("manifests") or []]
        return [p for p in found if not p.startswith("unknown")]  # BuildKit's attestation manifests
    config = json.loads(registry.blob(repository, document["config"]["digest"]))
    return [join(config)]
