"""Small readers of Kubernetes objects (as JSON dicts) and of error text, shared by the smoke checks."""

import json
import re
from typing import Any

from tools.errors import ToolError


def name(obj: dict[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def colon(text: str | None) -> str:
    return f": {text}" if text else ""


def json_setting(text: str | None, default: Any, name: str) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        raise ToolError(f"{name} in the chart's user-environment ConfigMap is not JSON") from None


def short_error(exc: BaseException) -> str:
    """The innermost useful sentence of a requests/urllib3 error."""
    text = str(exc)
    for pattern in (r"\[SSL: [A-Z_]+\] ([^(]+)", r"Caused by \w+\('?(.+?)'?\)\)?$", r"\] ([^\]]+)$"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip(" '\")")
    return text[:200]
