"""One way for a test to wait: poll a probe until it answers, never a fixed sleep.

A fixed sleep is either too short on a busy machine (a flaky test) or too long on an idle one (a
slow suite); a hand-written deadline loop tends to lose what it last saw. `eventually` polls
often at first and less later, returns the probe's first truthy answer, and fails at the
deadline naming what it waited for and the probe's last answer or exception."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
FIRST_PAUSE = 0.05  # most waits here end within a second: look again soon at first


def eventually(
    probe: Callable[[], T],
    what: str | Callable[[], str],
    seconds: float = 60,
    pause: float = 0.5,
) -> T:
    """`probe()`'s first truthy answer within `seconds`; else an AssertionError naming `what` (a text, or a
    function called once then, e.g. for the pod's events) and the last answer or exception.

    An exception from the probe counts as "not yet" (an API server that is restarting, a file half
    written), except an AssertionError: a probe asserts what must never happen (a pod that failed),
    and that fails the test at once rather than at the deadline."""
    deadline = time.monotonic() + seconds
    wait, last = FIRST_PAUSE, "no answer"
    while True:
        try:
            answer = probe()
        except AssertionError:
            raise
        except Exception as exc:  # named in the failure below if it lasts
            last = f"{type(exc).__name__}: {exc}"
        else:
            if answer:
                return answer
            last = repr(answer)
        left = deadline - time.monotonic()
        if left <= 0:
            described = what() if callable(what) else what
            raise AssertionError(f"{described}: not after {seconds:g}s (last: {last})")
        time.sleep(min(wait, left))
        wait = min(wait * 2, pause)
