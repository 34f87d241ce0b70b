"""Promotion across registries: staging's images copied into production's registry by digest.

Two real registries of the test bed play staging's (another account's or project's) and
production's. The images are assembled in the source registry through the registry client (a
two-platform index and single-platform images, random layers: unique to each test), then
`tools.copy_images` runs as the workflow runs it, with the local cloud pointed at the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.envfiles import good_env, write_env
from tests.testbed import TestBed
from tools import copy_images
from tools.cloud import RegistryAuth
from tools.image_index import DOCKER_MANIFEST, Descriptor, put_index
from tools.images import write_images
from tools.registry import Registry
from tools.settings import IMAGES, REPO_ROOT

PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class Source:
    """An image list in the source registry and where the copy goes."""

    images_file: Path
    env_file: Path
    output: Path
    target_registry: str
    cluster: str
    layers: dict[str, list[str]]  # image -> the blob digests it names (configs and layers)


def single(registry: Registry, repository: str, platform: str, layers: list[str]) -> Descriptor:
    """A one-layer image of `platform` (random content), stored by digest."""
    os_name, arch = platform.split("/")
    config = json.dumps({"architecture": arch, "os": os_name, "rootfs": {"type": "layers"}}).encode()
    layer = os.urandom(2048)
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer)}],
    }
    manifest["config"]["digest"] = registry.put_blob(repository, config)  # type: ignore[index]
    manifest["layers"][0]["digest"] = registry.put_blob(repository, layer)  # type: ignore[index]
    layers += [manifest["config"]["digest"], manifest["layers"][0]["digest"]]  # type: ignore[index]
    body = json.dumps(manifest).encode()
    digest = registry.put_manifest(repository, "sha256:" + hashlib.sha256(body).hexdigest(), body, DOCKER_MANIFEST)
    return Descriptor(DOCKER_MANIFEST, digest, len(body), platform)


def make_source(source_host: str, target_host: str, tmp_path: Path) -> Source:
    """backend: a two-platform index; frontend and user-env: single images; each tagged c-... and v1.2.3."""
    uid = uuid.uuid4().hex[:8]
    registry = Registry(source_host)
    records, layers = {}, {}
    for name in IMAGES:
        repository = f"{source_host}/staging-{uid}-{name}"
        tags = [f"c-{uuid.uuid4().hex[:12]}", "v1.2.3"]
        layers[name] = []
        if name == "backend":
            manifests = [single(registry, repository, p, layers[name]) for p in PLATFORMS]
            digest = put_index(registry, repository, manifests, tags)
        else:
            descriptor = single(registry, repository, "linux/amd64", layers[name])
            _, body, digest = registry.manifest(repository, descriptor.digest)
            for tag in tags:
                registry.put_manifest(repository, tag, body, DOCKER_MANIFEST)
        records[name] = {"repository": repository, "tags": tags, "digest": digest}
    registry.close()
    images_file = tmp_path / "staging" / "images.json"
    write_images(images_file, source_host, records, app_sha="a" * 40)
    cluster = f"prod{uid}"
    env = good_env("local", REGISTRY_URL=target_host, CLUSTER_NAME=cluster)
    env_file = write_env(tmp_path / "production.env", env)
    return Source(images_file, env_file, tmp_path / "production" / "images.json", target_host, cluster, layers)


def run(src: Source, *extra: str) -> int:
    argv = ["--cloud", "local", "--env-file", str(src.env_file), "--images-file", str(src.images_file)]
    return copy_images.main([*argv, "--output", str(src.output), *extra])


@pytest.fixture
def source(registry: str, second_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Source:
    """Staging's images in the test bed's registry, production's registry the second one."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return make_source(registry, second_registry, tmp_path)


