"""The one function that runs subprocesses: logging, redaction and --dry-run come free."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from tools.errors import ToolError
from tools.report import REPORTER


def run(
    cmd: Sequence[str],
    *,
    dry_run: bool = False,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    check: bool = True,
    stream: bool = False,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (never through a shell). Secrets go through `input`, never the argv.

    With `dry_run` the command is only printed. With `stream` its output goes straight to the
    terminal (build logs); otherwise it is captured and shown only when the command fails.
    """
    shown = shlex.join(cmd)
    if dry_run:
        REPORTER.info(f"would run: {shown}")
        return subprocess.CompletedProcess(list(cmd), 0, "", "")
    start = time.monotonic()
    try:
        proc = subprocess.run(
            list(cmd),
            input=input,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            capture_output=not stream,
            check=False,
        )
    except FileNotFoundError:
        raise ToolError(f"{cmd[0]} is not installed or not on PATH: install it (see README) and retry") from None
    elapsed = time.monotonic() - start
    if check and proc.returncode != 0:
        tail = _last_lines((proc.stderr or "") + (proc.stdout or ""), 15)
        if tail:
            REPORTER.line("error", tail, stream=REPORTER.err)
        label = what or shlex.join(cmd[:3])
        reason = _last_lines(proc.stderr or proc.stdout or "", 1) or f"exit code {proc.returncode}"
        raise ToolError(f"{label} failed after {elapsed:.1f}s: {REPORTER.redact(reason)}")
    return proc


def run_lines(
    cmd: Sequence[str], on_line: Callable[[str], None], *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> int:
    """Run `cmd` with its output (stdout and stderr in their order) handed to `on_line` line by line as it
    comes, for a caller that shows it and acts on what it announces (make demo times make's steps).
    Returns the exit code."""
    try:
        with subprocess.Popen(
            list(cmd),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc:
            for line in proc.stdout or ():
                on_line(line)
    except FileNotFoundError:
        raise ToolError(f"{cmd[0]} is not installed or not on PATH: install it (see README) and retry") from None
    return proc.returncode


def _last_lines(text: str, count: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-count:])
