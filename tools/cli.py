"""What every tool's CLI shares: the common flags and the error boundary.

The boundary turns every failure into one line on stderr and an exit code, never a
traceback (set CMB_DEBUG=1 to see one), with secrets redacted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from tools.errors import ToolError
from tools.report import REPORTER
from tools.settings import CLOUDS, ConfigError, Settings, load_settings

T = TypeVar("T")


def parser(description: str, *, cloud: bool = True, dry_run: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    if cloud:
        p.add_argument("--cloud", choices=CLOUDS, help="target cloud (default: CLOUD_PROVIDER)")
        p.add_argument("--env-file", metavar="PATH", help="dotenv file; the process environment wins over it")
    if dry_run:
        p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(cloud=args.cloud, env_file=args.env_file)


class Main(Protocol):
    """A tool's `main`: its arguments (the command line's when None) -> an exit code."""

    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


def main_boundary(run: Callable[[Sequence[str] | None], int]) -> Main:
    """Wrap a tool's `main(argv)` so that it returns an exit code and prints no traceback."""

    def wrapped(argv: Sequence[str] | None = None) -> int:
        previous = _on_stop_signals()
        try:
            return run(argv)
        except (Terminated, KeyboardInterrupt) as exc:
            signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
            where, then = _STOPPED_AT[0] if _STOPPED_AT else _IDLE
            where = f" {where}" if where else ""
            REPORTER.error(
                f"stopped by {signal.Signals(signum).name}{where}: {then}; temporary credentials were removed"
            )
            return 128 + signum
        except ConfigError as exc:
            for problem in exc.problems:
                REPORTER.error(problem, title="configuration")
            return exc.exit_code
        except ToolError as exc:
            REPORTER.error(str(exc))
            return exc.exit_code
        except SystemExit:
            raise
        except Exception as exc:  # the last line of defence: one line, redacted
            if os.environ.get("CMB_DEBUG"):
                sys.stderr.write(REPORTER.redact(traceback.format_exc()))
            REPORTER.error(f"unexpected {type(exc).__name__}: {exc} (set CMB_DEBUG=1 for details)")
            return 3
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            _STOPPING.clear()
            _STOPPED_AT.clear()

    return wrapped


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived (CI cancelled the job, Ctrl-C, a container is stopping): unwind, so every
    `finally` and context manager runs: helm is stopped and reaped, the release's lock released and
    temporary credentials (Docker config, kubeconfig) removed."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Where a step is, for the line a stop prints: (where, what the next run does); innermost last.
_IDLE = ("", "run it again: every step converges from where it stopped")
_STAGES: list[tuple[str, str]] = []
_STOPPING: list[int] = []  # the signal that is stopping the run, once one arrived
_STOPPED_AT: list[tuple[str, str]] = []  # the stage it arrived in (unwinding leaves every stage)
_LOOPS: list[tuple[Any, Any]] = []  # (event loop, its main task) while run_async runs one


@contextmanager
def stage(where: str, then: str) -> Iterator[None]:
    """Name the part of a step that runs inside: a stop there says `where` and what the next run does.
    Also a decorator, for a step's whole `main` (inside `main_boundary`)."""
    _STAGES.append((where, then))
    try:
        yield
    finally:
        _STAGES.remove((where, then))


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end. A stop signal cancels its task instead of raising inside the event
    loop's callbacks, so its subprocesses are terminated and awaited (pyhelm3 does that on
    cancellation) before `Terminated` leaves here: no asyncio warning, no orphaned helm."""
    import asyncio

    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        try:
            task = loop.create_task(coroutine)
        except BaseException:
            coroutine.close()
            raise
        _LOOPS.append((loop, task))
        try:
            if _STOPPING:
                task.cancel()
            result = loop.run_until_complete(task)
        except asyncio.CancelledError:
            if _STOPPING:
                raise Terminated(_STOPPING[0]) from None
            raise
        finally:
            _LOOPS.remove((loop, task))
    if _STOPPING:  # it arrived while the task was finishing anyway
        raise Terminated(_STOPPING[0])
    return result


def _on_stop_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT stop the run the same way (`Terminated`, or a cancelled task in `run_async`);
    a repeated signal does not interrupt the cleanup. Returns the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: object) -> None:
        if _STOPPING:
            return
        _STOPPING.append(signum)
        _STOPPED_AT.append(_STAGES[-1] if _STAGES else _IDLE)
        if _LOOPS:
            loop, task = _LOOPS[-1]
            loop.call_soon_threadsafe(task.cancel)
            return
        raise Terminated(signum)

    return {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
