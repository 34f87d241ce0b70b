"""tests/waiting.py's `eventually`: the first truthy answer, a failure that names the last one, an
exception counted as "not yet", and a probe's own assertion failing at once."""

from __future__ import annotations

import time

import pytest

from tests.waiting import eventually


def test_the_first_truthy_answer_is_returned_as_soon_as_it_comes() -> None:
    answers = iter([None, [], 0, "ready", "later"])
    start = time.monotonic()
    assert eventually(lambda: next(answers), "the answer", seconds=5) == "ready"
    assert time.monotonic() - start < 1  # three short pauses, not one long one


def test_at_the_deadline_it_fails_naming_what_and_the_last_answer() -> None:
    asked = []

    def phase() -> str | None:
        asked.append("Pending")
        return None if asked[-1] == "Pending" else "Running"

    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"^pod p running: not after 0.3s \(last: None\)$"):
        eventually(phase, lambda: "pod p running", seconds=0.3)
    assert 0.3 <= time.monotonic() - start < 1.3
    assert len(asked) >= 3  # polled, not asked once


def test_an_exception_is_not_yet_and_the_last_one_is_named() -> None:
    tries = iter([ConnectionError("refused"), KeyError("phase"), "up"])

    def probe() -> str:
        answer = next(tries)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert eventually(probe, "the server", seconds=5) == "up"

    def refused() -> str:
        raise ConnectionError("refused")

    with pytest.raises(AssertionError, match=r"^the server: not after 0.2s \(last: ConnectionError: refused\)$"):
        eventually(refused, "the server", seconds=0.2)


def test_a_probes_own_assertion_fails_at_once() -> None:
    def failed_pod() -> bool:
        raise AssertionError("pod p failed: OOMKilled")

    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"^pod p failed: OOMKilled$"):
        eventually(failed_pod, "pod p", seconds=30)
    assert time.monotonic() - start < 1