def test_a_promotion_copies_index_and_images_by_digest_and_a_second_run_copies_nothing(
    source: Source, capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = json.loads(source.images_file.read_text())
    output = tmp_path / "github-output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    # a dry run, as the approved job runs the step (make copy-images), says what it would copy and copies nothing
    make = ["make", "--no-print-directory", "copy-images", "CLOUD=local", f"ENV_FILE={source.env_file}"]
    make += [f"IMAGES_FILE={source.images_file}", "DRY_RUN=true"]
    dry = subprocess.run(make, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would be copied") == 3 and f"would write {source.images_file}" in dry.stdout
    assert json.loads(source.images_file.read_text()) == staged
    target = Registry(source.target_registry)
    assert (
        target.digest(f"{source.target_registry}/{source.cluster}-backend", staged["images"]["backend"]["digest"])
        is None
    )

    assert run(source) == 0
    out, err = capfd.readouterr()
    assert err == ""
    lines = [line for line in out.splitlines() if "@sha256:" in line]
    assert len(lines) == 3 and all(": copied (" in line and line.endswith("s)") for line in lines), out
    written = json.loads(source.output.read_text())
    assert written["registry"] == source.target_registry and written["app_sha"] == "a" * 40
    for name, entry in staged["images"].items():
        repository = f"{source.target_registry}/{source.cluster}-{name}"
        assert written["images"][name] == {"repository": repository, "tags": entry["tags"], "digest": entry["digest"]}
        # the target gives back the very bytes, by digest and under every tag
        _, body, digest = target.manifest(repository, entry["digest"])
        assert digest == entry["digest"]
        assert all(target.digest(repository, tag) == digest for tag in entry["tags"])
        if name == "backend":  # each platform's manifest of the index, and each blob, is there too
            children = [m["digest"] for m in json.loads(body)["manifests"]]
            assert len(children) == 2 and all(target.manifest(repository, d)[2] == d for d in children)
        assert all(target.has_blob(repository, d) for d in source.layers[name])
        assert all(hashlib.sha256(target.blob(repository, d)).hexdigest() == d[7:] for d in source.layers[name])
    target.close()
    assert json.loads(output.read_text().split("=", 1)[1]) == written  # handed on as the step output

    assert run(source) == 0  # converges: nothing is copied again
    out, _ = capfd.readouterr()
    lines = [line for line in out.splitlines() if "@sha256:" in line]
    assert len(lines) == 3 and all(line.split(": ")[-1].startswith("already there (") for line in lines), out
    assert "0 copied" in out and json.loads(source.output.read_text()) == written


def test_an_absent_source_digest_is_refused_in_one_line_before_anything_is_copied(
    source: Source, capfd: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(source.images_file.read_text())
    absent = "sha256:" + "0" * 64
    data["images"]["user-env"]["digest"] = absent
    source.images_file.write_text(json.dumps(data))
    assert run(source) == 1
    _, err = capfd.readouterr()
    assert len(err.splitlines()) == 1, err
    assert f"user-env: {data['images']['user-env']['repository']}@{absent} is not in registry" in err
    target = Registry(source.target_registry)
    backend = data["images"]["backend"]["digest"]
    assert target.digest(f"{source.target_registry}/{source.cluster}-backend", backend) is None  # nothing half-done
    target.close()
    assert not source.output.exists()


def test_a_corrupt_source_blob_is_refused_in_one_line(
    testbed: TestBed, second_registry: str, registry: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The source registry serves a layer whose bytes are not its digest (a damaged store): no copy of it."""
    src = make_source(second_registry, registry, tmp_path)  # the second registry is the source: its store is ours
    layer = src.layers["frontend"][1]
    data = testbed.registry_storage("registry-2") / "blobs" / "sha256" / layer[7:9] / layer[7:] / "data"
    data.write_bytes(os.urandom(2048))
    assert run(src) == 1
    _, err = capfd.readouterr()
    assert len(err.splitlines()) == 1, err
    assert f"blob {layer[:19]} of {second_registry}/" in err and "has other content" in err
    frontend = json.loads(src.images_file.read_text())["images"]["frontend"]["digest"]
    target = Registry(registry)
    assert target.digest(f"{registry}/{src.cluster}-frontend", frontend) is None  # no manifest over a bad blob
    target.close()


def test_a_tag_the_target_has_for_another_image_is_never_moved(
    source: Source, capfd: pytest.CaptureFixture[str]
) -> None:
    staged = json.loads(source.images_file.read_text())["images"]
    target = Registry(source.target_registry)
    repository = f"{source.target_registry}/{source.cluster}-frontend"
    other = single(target, repository, "linux/amd64", [])
    _, body, _ = target.manifest(repository, other.digest)
    target.put_manifest(repository, "v1.2.3", body, DOCKER_MANIFEST)
    assert run(source) == 1
    _, err = capfd.readouterr()
    assert len(err.splitlines()) == 1 and f"{repository}:v1.2.3 already names another image" in err, err
    assert target.digest(repository, "v1.2.3") == other.digest
    backend = f"{source.target_registry}/{source.cluster}-backend"
    assert target.digest(backend, staged["backend"]["digest"]) is None  # refused before the first copy
    target.close()


def test_the_same_registry_copies_nothing(registry: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src = make_source(registry, registry, tmp_path)
    assert run(src) == 0
    out, _ = capfd.readouterr()
    assert f"images already in {registry} (the list's registry): nothing to copy" in out
    assert json.loads(src.output.read_text()) == json.loads(src.images_file.read_text())


@pytest.mark.parametrize(
    ("cloud", "host", "gets"),
    [
        ("aws", "210987654321.dkr.ecr.eu-west-1.amazonaws.com", True),  # another account's ECR
        ("aws", "registry.example.com", False),
        ("aws", "210987654321.dkr.ecr.eu-west-1.amazonaws.com.evil.example", False),
        ("gcp", "europe-docker.pkg.dev", True),  # another project's Artifact Registry
        ("gcp", "gcr.evil.example", False),
        ("local", "127.0.0.1:5001", False),
    ],
)
def test_the_cloud_credentials_go_to_its_own_provider_registries_only(cloud: str, host: str, gets: bool) -> None:
    own = RegistryAuth("own.example", "AWS", "password-of-the-deploy-identity")
    auth = copy_images.source_auth(cloud, host, own)
    assert (auth == RegistryAuth(host, own.username, own.password)) if gets else auth is None
