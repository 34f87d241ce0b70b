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


class Resources:
    """Each kind's plural and scope as the API server's discovery lists them (one GET per group version).

    A hand-kept list of cluster-scoped kinds fell behind the chart (its ValidatingAdmissionPolicy was
    read under a namespace, found "missing", and every deploy upgraded); discovery cannot fall behind,
    and every authenticated identity may read it (the `system:discovery` ClusterRole).
    """

    def __init__(self, api: Any) -> None:
        self.api = api
        self._served: dict[str, dict[str, dict[str, Any]]] = {}

    def path(self, obj: dict[str, Any], namespace: str) -> str | None:
        """The REST path of a rendered object (None: the cluster does not serve its kind)."""
        version, kind = obj["apiVersion"], obj["kind"]
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        if version not in self._served:
            listed = kube_ops.call(self.api, lambda: self.api.get(base), f"discover {version}", missing_ok=True)
            resources = (listed or {}).get("resources") or []
            self._served[version] = {r["kind"]: r for r in resources if "/" not in r["name"]}
        found = self._served[version].get(kind)
        if found is None:
            return None
        where = f"/namespaces/{namespace}" if found.get("namespaced") else ""
        return f"{base}{where}/{found['name']}/{obj['metadata']['name']}"


def live_object(resources: Resources, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    """The live object (None: it does not exist, or the cluster does not serve its kind)."""
    where = resources.path(obj, namespace)
    if where is None:
        return None
    api = resources.api
    return kube_ops.call(api, lambda: api.get(where), f"read {obj['kind']}", missing_ok=True)
