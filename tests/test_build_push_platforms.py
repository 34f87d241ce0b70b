"""build_push for the cluster's CPUs (IMAGE_PLATFORMS) on the test bed's Docker engine and registry.

The stand-in apps copy files only (FROM scratch + a static busybox), so Debian's Docker 20.10
classic builder builds them for any platform without emulation. The registry is read back
directly over HTTP (not through tools.registry), so what the toolkit wrote is checked by another
reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.envfiles import auth_lines
from tests.fixtures.apps import NAMES, env_lines, stage_apps
from tests.realcluster import DOCKER
from tools.build_push import main
from tools.content_tag import content_tag
from tools.platforms import BINFMT, KERNEL_ARCH
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed
TWO = ("linux/amd64", "linux/arm64")
ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def get(url: str, accept: str = ACCEPT) -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def read_image(registry: str, name: str, reference: str) -> tuple[str, dict, dict[str, dict]]:
    """(media type, index or manifest, {platform: that manifest's config}) as the registry serves them."""
    media_type, body = get(f"http://{registry}/v2/{name}/manifests/{reference}")
    document = json.loads(body)
    assert "sha256:" + hashlib.sha256(body).hexdigest() == reference or not reference.startswith("sha256:")
    configs = {}
    for entry in document.get("manifests") or []:
        _, manifest = get(f"http://{registry}/v2/{name}/manifests/{entry['digest']}")
        config = json.loads(get(f"http://{registry}/v2/{name}/blobs/{json.loads(manifest)['config']['digest']}")[1])
        platform = entry["platform"]
        configs[f"{platform['os']}/{platform['architecture']}"] = config
    return media_type, document, configs


def project(tmp_path: Path, registry: str, platforms: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    monkeypatch.setenv("DOCKER", DOCKER)  # Debian's 20.10 client: the classic builder, no buildx
    contexts = stage_apps(tmp_path / "apps")
    env_file = tmp_path / "local.env"
    env_file.write_text(
        f"CLOUD_PROVIDER=local\nCLUSTER_NAME=p{uuid.uuid4().hex[:10]}\nBASE_DOMAIN=cmb.example.org\n"
        f"REGISTRY_URL={registry}\nIMAGE_PLATFORMS={platforms}\n" + auth_lines() + env_lines(contexts)
    )
    return env_file, contexts


def make_build(env_file: Path, output: Path, platforms: str, env: dict[str, str]) -> str:
    """`make build CLOUD=local IMAGE_PLATFORMS=...` as the issue's operator runs it; its output."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "build", "CLOUD=local", f"ENV_FILE={env_file}", f"IMAGES_FILE={output}",
         f"IMAGE_PLATFORMS={platforms}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env, "DOCKER": DOCKER, "NO_COLOR": "1"},
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_make_build_for_two_platforms_pushes_indexes_with_both_variants_and_skips_them_unchanged(
    tmp_path: Path, docker_host: str, registry: str, bed_env: dict[str, str], monkeypatch
) -> None:
    env_file, contexts = project(tmp_path, registry, "linux/amd64", monkeypatch)  # the make variable wins
    output = tmp_path / "images.json"
    out = make_build(env_file, output, "linux/amd64,linux/arm64", bed_env)
    data = json.loads(output.read_text())
    for image in NAMES:
        entry = data["images"][image]
        tag = content_tag(contexts[image], contexts[image] / "Dockerfile", TWO)
        assert entry["tags"] == [tag] != [content_tag(contexts[image], contexts[image] / "Dockerfile")]
        name = entry["repository"].partition("/")[2]
        media_type, index, configs = read_image(registry, name, entry["digest"])
        assert media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
        assert [m["platform"] for m in index["manifests"]] == [
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "arm64"},
        ]
        # the classic builder wrote the host's CPU into the FROM-scratch arm64 config: build_push corrected it
        assert {p: (c["os"], c["architecture"]) for p, c in configs.items()} == {
            "linux/amd64": ("linux", "amd64"),
            "linux/arm64": ("linux", "arm64"),
        }
        assert configs["linux/arm64"]["config"]["Labels"]["org.cmbcluster.content-tag"] == tag
        assert read_image(registry, name, tag)[1] == index  # the content tag names the index
        assert f"{image}: building {entry['repository']}:{tag} for linux/amd64,linux/arm64" in out
        assert f"{image}: linux/arm64: the builder wrote another CPU into the config: corrected" in out
    again = make_build(env_file, output, "linux/amd64,linux/arm64", bed_env)
    assert json.loads(output.read_text()) == data
    for image in NAMES:
        assert f"skipped {image}: cached, not built: {data['images'][image]['repository']}:" in again
    assert "building" not in again and "3 image(s) ready, 0 built" in again


def test_a_dockerfile_that_runs_commands_for_a_cpu_without_emulation_stops_before_building(
    tmp_path: Path, docker_host: str, registry: str, bed_env: dict[str, str], monkeypatch, capfd
) -> None:
    # a CPU this machine has no binfmt_misc handler for
    arch = next(a for a in ("arm64", "s390x", "ppc64le", "riscv64") if not (BINFMT / f"qemu-{KERNEL_ARCH[a]}").exists())
    env_file, contexts = project(tmp_path, registry, f"linux/{arch}", monkeypatch)
    dockerfile = contexts["user-env"] / "Dockerfile"  # the last image: the others must not be built either
    dockerfile.write_text(
        dockerfile.read_text().replace("COPY www /www", 'COPY www /www\nRUN ["/bin/busybox", "true"]')
    )
    output = tmp_path / "images.json"
    code = main(["--env-file", str(env_file), "--output", str(output)])
    out, err = capfd.readouterr()
    assert code == 1, out + err
    (line,) = [line for line in err.splitlines() if "binfmt" in line]
    assert "user-env: the Dockerfile runs commands (RUN)" in line and "CPU is amd64" in line, line
    assert "qemu-user-static" in line and f"tonistiigi/binfmt --install {arch}" in line, line
    assert "Traceback" not in err and not output.exists()
    assert "building" not in out  # stopped before the first docker build: nothing half-done
