"""What every tool's CLI shares: the common flags and the error boundary.

The boundary turns every failure into one line on stderr and an exit code, never a
traceback (set CMB_DEBUG=1 to see one), with secrets redacted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from tools.errors import ToolError
from tools.report import REPORTER
from tools.settings import CLOUDS, ConfigError, Settings, load_settings


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


def main_boundary(run: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a tool's `main(argv)` so that it returns an exit code and prints no traceback."""

    def wrapped(argv: Sequence[str] | None = None) -> int:
        previous = _on_sigterm()
        try:
            return run(argv)
        except Terminated:
            REPORTER.error("terminated (SIGTERM): stopped; temporary credentials were removed")
            return 143
        except ConfigError as exc:
            for problem in exc.problems:
                REPORTER.error(problem, title="configuration")
            return exc.exit_code
        except ToolError as exc:
            REPORTER.error(str(exc))
            return exc.exit_code
        except KeyboardInterrupt:
            REPORTER.error("interrupted")
            return 130
        except SystemExit:
            raise
        except Exception as exc:  # the last line of defence: one line, redacted
            if os.environ.get("CMB_DEBUG"):
                sys.stderr.write(REPORTER.redact(traceback.format_exc()))
            REPORTER.error(f"unexpected {type(exc).__name__}: {exc} (set CMB_DEBUG=1 for details)")
            return 3
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapped


class Terminated(BaseException):
    """SIGTERM arrived (CI cancelled the job, a container is stopping): unwind like Ctrl-C, so every
    `finally` and context manager runs and temporary credentials (Docker config, kubeconfig) go."""


def _on_sigterm() -> Any:
    """Make SIGTERM raise `Terminated` in the main thread; returns the handler it replaced (or None)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)
