"""The image list build_push writes and the later steps read (`out/images.json`): the one contract
between them, so that no step imports another.

{"registry": "...", "images": {"backend": {"repository": "...", "tags": ["c-...", "v1.2.3"],
"digest": "sha256:..."}, ...}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tools.errors import ToolError
from tools.registry import DIGEST
from tools.settings import IMAGES

DEFAULT_OUTPUT = "out/images.json"


def write_images(path: Path, registry: str, records: dict[str, dict[str, Any]], app_sha: str = "") -> dict[str, Any]:
    """Write the image list atomically; images not in `records` keep their previous entry.

    `app_sha`: the application commit the images were built from (a release pinned to its source)."""
    images: dict[str, Any] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
            if previous.get("registry") == registry:
                images = {k: v for k, v in (previous.get("images") or {}).items() if k in IMAGES}
        except (ValueError, AttributeError, OSError):
            images = {}
    images.update(records)
    data: dict[str, Any] = {"registry": registry, "images": {name: images[name] for name in IMAGES if name in images}}
    if app_sha:
        data["app_sha"] = app_sha
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: the rename is atomic
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ToolError(f"cannot write {path} ({exc.strerror or exc}): choose another --output") from None
    return data


def load_images(path: str | os.PathLike[str] = DEFAULT_OUTPUT) -> dict[str, dict[str, str]]:
    """Read build_push's output for the chart: {name: {"repository", "tag", "digest"}}.

    `tag` is the release tag when one was given, else the content tag (the last of `tags`).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolError(f"{p} does not exist: run `python -m tools.build_push` (make build) first") from None
    except (OSError, ValueError) as exc:
        raise ToolError(f"{p} is not a readable image list ({exc}): run tools.build_push again") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise ToolError(f"{p} has no 'images' object: run tools.build_push again")
    out = {}
    for name, entry in images.items():
        ok = (
            name in IMAGES
            and isinstance(entry, dict)
            and isinstance(entry.get("repository"), str)
            and isinstance(entry.get("tags"), list)
            and entry["tags"]
            and isinstance(entry.get("digest"), str)
            and DIGEST.match(entry["digest"])
        )
        if not ok:
            raise ToolError(f"{p}: entry {name!r} is malformed (needs repository, tags, digest): run build_push again")
        out[name] = {"repository": entry["repository"], "tag": entry["tags"][-1], "digest": entry["digest"]}
    return out
