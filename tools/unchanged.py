"""Is a deploy a no-op? The deployed revision against the new render, and the live objects against both.

Helm makes a new revision on every upgrade, even of an identical release (and with it a Secret,
a rollout check and, under --wait, a wait). helm_deploy asks this module first: when the deployed
revision's manifest, values and chart equal the new render and every live object still holds what
the render sets, there is nothing to upgrade. When a live object drifted (someone scaled or edited
a Deployment, deleted a ConfigMap) the upgrade repairs it, and the drifted objects are named.

The deployed revision is read from Helm's own release record, one list request for the release's
records (Secrets, or ConfigMaps with HELM_DRIVER=configmap) decoded in-process: about 0.02 s, where
`helm history` plus `helm get manifest` and `helm get values` are three helm processes of about
0.1-0.15 s each. Another driver (sql, memory) is not read here: `unchanged_revision` says so and the
deploy upgrades as before.

Live objects are compared field by field on the fields the render sets (tools/drift.py, the rule
fleet_status uses too), not by a server-side-apply dry run: the render holds no server defaults,
so a subset compare needs only reads (one GET per object, which the deploy identity may always do),
where a dry-run apply is one write request per object, needs the apply rights and, under Helm 3's
client-side apply, reports the field managers' ownership rather than the values.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools import kube_ops
from tools.drift import Resources, drift, live_object
from tools.helm import parse_manifests
from tools.kube_client import path
from tools.report import REPORTER
from tools.settings import Settings

# Helm keeps each revision as a record labelled owner=helm, name=RELEASE, status, version; its `release`
# field is the release as JSON, gzipped, base64-encoded (https://github.com/helm/helm/blob/main/pkg/storage/driver/util.go)
DRIVERS = {
    "": "secrets",
    "secret": "secrets",
    "secrets": "secrets",
    "configmap": "configmaps",
    "configmaps": "configmaps",
}
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Deployed:
    """The current revision of a release as Helm stored it."""

    revision: int
    status: str
    manifest: list[dict[str, Any]]
    values: dict[str, Any]
    chart: tuple[str, str]  # (name, version)


def storage() -> str | None:
    """The kind of object Helm keeps its release records in (None: a driver this module cannot read)."""
    return DRIVERS.get(os.environ.get("HELM_DRIVER", "secret").lower())


def decode(record: dict[str, Any], resource: str) -> dict[str, Any]:
    """A release record's `release` field as the release (a Secret's data is base64 once more)."""
    raw = ((record.get("data") or {}).get("release") or "").encode()
    if resource == "secrets":
        raw = base64.b64decode(raw)
    data = base64.b64decode(raw)
    return json.loads(gzip.decompress(data) if data[:2] == GZIP_MAGIC else data)  # type: ignore[no-any-return]


def read_deployed(api: Any, namespace: str, release: str) -> Deployed | None:
    """The release's newest revision from its records (None: no release, or records this module cannot read)."""
    resource = storage()
    if resource is None:
        return None
    answer = kube_ops.call(
        api,
        lambda: api.get(path(resource, namespace), labelSelector=f"owner=helm,name={release}"),
        f"read the release records of {release}",
    )
    records = (answer or {}).get("items") or []
    if not records:
        return None
    newest = max(records, key=lambda r: int(r["metadata"]["labels"].get("version", 0)))
    data = decode(newest, resource)
    meta = (data.get("chart") or {}).get("metadata") or {}
    return Deployed(
        revision=int(data.get("version", 0)),
        status=str((data.get("info") or {}).get("status", "")),
        manifest=parse_manifests(data.get("manifest") or ""),
        values=data.get("config") or {},
        chart=(str(meta.get("name", "")), str(meta.get("version", ""))),
    )


def _key(obj: dict[str, Any], namespace: str) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace") or namespace), str(meta.get("name"))


def release_change(
    deployed: Deployed, rendered: list[dict[str, Any]], values: dict[str, Any], chart: tuple[str, str], namespace: str
) -> str | None:
    """What differs between the deployed revision and the new release (None: the same release).

    The images are pinned by digest in both the values and the manifest, so a new digest is a change.
    """
    if deployed.status != "deployed":
        return f"revision {deployed.revision} is {deployed.status}"
    if deployed.chart != chart:
        return f"chart {deployed.chart[0]} {deployed.chart[1]} -> {chart[1]}"
    if deployed.values != json.loads(json.dumps(values)):  # as Helm keeps them: JSON
        return "the values differ"
    old = {_key(o, namespace): o for o in deployed.manifest}
    new = {_key(o, namespace): o for o in rendered}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(f"{kind} {name}" for kind, _, name in changed[:3])
        return f"{len(changed)} object(s) differ ({shown}{', ...' if len(changed) > 3 else ''})"
    return None


def drifted(api: Any, rendered: list[dict[str, Any]], namespace: str) -> list[str]:
    """One line per live object that no longer holds what the render sets (Secrets by hash, never shown)."""
    resources = Resources(api)
    found = (drift(obj, live_object(resources, obj, namespace)) for obj in rendered)
    return [line for line in found if line]


def unchanged_revision(
    api: Any, settings: Settings, values: dict[str, Any], rendered: list[dict[str, Any]], chart: Path
) -> tuple[int | None, bool]:
    """(the deployed revision when this deploy would change nothing, else None; whether live objects drifted).

    One line says which: unchanged, changed (and what), or drifted (each drifted object named on a
    line of its own); the caller upgrades unless a revision is returned, and repairs when drifted.
    """
    name, namespace = settings.release, settings.namespace
    meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8")) or {}
    with REPORTER.action(f"release {name}") as action:
        if storage() is None:
            action.set("ok", f"HELM_DRIVER={os.environ.get('HELM_DRIVER')}: its records are not compared here")
            return None, False
        deployed = read_deployed(api, namespace, name)
        if deployed is None:
            action.set("ok", "not installed yet")
            return None, False
        chart_id = (str(meta.get("name", "")), str(meta.get("version", "")))
        change = release_change(deployed, rendered, values, chart_id, namespace)
        if change:
            action.set("ok", f"changed since revision {deployed.revision}: {change}")
            return None, False
        drift = drifted(api, rendered, namespace)
        if drift:
            for line in drift:
                REPORTER.warning(f"drift from revision {deployed.revision}: {line}", title="helm_deploy")
            action.set(
                "warn", f"{len(drift)} live object(s) drifted from revision {deployed.revision}: upgrading to repair"
            )
            return None, True
        action.set("ok", f"unchanged (revision {deployed.revision}), nothing to upgrade")
        return deployed.revision, False
