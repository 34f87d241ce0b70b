"""The content tag of an image: a hash of its Dockerfile and of the build context Docker would send.

An unchanged image keeps its tag, so a run with nothing changed builds nothing. The context is
read as Docker reads it, `.dockerignore` included (its patterns, `!` exceptions and Docker's
shortcut for ignored folders). The platforms built for (IMAGE_PLATFORMS) are part of it: the same
sources for other CPUs are another image. build_push tags by it; plan predicts it without Docker.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.errors import ToolError
from tools.platforms import DEFAULT_PLATFORMS

CONTENT_PREFIX = "c-"
CONTENT_TAG = re.compile(r"^c-[0-9a-f]{12}$")
_HASH_VERSION = b"cmbcluster-content-tag-v1\0"


# -- .dockerignore ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IgnorePattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool  # a "!" line: re-include what earlier lines excluded
    regex: re.Pattern[str]


def parse_dockerignore(text: str) -> list[IgnorePattern]:
    """Docker's reading of .dockerignore: comments, trimming, Clean(), a leading "/" dropped."""
    patterns = []
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                raise ToolError(f".dockerignore line {number}: a lone '!' is not a pattern: remove it")
        cleaned = posixpath.normpath(line)
        if cleaned.startswith("//"):
            cleaned = cleaned[1:]
        if len(cleaned) > 1 and cleaned.startswith("/"):
            cleaned = cleaned[1:]
        try:
            regex = re.compile(_pattern_regex(cleaned))
        except re.error:
            raise ToolError(f".dockerignore line {number}: bad pattern {line!r}: fix its [ ] brackets") from None
        patterns.append(IgnorePattern(cleaned, exclusion, regex))
    return patterns


def _pattern_regex(pattern: str) -> str:
    """The regular expression Docker's patternmatcher builds for one pattern."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":  # "**/" is "**"
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in ".+()|{}$":
            out += "\\" + ch
        elif ch == "\\":
            if i + 1 < len(pattern):
                i += 1
                out += "\\" + pattern[i]
            else:
                out += "\\\\"
        else:
            out += ch  # including [ ] character classes
        i += 1
    return out + "$"


def is_ignored(path: str, patterns: Sequence[IgnorePattern]) -> bool:
    """Docker's MatchesOrParentMatches: the last pattern matching the path or a parent folder wins."""
    parents = path.split("/")[:-1]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = bool(pattern.regex.match(path)) or any(
            pattern.regex.match("/".join(parents[: i + 1])) for i in range(len(parents))
        )
        if hit:
            matched = not pattern.exclusion
    return matched


def context_entries(context: Path, patterns: Sequence[IgnorePattern]) -> Iterator[tuple[str, os.stat_result]]:
    """The (relative path, lstat) of every entry Docker puts in the build context, sorted.

    An ignored folder is skipped whole unless a `!` pattern starts with its path (Docker's
    own shortcut: `!**/keep` does not reach into an ignored folder, `!dir/keep` does).
    """
    exceptions = [p.text + "/" for p in patterns if p.exclusion]

    def walk(folder: Path, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            rel = prefix + entry.name
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if patterns and is_ignored(rel, patterns):
                if is_dir and any(e.startswith(rel + "/") for e in exceptions):
                    yield from walk(Path(entry.path), rel + "/")
                continue
            yield rel, st
            if is_dir:
                yield from walk(Path(entry.path), rel + "/")

    yield from walk(context, "")


def content_tag(context: Path, dockerfile: Path, platforms: Sequence[str] = DEFAULT_PLATFORMS) -> str:
    """`c-` + 12 hex digits of the hash of the Dockerfile, the context Docker would send and the platforms.

    The default platforms add nothing to the hash, so tags made before IMAGE_PLATFORMS existed stay valid.
    """
    digest = hashlib.sha256(_HASH_VERSION)
    if tuple(platforms) != DEFAULT_PLATFORMS:
        _feed(digest, b"platforms", ",".join(platforms).encode())
    _feed(digest, b"Dockerfile", dockerfile.read_bytes())
    ignore_file = context / ".dockerignore"
    ignore_text = ignore_file.read_text(encoding="utf-8") if ignore_file.is_file() else ""
    _feed(digest, b".dockerignore", ignore_text.encode())  # Docker always sends it
    for rel, st in context_entries(context, parse_dockerignore(ignore_text)):
        mode = stat.S_IMODE(st.st_mode)
        path = context / rel
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as handle:
                body = hashlib.file_digest(handle, "sha256").digest()
            _feed(digest, f"F {rel} {mode:o}".encode(), body)
        elif stat.S_ISDIR(st.st_mode):
            _feed(digest, f"D {rel} {mode:o}".encode(), b"")
        elif stat.S_ISLNK(st.st_mode):
            _feed(digest, f"L {rel}".encode(), os.readlink(path).encode())
    return CONTENT_PREFIX + digest.hexdigest()[:12]


def _feed(digest: Any, head: bytes, body: bytes) -> None:
    digest.update(b"%d:%s%d:%s" % (len(head), head, len(body), body))
