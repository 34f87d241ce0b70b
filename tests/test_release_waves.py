"""The waves a GitHub release runs (tools/release_waves.py, the matrices of release.yml's wave jobs):
fleet.yaml's order, the canary alone in the first wave, and bad selections refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.envfiles import good_env, write_env
from tools import release_waves
from tools.settings import REPO_ROOT

FLEET = str(REPO_ROOT / "fleet.yaml")  # canary [aws-us], regions [aws-eu, gcp-eu]


def outputs(capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict:
    path = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(path))
    assert release_waves.main(list(args)) == 0, capfd.readouterr().err
    return {k: json.loads(v) for k, v in (line.split("=", 1) for line in path.read_text().splitlines())}


def test_all_targets_roll_out_in_the_fleets_waves_each_with_its_cloud(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = outputs(capfd, tmp_path, monkeypatch, "--fleet", FLEET, "--targets", "all")
    assert got["wave1"] == [{"target": "aws-us", "cloud": "aws"}]
    assert got["wave2"] == [{"target": "aws-eu", "cloud": "aws"}, {"target": "gcp-eu", "cloud": "gcp"}]
    assert got["wave3"] == []  # release.yml skips the job, and so every later one
    assert [t["target"] for t in got["targets"]] == ["aws-us", "aws-eu", "gcp-eu"]
    out = capfd.readouterr().out
    assert "wave 1: aws-us (aws)" in out and "wave 2: aws-eu (aws), gcp-eu (gcp)" in out


def test_a_selection_keeps_the_fleet_order_and_drops_empty_waves(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = outputs(capfd, tmp_path, monkeypatch, "--fleet", FLEET, "--targets", " gcp-eu, aws-us")
    assert got["wave1"] == [{"target": "aws-us", "cloud": "aws"}]
    assert got["wave2"] == [{"target": "gcp-eu", "cloud": "gcp"}]
    (tmp_path / "again").mkdir()
    only = outputs(capfd, tmp_path / "again", monkeypatch, "--fleet", FLEET, "--targets", "aws-eu")
    assert only["wave1"] == [{"target": "aws-eu", "cloud": "aws"}] and only["wave2"] == []


def test_release_clouds_are_one_wave_of_the_targets_named_by_their_cloud(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = outputs(capfd, tmp_path, monkeypatch, "--clouds", '["aws","gcp","aws"]')
    assert got["wave1"] == [{"target": "aws", "cloud": "aws"}, {"target": "gcp", "cloud": "gcp"}]
    assert got["wave2"] == got["wave3"] == []


def _fleet(tmp_path: Path, waves: list[list[str]]) -> str:
    (tmp_path / "env").mkdir(exist_ok=True)
    for target in {t for wave in waves for t in wave}:
        write_env(tmp_path / "env" / f"{target}.env", good_env("local", NAMESPACE=target))
    text = "waves:\n" + "".join(f"  - targets: [{', '.join(w)}]\n" for w in waves)
    (tmp_path / "fleet.yaml").write_text(text)
    return str(tmp_path / "fleet.yaml")


@pytest.mark.parametrize(
    ("waves", "args", "line"),
    [
        (
            [["a1"], ["b1"]],
            ["--targets", "a1,zz"],
            "target zz is not in fleet.yaml: name targets of its waves (a1, b1)",
        ),
        ([["a1"], ["b1"]], ["--targets", ","], "no target named: name targets of its waves"),
        ([["a1", "a2"], ["b1"]], ["--targets", "all"], "the first wave (a1, a2) builds the release's images once"),
        ([["a1"], ["b1"], ["c1"], ["d1"]], ["--targets", "all"], "4 waves: release.yml runs at most 3"),
        ([["a1"]], ["--clouds", '["azure"]'], "--clouds '[\"azure\"]': give a JSON list of aws, gcp, local"),
        ([["a1"]], [], "name --targets (fleet targets, or all) or --clouds"),
    ],
)
def test_bad_selections_are_one_line_and_hand_on_nothing(
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    waves: list[list[str]],
    args: list[str],
    line: str,
) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "github_output"))
    assert release_waves.main(["--fleet", _fleet(tmp_path, waves), *args]) == 2
    _, err = capfd.readouterr()
    assert len(err.splitlines()) == 1 and line in err, err
    assert "Traceback" not in err and not (tmp_path / "github_output").exists()


def test_status_lists_every_target_without_the_rollout_rules(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status.yml's matrix: the targets alone; a first wave of two is fine for a status (nothing is built)."""
    fleet = _fleet(tmp_path, [["a1", "a2"], ["b1"]])
    got = outputs(capfd, tmp_path, monkeypatch, "--fleet", fleet, "--targets", "all", "--list")
    assert got == {"targets": [{"target": t, "cloud": "local"} for t in ("a1", "a2", "b1")]}
