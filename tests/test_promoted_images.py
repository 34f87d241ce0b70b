"""A promotion takes the previous environment's image list whole, or fails naming the job; it never builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import promoted_images
from tools.settings import IMAGES

JOB = "deploy (aws-production)"
DIGEST = "sha256:" + "ab" * 32


def image_list(names: tuple[str, ...] = IMAGES) -> str:
    images = {n: {"repository": f"reg.example/cmb/{n}", "tags": ["c-1", "v1.2.3"], "digest": DIGEST} for n in names}
    return json.dumps({"registry": "reg.example", "images": images, "app_sha": "a" * 40})


def run(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> int:
    monkeypatch.setenv("IMAGES", text)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return promoted_images.main(["--job", JOB, "--output", str(tmp_path / "out" / "images.json")])


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", f"{JOB}: the promoted image list arrived empty"),
        ("  \n", f"{JOB}: the promoted image list arrived empty"),
        (image_list(("backend", "frontend")), f"{JOB}: the promoted image list lacks user-env"),
        ("{not json", f"{JOB}: the promoted image list is not JSON"),
        (json.dumps({"images": {"backend": {"repository": "r"}}}), f"{JOB}: the promoted image list is malformed"),
    ],
    ids=["empty", "blank", "partial", "not-json", "malformed"],
)
def test_an_empty_or_partial_list_fails_naming_the_job(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path, text: str, line: str
) -> None:
    assert run(monkeypatch, capfd, tmp_path, text) == 1
    _, err = capfd.readouterr()
    assert len(err.splitlines()) == 1 and line in err, err
    assert not (tmp_path / "out" / "images.json").exists()  # nothing left for a later step to deploy


def test_a_whole_list_is_written_handed_on_and_summarised(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert run(monkeypatch, capfd, tmp_path, image_list()) == 0
    out, _ = capfd.readouterr()
    assert "promoted image list: 3 image(s) by digest, nothing built" in out
    assert json.loads((tmp_path / "out" / "images.json").read_text()) == json.loads(image_list())
    name, value = output.read_text().strip().split("=", 1)
    assert name == "images" and json.loads(value) == json.loads(image_list())
    assert f"`reg.example/cmb/backend@{DIGEST}`" in summary.read_text()
