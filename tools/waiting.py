"""Waiting for a cloud to finish something (a DNS change, a certificate, a load balancer), with progress.

One loop for every such wait: it asks `probe` until it answers, prints a progress line now and
then (a wait of minutes must not look like a hang), and ends with one line that says what to do
when the time is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tools.errors import ToolError
from tools.report import REPORTER

T = TypeVar("T")
PROGRESS_EVERY = 15.0  # seconds between progress lines


def wait_for(probe: Callable[[], tuple[T | None, str]], *, what: str, timeout: float, hint: str) -> T:
    """Call `probe` until it returns a value; it returns (value or None, current state for the progress line).

    Raises ToolError "`what` is still STATE after N s: `hint`" when `timeout` seconds pass.
    """
    start = time.monotonic()
    interval = min(5.0, max(0.2, timeout / 20))
    last_progress = start
    while True:
        value, state = probe()
        if value is not None:
            return value
        now = time.monotonic()
        if now - start >= timeout:
            raise ToolError(f"{what} is still {state} after {timeout:.0f}s: {hint}")
        if now - last_progress >= min(PROGRESS_EVERY, timeout / 3):
            REPORTER.info(f"waiting for {what}: {state} ({now - start:.0f}s of {timeout:.0f}s)")
            last_progress = now
        time.sleep(min(interval, max(0.0, timeout - (now - start))))
