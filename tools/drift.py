"""Drift: where a live object differs from what the toolkit would render now.

Only the fields the render sets are compared (the API server adds defaults and status, which are
not drift). A Secret's data is compared by hash and never shown. One finding per object, naming
its first differing field.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tools import kube_ops

# Kubernetes stores resource quantities in canonical form (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/):
# the render's "0.5" comes back as "500m", so quantities are compared by value.
_SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(value: Any) -> float | None:
    text = str(value)
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], _SUFFIX[suffix]
            break
    else:
        number, factor = text, 1
    try:
        return float(number) * factor
    except ValueError:
        return None


def _same_scalar(want: Any, live: Any) -> bool:
    if want == live or str(want) == str(live):
        return True
    a, b = _quantity(want), _quantity(live)
    return a is not None and a == b


def first_difference(want: Any, live: Any, path: str = "") -> str | None:
    """The path of the first field `want` sets that `live` does not hold (None: no drift)."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return path or "."
        for key, value in want.items():
            found = first_difference(value, live.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(live, list) or len(want) != len(live):
            return path
        for index, (a, b) in enumerate(zip(want, live, strict=True)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return None
    if want is None or want == {} or want == []:
        return None  # an empty field the API server drops
    return None if _same_scalar(want, live) else path


def secret_hash(obj: dict[str, Any]) -> str:
    """A Secret's content as one hash: data (base64) and stringData (plain) decoded alike."""
    values = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    values |= {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
    digest = hashlib.sha256()
    for key in sorted(values):
        digest.update(key.encode() + b"\0" + hashlib.sha256(values[key]).digest())
    return digest.hexdigest()


def drift(rendered: dict[str, Any], live: dict[str, Any] | None) -> str | None:
    """One line naming what differs, or None. Never a Secret's value."""
    kind, name = rendered.get("kind", "?"), (rendered.get("metadata") or {}).get("name", "?")
    if live is None:
        return f"{kind} {name}: missing"
    if kind == "Secret":
        if secret_hash(rendered) != secret_hash(live):
            return f"{kind} {name}: data differs (compared by hash)"
        rendered = {k: v for k, v in rendered.items() if k not in ("data", "stringData")}
    field = first_difference({k: v for k, v in rendered.items() if k != "status"}, live)
    if field is None:
        return None
    return f"{kind} {name}: {field} differs"


# Kinds the chart may render that live outside a namespace
CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding", "ClusterIssuer", "IngressClass", "StorageClass", "Namespace"}


def object_path(obj: dict[str, Any], namespace: str) -> str:
    """The REST path of a rendered object (plural as the API server names the chart's kinds)."""
    version, kind = obj["apiVersion"], obj["kind"]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    lower = kind.lower()
    plural = lower[:-1] + "ies" if lower.endswith("y") else lower + ("es" if lower.endswith("s") else "s")
    where = "" if kind in CLUSTER_KINDS else f"/namespaces/{namespace}"
    return f"{prefix}{where}/{plural}/{obj['metadata']['name']}"


def live_object(api: Any, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    return kube_ops.call(api, lambda: api.get(object_path(obj, namespace)), f"read {obj['kind']}", missing_ok=True)
