"""The fleet at a glance: per target its release, images, pods, endpoints and drift.

    python -m tools.fleet_status --fleet fleet.yaml [--target NAME [--env-file PATH]] [--no-endpoints]

For each target (or the one given): the release's revision, status and age; the application
commit (from out/<target>/images.json when its digests are the live ones) and the live image
digests; pods ready; the public endpoints answering (skipped with --no-endpoints, e.g. a cluster
with no ingress); and drift: live objects that differ from what the toolkit would render now from
the settings and the release's images (tools/drift.py; Secrets by hash, never printed). Under
GitHub Actions a table goes to the job summary (.github/workflows/status.yml runs it per target on a
schedule, with --env-file: the settings of the target's GitHub environment, as its deploys read
them). Exit 1 on drift or an unhealthy target.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools import cli, kube_ops
from tools.chart_values import deploy_values
from tools.cloud import cloud_for
from tools.drift import Resources, drift, live_object
from tools.errors import ToolError
from tools.fleet import Fleet, load_fleet, out_dir
from tools.helm import helm_binary, render
from tools.kube_client import KubeApi, path
from tools.report import REPORTER, markdown_table
from tools.runner import run
from tools.settings import REPO_ROOT, Settings, load_settings
from tools.smoke.endpoints import check_url

IMAGE_VALUES = {"backend": ("backend",), "frontend": ("frontend",), "user-env": ("userEnvironment",)}


@dataclass
class Status:
    target: str
    release: str = "not deployed"
    app: str = "unknown"
    images: str = ""
    pods: str = ""
    endpoints: str = "not checked"
    drift: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.drift


def helm_get(settings: Settings, kubeconfig: str, what: str) -> str:
    command = [helm_binary(), "get", what, settings.release, "-n", settings.namespace, "--kubeconfig", kubeconfig]
    return run([*command, *(["-o", "json"] if what == "values" else [])], what=f"helm get {what}").stdout


def helm_history(settings: Settings, kubeconfig: str) -> list[dict[str, Any]]:
    """The release's revisions, oldest first; none when there is no release."""
    command = [helm_binary(), "history", settings.release, "-n", settings.namespace, "--kubeconfig", kubeconfig]
    proc = run([*command, "--max", "1", "-o", "json"], check=False)
    if proc.returncode != 0:
        if "not found" in (proc.stderr or ""):
            return []
        raise ToolError(f"helm history {settings.release} failed: {(proc.stderr or '').strip()[-300:]}")
    try:
        return sorted(json.loads(proc.stdout or "[]"), key=lambda h: h.get("revision", 0))
    except ValueError:
        raise ToolError("helm history did not answer JSON: check the helm version (3.x or 4.x)") from None


