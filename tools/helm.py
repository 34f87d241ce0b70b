"""Which helm the tools use, and a pyhelm3 client for it.

A `helm` on PATH is what the user has; `make setup` puts a pinned one in the virtualenv when
there is none. HELM_BIN overrides both (e.g. `helm3` to hold the chart to Helm 3).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from tools.errors import ToolError
from tools.report import REPORTER
from tools.settings import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm"
T = TypeVar("T")


def helm_binary() -> str:
    chosen = os.environ.get("HELM_BIN")
    if chosen:
        found = shutil.which(chosen)
        if not found:
            raise ToolError(f"HELM_BIN={chosen} is not an executable: fix HELM_BIN or unset it")
        return found
    beside = Path(sys.executable).parent / "helm"
    if beside.exists():
        return str(beside)
    found = shutil.which("helm")
    if not found:
        raise ToolError("helm is not installed: run `make setup` (it installs a pinned helm into .venv)")
    return found


def client(**kwargs: Any) -> Any:
    """A pyhelm3 Client on our helm binary (through `command_class()` unless a command is given)."""
    import subprocess

    from pyhelm3 import Client

    try:
        command = kwargs.pop("command", None) or command_class()(executable=helm_binary())
        return Client(executable=helm_binary(), command=command, **kwargs)  # runs `helm version` at once
    except (subprocess.CalledProcessError, OSError) as exc:
        raise broken_helm(exc) from None


def command_class() -> type:
    """pyhelm3's Command with helm as the process it stops when its task is cancelled.

    pyhelm3 runs helm through `sh -c`, and Debian's dash forks helm instead of replacing itself,
    so on cancellation pyhelm3's `terminate()` reached only the shell and then waited for an
    orphaned helm until helm's --timeout. With `exec` helm is the process terminated and reaped:
    it marks the release failed and exits.
    """
    import subprocess

    import semver
    from pyhelm3 import Command

    class StoppableCommand(Command):  # type: ignore[misc]
        def __init__(self, *, executable: str, **kwargs: Any) -> None:
            super().__init__(executable=executable, **kwargs)
            self.helm_path, self._executable = executable, "exec"

        async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
            return await super().run([self.helm_path, *command], input)  # type: ignore[no-any-return]

        def client_version(self) -> Any:
            proc = subprocess.run(
                [self.helm_path, "version", "--template", "{{ .Version }}"], capture_output=True, check=True
            )
            return semver.Version.parse(proc.stdout.decode().removeprefix("v"))

    return StoppableCommand


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one pyhelm3 coroutine, turning its errors into one clear line (a stop signal stops helm cleanly)."""
    import subprocess

    from pyhelm3 import errors

    from tools.cli import run_async as run_stoppable

    try:
        return run_stoppable(coroutine)
    except errors.Error as exc:
        raise ToolError(f"helm: {helm_reason(exc)}") from None
    except (subprocess.CalledProcessError, OSError) as exc:  # pyhelm3 asks `helm version` first
        raise broken_helm(exc) from None


def broken_helm(exc: BaseException) -> ToolError:
    """The helm binary cannot run at all (126: not executable here, e.g. another CPU architecture)."""
    import subprocess

    binary = helm_binary()
    reason = f"exit code {exc.returncode}" if isinstance(exc, subprocess.CalledProcessError) else str(exc)
    return ToolError(
        f"{binary} does not run ({reason}): it is broken or built for another system; reinstall it "
        "(`make setup`, or your package manager) or point HELM_BIN at a working helm"
    )


def helm_reason(exc: BaseException | str) -> str:
    """The `Error: ...` part of helm's stderr (with its continuation lines), without the client's noise."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    if not starts:
        return lines[-1] if lines else type(exc).__name__
    tail = [lines[starts[-1]].removeprefix("Error:").strip()]
    tail += [line for line in lines[starts[-1] + 1 :] if not re.match(r"^[WIE]\d{4} |^level=", line)]
    return REPORTER.redact(" ".join(tail))


def render(release: str, namespace: str, values: dict[str, Any], chart: Path = CHART_DIR) -> list[dict[str, Any]]:
    """`helm template` of `chart` with `values`: the manifests, parsed (the same command pyhelm3 runs).

    Run here, not through pyhelm3: a no-op deploy needs only the render, and pyhelm3's import (about
    0.5 s), its `helm version` first and its pure-Python YAML parser cost more than helm itself; the
    manifests are parsed with libyaml when PyYAML has it.
    """
    import json
    import subprocess

    from tools.runner import run

    if not (chart / "Chart.yaml").exists():
        raise ToolError(f"no chart at {chart}: expected {chart}/Chart.yaml")
    command = [helm_binary(), "template", release, str(chart), "--skip-crds", "--values", "-", "--namespace", namespace]
    try:
        proc = run(command, input=json.dumps(values), check=False)
    except OSError as exc:  # e.g. a helm built for another CPU: "Exec format error"
        raise broken_helm(exc) from None
    if proc.returncode == 126:
        raise broken_helm(subprocess.CalledProcessError(proc.returncode, command))
    if proc.returncode != 0:
        raise ToolError(f"helm: {helm_reason(proc.stderr or proc.stdout or f'exit code {proc.returncode}')}")
    return parse_manifests(proc.stdout)


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """A Helm manifest stream as objects, parsed by libyaml when PyYAML has it (about 10x the pure-Python parser)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [o for o in yaml.load_all(text, Loader=loader) if o]


def rollback_refusal(release: str, ours: int | None, current: tuple[int, str] | None, *, made: bool) -> str | None:
    """Why this run must not roll `release` back, or None when it may.

    A run undoes only its own revision: the one it made (helm_deploy, `made`) or judged (smoke_test),
    and only while that is still the current one. Another writer's revision is never undone: that
    is how two deploys at once ended with the winner's images rolled back by the loser.
    """
    if ours is None:
        return f"this run made no new revision of release {release}: nothing to roll back"
    if current is None:
        return f"release {release} no longer exists: nothing to roll back"
    revision, status = current
    verb = "made" if made else "judged"
    if revision != ours:
        return (
            f"release {release} is now at revision {revision} ({status}), not revision {ours} that this run "
            f"{verb}: another writer changed it, so this run rolls nothing back"
        )
    if made and status == "deployed":
        return (
            f"revision {revision} of release {release} is deployed, not this run's failed one: another writer "
            "made it, so this run rolls nothing back"
        )
    return None


def rollback_target(history: Iterable[tuple[int, str]], current: int | None) -> int | None:
    """The revision to roll back to from `current` (None: no revision is undone, e.g. a dry run's base).

    Among the revisions before `current`: the newest `deployed` one (what last ran healthy), else the
    newest `superseded` one (it once ran healthy; a failed rollback or an interrupted writer can
    leave none deployed). None: nothing was ever deployed, so there is nothing to go back to.
    """
    earlier = [(revision, status) for revision, status in history if current is None or revision < current]
    for wanted in ("deployed", "superseded"):
        found = [revision for revision, status in earlier if status == wanted]
        if found:
            return max(found)
    return None
