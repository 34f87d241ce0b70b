"""Benchmark of build_push on the three stand-in images and a local registry (`make bench-build`).

Starts its own Docker engine and registry (tests/testbed.py), stages the stand-in apps
(tests/fixtures/apps), then times `python -m tools.build_push` as a person runs it:
  cold       fresh engine and empty registry: build and push all three
  unchanged  nothing changed: every image found in the registry, nothing built (median of 5)
  one        one file of the frontend changed: only the frontend rebuilt
  floor      `python -c "import tools.cli, tools.cloud"`: start-up every tool pays
  two        IMAGE_PLATFORMS=linux/amd64,linux/arm64, after one build of those indexes: unchanged
             (median of 5), beside the single-platform default's
  chartpress the field's reference builder (bench/chartpress_peer.py, `make setup-chartpress`) on the same
             contexts, engine and registry, unchanged, its runs interleaved with build_push's
and prints seconds and the ratio to the cold run, and build_push's unchanged time as a share of
chartpress's. Targets: unchanged < 5% of cold; unchanged <= 0.4x chartpress's.
Runs `--rounds` times (default 3), each on a fresh engine and registry, and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import chartpress_peer

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.05
PEER_TARGET = 0.4  # build_push's unchanged time over chartpress's (issue: shape and speed)
WARM_RUNS = 5  # the unchanged run is short: its median over a few runs


def _run_build(env: dict[str, str], env_file: Path, output: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tools.build_push", "--env-file", str(env_file), "--output", str(output)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build_push failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return seconds, json.loads(output.read_text())


def _bytecode_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _floor() -> float:
    """What any tool pays before its own work: the interpreter and the shared modules (cli, settings, shim)."""
    times = []
    for _ in range(WARM_RUNS):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import tools.cli, tools.cloud"], cwd=REPO, env=_bytecode_env(), check=True
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _two_platforms(env: dict[str, str], env_file: Path, output: Path) -> float:
    """The unchanged run for two platforms: one build of the indexes, then the median of the skipped runs."""
    two = env_file.with_name("bench-two.env")
    two.write_text(env_file.read_text() + "IMAGE_PLATFORMS=linux/amd64,linux/arm64\n")
    _, first = _run_build(env, two, output)
    warm = []
    for _ in range(WARM_RUNS):
        seconds, again = _run_build(env, two, output)
        if again != first:
            raise SystemExit("the unchanged two-platform run changed the image list")
        warm.append(seconds)
    return statistics.median(warm)


def one_round(workdir: Path) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    from tests.envfiles import auth_lines
    from tests.fixtures.apps import env_lines, stage_apps
    from tests.testbed import TestBed

    bed = TestBed(str(workdir / "bed"))
    try:
        bed.docker()
        registry = bed.registry()
        contexts = stage_apps(workdir / "apps")
        env_file = workdir / "bench.env"
        env_file.write_text(
            "CLOUD_PROVIDER=local\nCLUSTER_NAME=bench\nBASE_DOMAIN=bench.example.org\n"
            f"REGISTRY_URL={registry}\n" + auth_lines() + env_lines(contexts)
        )
        env = {**os.environ, **bed.env, "NO_COLOR": "1"}
        env.pop("GITHUB_ACTIONS", None)
        # both tools timed as installed (pip compiles chartpress's bytecode) and as a person runs them twice: with
        # bytecode, not compiling the toolkit's sources on every run as PYTHONDONTWRITEBYTECODE would have it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        compiled = [
            str(REPO / "tools"),
            *([str(chartpress_peer.CHARTPRESS.parent.parent)] if chartpress_peer.available() else []),
        ]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *compiled], env=env, capture_output=True, check=False)
        output = workdir / "images.json"
        cold, first = _run_build(env, env_file, output)
        peer_root = None
        if chartpress_peer.available():
            peer_root = chartpress_peer.stage(workdir, contexts, registry)
            chartpress_peer.run(peer_root, env, unchanged=False)  # its cold build
        warm, peer = [], []
        for _ in range(WARM_RUNS):
            seconds, second = _run_build(env, env_file, output)
            if second != first:
                raise SystemExit("the unchanged run changed the image list")
            warm.append(seconds)
            if peer_root is not None:
                peer.append(chartpress_peer.run(peer_root, env, unchanged=True))
        unchanged = statistics.median(warm)
        (contexts["frontend"] / "www" / "index.html").write_text("<p>changed for the benchmark</p>\n")
        one, third = _run_build(env, env_file, output)
        changed = [n for n in first["images"] if first["images"][n] != third["images"][n]]
        if changed != ["frontend"]:
            raise SystemExit(f"expected only frontend to change, got {changed}")
        two = _two_platforms(env, env_file, workdir / "images-two.json")
        figures = {"cold": cold, "unchanged": unchanged, "one": one, "floor": _floor(), "two": two}
        if peer:
            figures["chartpress"] = statistics.median(peer)
        return figures
    finally:
        bed.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="fresh engine + registry per round (default 3)")
    args = p.parse_args(argv)
    rounds = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="cmb-bench-") as tmp:
            rounds.append(one_round(Path(tmp)))
        shown = ", ".join(f"{k} {v:.3f}s" for k, v in rounds[-1].items())
        print(f"round {number}: {shown}", flush=True)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    labels = {
        "cold": "cold (build + push, 3 images)",
        "unchanged": "unchanged (nothing built)",
        "one": "one image changed (frontend)",
        "floor": "of which python + shared imports",
        "two": "unchanged, linux/amd64,linux/arm64",
        "chartpress": "chartpress --push, unchanged",
    }
    print(f"\nbuild_push on the stand-in images, median of {args.rounds} round(s):")
    for key, label in labels.items():
        if key not in median:
            continue
        print(f"  {label:<34} {median[key]:7.3f}s  {median[key] / median['cold']:6.1%} of cold")
    ratio = median["unchanged"] / median["cold"]
    verdict = "met" if ratio < TARGET else "NOT met"
    print(f"target: unchanged < {TARGET:.0%} of cold: {verdict} ({ratio:.1%})")
    if "chartpress" in median:
        peer = median["unchanged"] / median["chartpress"]
        verdict = "met" if peer <= PEER_TARGET else "NOT met"
        print(f"target: unchanged <= {PEER_TARGET}x chartpress's: {verdict} ({peer:.2f}x)")
    else:
        print("chartpress: not installed (make setup-chartpress): no side-by-side figure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
