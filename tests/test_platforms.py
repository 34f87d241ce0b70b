"""tools.platforms: reading IMAGE_PLATFORMS, matching an index entry or a config, and what a foreign
CPU needs from the kernel (binfmt_misc handlers, as qemu-user-static installs them, in a folder of
files like /proc/sys/fs/binfmt_misc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.envfiles import good_env
from tools.errors import ToolError
from tools.platforms import emulation_missing, matches, parse_platforms, split, tag_suffix
from tools.settings import ConfigError, load_settings


def test_platforms_are_trimmed_deduplicated_and_kept_in_order() -> None:
    assert parse_platforms(" linux/arm64 , linux/amd64,linux/arm64") == ("linux/arm64", "linux/amd64")
    assert parse_platforms("") == ("linux/amd64",)
    assert split("linux/arm/v7") == {"os": "linux", "architecture": "arm", "variant": "v7"}
    assert tag_suffix("linux/arm/v7") == "arm-v7"


def test_a_variant_counts_only_when_asked_for() -> None:
    assert matches("linux/arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert not matches("linux/arm/v7", {"os": "linux", "architecture": "arm", "variant": "v6"})
    assert not matches("linux/arm64", {"os": "linux", "architecture": "amd64"})


@pytest.mark.parametrize("value", ["arm64", "linux/amd64;linux/arm64", "windows/amd64", "linux/ARM64"])
def test_a_malformed_setting_is_one_line_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(cloud="local", environ=good_env("local", IMAGE_PLATFORMS=value))
    (line,) = caught.value.problems
    assert "IMAGE_PLATFORMS" in line and "e.g. linux/amd64,linux/arm64" in line
    with pytest.raises(ToolError, match=r"IMAGE_PLATFORMS: .* is not a platform"):
        parse_platforms(value)


def test_emulation_is_needed_only_for_foreign_cpus_without_a_handler(tmp_path: Path) -> None:
    assert emulation_missing(["linux/amd64", "linux/arm64", "linux/s390x"], "amd64", tmp_path) == ["arm64", "s390x"]
    (tmp_path / "qemu-aarch64").write_text("enabled\n")
    assert emulation_missing(["linux/amd64", "linux/arm64"], "amd64", tmp_path) == []
    assert emulation_missing(["linux/amd64"], "arm64", tmp_path) == ["amd64"]  # an Arm builder for x86 nodes
