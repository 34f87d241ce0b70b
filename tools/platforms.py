"""The CPU platforms images are built for (IMAGE_PLATFORMS), and what a builder needs for them.

A platform is `os/architecture[/variant]` as Docker and the OCI image index write it
(`linux/amd64`, `linux/arm64`, `linux/arm/v7`). The nodes' `kubernetes.io/arch` label holds the
same architecture names (Go's GOARCH), so an image's platforms and the nodes compare directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from tools.errors import ToolError

DEFAULT_PLATFORMS = ("linux/amd64",)
PLATFORM = re.compile(r"^linux/[a-z0-9]+(/v[0-9]+)?$")
PLATFORMS_PATTERN = r"^ *linux/[a-z0-9]+(/v[0-9]+)?( *, *linux/[a-z0-9]+(/v[0-9]+)?)* *$"  # IMAGE_PLATFORMS
# GOARCH -> the kernel's name for it, which names the binfmt_misc handler (qemu-<name>) of
# qemu-user-static and tonistiigi/binfmt: https://docs.docker.com/build/building/multi-platform/#qemu
KERNEL_ARCH = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "386": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
_RUN = re.compile(r"^\s*RUN\s", re.IGNORECASE | re.MULTILINE)


def parse_platforms(value: str) -> tuple[str, ...]:
    """`linux/amd64, linux/arm64` -> ("linux/amd64", "linux/arm64"): trimmed, duplicates dropped, order kept."""
    if not value.strip():
        return DEFAULT_PLATFORMS
    platforms: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not PLATFORM.match(item):
            raise ToolError(f"IMAGE_PLATFORMS: {item!r} is not a platform: use e.g. linux/amd64,linux/arm64")
        if item not in platforms:
            platforms.append(item)
    return tuple(platforms)


def split(platform: str) -> dict[str, str]:
    """`linux/arm/v7` -> {"os": "linux", "architecture": "arm", "variant": "v7"} (the OCI platform object)."""
    os_name, architecture, *variant = platform.split("/")
    return {"os": os_name, "architecture": architecture, **({"variant": variant[0]} if variant else {})}


def join(platform: dict[str, str]) -> str:
    """The OCI platform object back to `os/architecture[/variant]`."""
    parts = [platform.get("os") or "?", platform.get("architecture") or "?", platform.get("variant") or ""]
    return "/".join(p for p in parts if p)


def matches(platform: str, found: dict[str, str]) -> bool:
    """Whether an OCI platform object (or image config) is `platform`; a variant counts only when asked for
    (BuildKit writes `arm64/v8` for plain `arm64`)."""
    wanted = split(platform)
    return all(found.get(key) == value for key, value in wanted.items())


def tag_suffix(platform: str) -> str:
    """What a per-platform tag ends with: `linux/arm/v7` -> `arm-v7`."""
    return platform.split("/", 1)[1].replace("/", "-")


def runs_commands(dockerfile: Path) -> bool:
    """Whether the Dockerfile has a RUN instruction: only those need the target CPU while building."""
    return bool(_RUN.search(dockerfile.read_text(encoding="utf-8", errors="replace")))


def emulation_missing(platforms: Sequence[str], engine_arch: str, binfmt: Path = BINFMT) -> list[str]:
    """The foreign architectures among `platforms` this kernel has no binfmt_misc handler for.

    Only meaningful for an engine on this machine (binfmt_misc is the kernel's, shared with it).
    """
    missing = []
    for platform in platforms:
        arch = split(platform)["architecture"]
        if arch == engine_arch:
            continue
        kernel = KERNEL_ARCH.get(arch, arch)
        if not (binfmt / f"qemu-{kernel}").exists():
            missing.append(arch)
    return missing


def emulation_hint(name: str, missing: Sequence[str], engine_arch: str) -> str:
    """One line: what the builder needs to run a Dockerfile's commands for a foreign CPU."""
    archs = ",".join(missing)
    return (
        f"{name}: the Dockerfile runs commands (RUN) and the Docker engine's CPU is {engine_arch}, so building for "
        f"{archs} needs binfmt emulation, which this machine lacks: install it (apt-get install qemu-user-static, or "
        f"docker run --privileged --rm tonistiigi/binfmt --install {archs}), or build on a {archs} machine"
    )
