"""Small readers of Kubernetes objects (as JSON dicts) and of error text, shared by the smoke checks."""

import json
import re
from typing import Any

from tools.errors import ToolError

COMPONENT_LABEL = "app.kubernetes.io/component"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


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


def event_time(event: dict[str, Any]) -> str:
    """When an Event (core/v1 or events.k8s.io shape) last happened, as an RFC 3339 stamp ('' when unknown)."""
    return (
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
