"""chartpress, the field's reference image builder, beside build_push on the same contexts, engine and registry.

chartpress (jupyterhub/chartpress, pinned in the Makefile's `.venv-chartpress`) tags an image by the
last git commit that touched its paths and skips a build when the tag exists locally or in the
registry; build_push tags by content and asks only the registry. Both are timed doing nothing: the
images exist, nothing changed. The two are run interleaved (one of each per sample) so that a
slow moment of the machine falls on both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHARTPRESS = REPO / ".venv-chartpress" / "bin" / "chartpress"
CHART = "cmbpeer"


def available() -> bool:
    return CHARTPRESS.is_file()


def stage(workdir: Path, contexts: dict[str, Path], registry: str) -> Path:
    """A git repository of its own holding chartpress.yaml, a minimal chart and the three contexts."""
    root = workdir / "chartpress-repo"
    root.mkdir()
    images = []
    for name, context in contexts.items():
        shutil.copytree(context, root / name)
        images.append(
            f"      {name}:\n        contextPath: {name}\n        dockerfilePath: {name}/Dockerfile\n"
            f"        valuesPath: {name.replace('-', '_')}.image\n"
        )
    (root / "chartpress.yaml").write_text(
        f"charts:\n  - name: {CHART}\n    chartPath: chart\n    imagePrefix: {registry}/chartpress-\n"
        "    images:\n" + "".join(images)
    )
    chart = root / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {CHART}\nversion: 0.0.1\n")
    (chart / "values.yaml").write_text(
        "".join(f"{n.replace('-', '_')}:\n  image:\n    repository: x\n    tag: x\n" for n in contexts)
    )
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "stand-ins"], cwd=root, check=True)
    return root


def run(root: Path, env: dict[str, str], *, unchanged: bool) -> float:
    """One `chartpress --push` in `root`; its seconds. An unchanged run must skip all three builds.

    The Debian client builds without buildx (../shared/REAL_PARTS.md), hence DOCKER_BUILDKIT=0 and /usr/bin first.
    """
    env = {**env, "DOCKER_BUILDKIT": "0", "PATH": f"/usr/bin:{env.get('PATH', os.defpath)}"}
    start = time.perf_counter()
    proc = subprocess.run([str(CHARTPRESS), "--push"], cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    said = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"chartpress failed (exit {proc.returncode}):\n{said[-3000:]}")
    if unchanged and said.count("Skipping build") != 3:
        raise SystemExit(f"chartpress rebuilt on an unchanged run:\n{said[-3000:]}")
    return seconds