def age(updated: str) -> str:
    """helm history's `updated` (RFC 3339 with fractions) as a rough age."""
    try:
        when = datetime.datetime.fromisoformat(updated.replace("Z", "+00:00"))
    except ValueError:
        return "age unknown"
    seconds = (datetime.datetime.now(datetime.UTC) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def release_images(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The images the release runs, from its values, in build_push's shape."""
    images = {}
    for name, (key,) in IMAGE_VALUES.items():
        image = (values.get(key) or {}).get("image") or {}
        if image.get("repository"):
            images[name] = {k: str(image.get(k) or "") for k in ("repository", "tag", "digest")}
    return images


def app_commit(target: str, images: dict[str, dict[str, str]]) -> str:
    """The application commit of out/<target>/images.json, when those are the images the release runs."""
    path = out_dir(REPO_ROOT, target) / "images.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown (no out/<target>/images.json)"
    listed = {n: str(e.get("digest", "")) for n, e in (data.get("images") or {}).items()}
    if listed != {n: i["digest"] for n, i in images.items()}:
        return "unknown (images.json lists other images)"
    return str(data.get("app_sha") or "not recorded")[:12]


def pods_ready(api: KubeApi, settings: Settings) -> tuple[str, bool]:
    selector = f"app.kubernetes.io/instance={settings.release}"
    pods = api.get(path("pods", settings.namespace), labelSelector=selector).get("items") or []
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") != "Succeeded"]
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    ]
    return f"{len(ready)}/{len(pods)} ready", bool(pods) and len(ready) == len(pods)


def endpoints(settings: Settings) -> tuple[str, bool]:
    """The smoke test's health URLs (tools/smoke/endpoints.py), each asked once with a short deadline."""
    urls = (
        (settings["API_URL"].rstrip("/") + "/health", "healthy"),
        (settings["FRONTEND_URL"].rstrip("/") + "/api/health", None),
    )
    checks = [
        check_url(url, expect_status=want, deadline_at=time.monotonic() + 5, request_timeout=5) for url, want in urls
    ]
    bad = [c for c in checks if c.status != "ok"]
    return ("answering" if not bad else "; ".join(f"{c.name}: {c.detail}" for c in bad)), not bad


def target_status(fleet: Fleet, target: str, check_endpoints: bool, env_file: str | None = None) -> Status:
    status = Status(target)
    settings = load_settings(env_file=env_file) if env_file else fleet.settings(target)
    cloud = cloud_for(settings)
    with cloud.cluster_access() as kubeconfig:
        history = helm_history(settings, kubeconfig)
        if not history:
            status.problems.append(f"release {settings.release} not found in {settings.namespace}")
            return status
        last = history[-1]
        status.release = f"revision {last.get('revision')} {last.get('status')}, {age(str(last.get('updated', '')))}"
        if last.get("status") != "deployed":
            status.problems.append(f"release {settings.release} is {last.get('status')}")
        images = release_images(json.loads(helm_get(settings, kubeconfig, "values") or "{}") or {})
        status.images = ", ".join(f"{n}@{i['digest'][:19]}" for n, i in images.items())
        status.app = app_commit(target, images)
        api = kube_ops.api_client(kubeconfig)
        status.pods, ready = pods_ready(api, settings)
        if not ready:
            status.problems.append(f"pods {status.pods}")
        values = deploy_values(cloud, images)
        resources = Resources(api)
        for obj in (o for o in render(settings.release, settings.namespace, values) if o):
            found = drift(obj, live_object(resources, obj, settings.namespace))
            if found:
                status.drift.append(found)
    if check_endpoints:
        status.endpoints, answering = endpoints(settings)
        if not answering:
            status.problems.append(f"endpoints: {status.endpoints}")
    return status


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], cloud=False, dry_run=False)
    parser.add_argument("--fleet", required=True, metavar="PATH", help="the fleet file (waves and their targets)")
    parser.add_argument("--target", metavar="NAME", help="only this target of the fleet")
    parser.add_argument("--no-endpoints", dest="endpoints", action="store_false", help="do not call the public URLs")
    parser.add_argument("--env-file", metavar="PATH", help="with --target: its settings from this file, not env/")
    args = parser.parse_args(argv)
    if args.env_file and not args.target:
        raise ToolError("--env-file is one target's settings: give --target NAME with it", 2)
    fleet = load_fleet(args.fleet)
    if args.target and args.target not in fleet.targets:
        raise ToolError(f"--target {args.target}: not in {args.fleet}: use one of {', '.join(fleet.targets)}", 2)
    statuses = []
    for target in [args.target] if args.target else fleet.targets:
        start = time.monotonic()
        try:
            status = target_status(fleet, target, args.endpoints, args.env_file)
        except ToolError as exc:
            status = Status(target, problems=[str(exc)])
        statuses.append(status)
        detail = (
            f"{status.release}; app {status.app}; {status.images}; pods {status.pods}; endpoints {status.endpoints}"
        )
        verdict = "healthy" if status.healthy else "unhealthy" if status.problems else "drifted"
        REPORTER.line(
            "ok" if status.healthy else "error", f"target {target}: {verdict}: {detail}", time.monotonic() - start
        )
        for line in status.problems:
            REPORTER.line("error", f"target {target}: {line}")
        for line in status.drift:
            REPORTER.line("error", f"target {target}: drift: {line}")
    rows = [
        (f"`{s.target}`", s.release, s.app, s.images, s.pods, s.endpoints, "; ".join(s.drift) or "none")
        for s in statuses
    ]
    REPORTER.summary(
        "### Fleet status\n\n"
        + markdown_table(["target", "release", "app", "images", "pods", "endpoints", "drift"], rows)
    )
    bad = [s.target for s in statuses if not s.healthy]
    if bad:
        REPORTER.error(f"{len(bad)} target(s) drifted or unhealthy: {', '.join(bad)}")
        return 1
    REPORTER.ok(f"{len(statuses)} target(s) healthy, no drift")
    return 0


if __name__ == "__main__":
    sys.exit(main())
