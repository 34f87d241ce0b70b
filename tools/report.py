"""Everything the tools print goes through here, so secrets are redacted in one place.

One line per action with its result and time; colour only on a terminal; under GitHub
Actions also `::error::`/`::warning::` annotations, `::add-mask::` for secret values and
Markdown for the job summary.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

_COLOURS = {"ok": "32", "warn": "33", "error": "31", "skip": "36", "info": "0"}
_SYMBOLS = {"ok": "ok", "warn": "warning", "error": "error", "skip": "skipped", "info": ""}
_MIN_SECRET_LEN = 4  # shorter strings would redact ordinary words


class Reporter:
    """Prints action lines; knows the secret values so none of them ever reaches a stream."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out, self._err = out, err
        self._secrets: set[str] = set()

    def print_to_stderr(self) -> None:
        """For a tool whose stdout is data another program reads (an exec credential plugin)."""
        self._out = sys.stderr

    @property
    def out(self) -> TextIO:  # resolved late: tests and wrappers replace sys.stdout
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    # -- secrets -------------------------------------------------------------------------
    @property
    def github(self) -> bool:
        return os.environ.get("GITHUB_ACTIONS") == "true"

    def register_secrets(self, values: Iterable[str | None]) -> None:
        """Remember secret values; under GitHub Actions ask the runner to mask them too."""
        for value in values:
            # A multi-line value (a key file) is masked line by line, as GitHub masks.
            for part in dict.fromkeys([value, *value.splitlines()]) if value else ():
                if len(part.strip()) >= _MIN_SECRET_LEN and part not in self._secrets:
                    self._secrets.add(part)
                    if self.github and "\n" not in part:
                        # The mask command is the only place a value is written, as GitHub requires;
                        # escaped as every workflow command's data (the runner unescapes it), so a
                        # '%', CR or LF in the value cannot cut the command short.
                        self.out.write(f"::add-mask::{_escape_data(part)}\n")
        self.out.flush()

    def forget_secrets(self) -> None:
        """Start over, as a new process would (tests run many tools in one process)."""
        self._secrets.clear()

    def redact(self, text: str) -> str:
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    # -- lines ---------------------------------------------------------------------------
    def _colour(self, stream: TextIO, status: str, text: str) -> str:
        if stream.isatty() and not os.environ.get("NO_COLOR"):
            return f"\033[{_COLOURS.get(status, '0')}m{text}\033[0m"
        return text

    def line(self, status: str, message: str, seconds: float | None = None, stream: TextIO | None = None) -> None:
        stream = stream or self.out
        label = _SYMBOLS.get(status, status)
        timing = f" ({seconds:.2f}s)" if seconds is not None else ""
        prefix = self._colour(stream, status, f"{label:<8}") if label else " " * 8
        stream.write(self.redact(f"{prefix}{message}{timing}") + "\n")
        stream.flush()

    def info(self, message: str) -> None:
        self.line("info", message)

    def ok(self, message: str, seconds: float | None = None) -> None:
        self.line("ok", message, seconds)

    def warning(self, message: str, title: str | None = None) -> None:
        self.line("warn", message)
        self.annotate("warning", message, title)

    def error(self, message: str, title: str | None = None) -> None:
        self.line("error", message, stream=self.err)
        self.annotate("error", message, title)

    def annotate(self, level: str, message: str, title: str | None = None) -> None:
        if self.github:
            # Redact first, then escape: an escaped secret would no longer match its redaction.
            props = f" title={_escape_property(self.redact(title))}" if title else ""
            self.out.write(f"::{level}{props}::{_escape_data(self.redact(message))}\n")
            self.out.flush()

    @contextmanager
    def action(self, message: str) -> Iterator[ActionResult]:
        """Time one action and print its line when it ends (ok unless told otherwise)."""
        result = ActionResult()
        start = time.monotonic()
        try:
            yield result
        except Exception:  # a stop (SIGTERM, Ctrl-C) is reported once, by the CLI boundary
            self.line("error", f"{message}: failed", time.monotonic() - start, stream=self.err)
            raise
        detail = f"{message}: {result.detail}" if result.detail else message
        self.line(result.status, detail, time.monotonic() - start)

    # -- job summary ---------------------------------------------------------------------
    def summary(self, markdown: str) -> None:
        """Append Markdown to the GitHub job summary, when there is one."""
        path = os.environ.get("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(self.redact(markdown).rstrip("\n") + "\n\n")

    def output(self, name: str, value: str) -> None:
        """Set a GitHub step output (single-line values only)."""
        path = os.environ.get("GITHUB_OUTPUT")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"{name}={self.redact(value)}\n")


class ActionResult:
    """What an action reports when it finishes: `status` ok|skip|warn and a short detail."""

    def __init__(self) -> None:
        self.status = "ok"
        self.detail = ""

    def set(self, status: str, detail: str = "") -> None:
        self.status, self.detail = status, detail


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def markdown_table(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_MARKDOWN_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\[]|"})


def markdown_cell(value: object) -> str:
    """Text from anywhere (Kubernetes events, container logs) as one safe table cell: no line break
    or pipe can end the row or cell, no HTML, link or image is interpreted (code spans and
    emphasis may render, harmlessly: the tools' own cells use them)."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.translate(_MARKDOWN_SPECIAL)


REPORTER = Reporter()
