"""Preflight, database bucket, then install or upgrade the release with the images pinned by digest.

Before anything changes: the security rules, the images file and every image's digest in the
registry, the credentials' rights in the namespace, that each image has a variant for every CPU
architecture the nodes run (`--no-platform-check` skips it), the Secrets from make_secrets, the
cluster's prerequisites (CSI driver, ingress class, the database's StorageClass; on AWS the
IRSA trust policies), and that no older chart's database file waits on the bucket unmigrated. Each
missing prerequisite is one line, and the deploy stops before touching the release.
Then the database bucket (created private and encrypted, never deleted or emptied); then, holding
the release's lock (tools/lease.py: one writer per release; a second deploy waits), a release left
pending by an interrupted deploy is rolled back to its last deployed revision, and the release is
installed or upgraded through pyhelm3, unless nothing would change: when the deployed revision equals
the new render and values and no live object drifted (tools/unchanged.py), no revision is made and
the output `revision` is `none`; drifted objects are named and the upgrade repairs them. A failed
upgrade is rolled back to the last deployed revision (only when the failed revision is the one this
run made) and the tool exits 1 with the reason.
SIGTERM/SIGINT stop helm, release the lock and say what the next run does (exit 143/130).
`--dry-run` shows the difference to the deployed release (secret values hidden) and changes nothing.

Helm flags a cluster needs (e.g. `--helm-flag=--skip-schema-validation`) go to every
install/upgrade. Exit 0 ok, 1 failure, 2 usage.
"""

from __future__ import annotations

import base64
import datetime
import difflib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import cli, lease
from tools.auth.preflight import check as auth_preflight
from tools.chart_values import deploy_values, merge
from tools.errors import ToolError, UsageError
from tools.helm import helm_reason, rollback_refusal, rollback_target
from tools.images import DEFAULT_OUTPUT, load_images
from tools.report import REPORTER, markdown_table
from tools.settings import IMAGES, REPO_ROOT, Settings

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
# Helm 4 applies server-side: a field someone changed by hand (`kubectl scale`) is then owned by another
# field manager, and the repairing upgrade fails with "Apply failed with 1 conflict" unless it forces
# (https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts; `helm upgrade --force-conflicts`)
REPAIR_FLAGS = ["--force-conflicts"]
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


# -- inputs ------------------------------------------------------------------------------------
def duration_seconds(text: str) -> int:
    """Seconds in a Helm duration (`10m`, `1h30m`, `90s`) or a plain number of seconds."""
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise UsageError(f"--timeout {text!r} is not a duration: use e.g. 10m, 90s or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def every_image(path: Path) -> dict[str, dict[str, str]]:
    """build_push's output as chart image values, {name: {repository, tag, digest}}, for every image."""
    images = load_images(path)
    missing = [name for name in IMAGES if name not in images]
    if missing:
        raise ToolError(f"images file {path} has no {', '.join(missing)}: run build_push for every image")
    return images


def load_values(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    if os.path.isdir(path):
        raise UsageError(f"--values {path} is a directory: give a YAML file of chart values")
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise UsageError(f"--values {path}: {exc.strerror}: give a readable YAML file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--values {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UsageError(f"--values {path} must be a YAML mapping of chart values (like --set a.b=c)")
    return values


# -- registry ------------------------------------------------------------------------------------
def missing_images(images: dict[str, dict[str, str]], cloud: Any) -> list[str]:
    """Images whose digest their registry does not have (HEAD of the manifest by digest)."""
    from tools.registry import image_registries

    missing = []
    with image_registries(cloud) as registry_for:
        for name, image in images.items():
            if registry_for(image["repository"]).digest(image["repository"], image["digest"]) is None:
                reference = f"{image['repository']}@{image['digest']}"
                missing.append(f"image {name} {reference} is not in the registry: run build_push (make build)")
    return missing


# -- helm ----------------------------------------------------------------------------------------
@dataclass
class Options:
    chart: Path
    timeout: str
    wait: bool
    dry_run: bool
    helm_flags: list[str] = field(default_factory=list)
    repair: bool = False  # live objects drifted: the upgrade takes their fields back (tools/unchanged.py)


def helm_client(kubeconfig: str, options: Options) -> Any:
    """pyhelm3 on our helm, with `options.helm_flags` added to every `helm upgrade --install`."""
    import logging

    from tools.helm import client, command_class, helm_binary

    # pyhelm3 logs every failed helm command (e.g. `status` of a release not yet installed);
    # what matters is reported by this tool, once.
    logging.getLogger("pyhelm3").addHandler(logging.NullHandler())
    logging.getLogger("pyhelm3").propagate = False
    flags = list(options.helm_flags)

    class FlagsCommand(command_class()):  # type: ignore[misc]
        async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
            if command[:1] == ["upgrade"]:
                repair = REPAIR_FLAGS if options.repair and self.client_version().major >= 4 else []
                command = [*command, *flags, *repair]
            return await super().run(command, input)

    return client(
        command=FlagsCommand(executable=helm_binary(), kubeconfig=Path(kubeconfig), default_timeout=options.timeout)
    )


def last_deployed(history: list[Any], current: int | None) -> Any | None:
    """The pyhelm3 revision to go back to from `current`, by the one rule (tools/helm.py rollback_target)."""
    target = rollback_target(((r.revision, r.status.value) for r in history), current)
    return next((r for r in history if r.revision == target), None)


class Deployer:
    """The release part of a deploy, on one pyhelm3 client. Every method is a step the report shows."""

    def __init__(self, helm: Any, settings: Settings, options: Options, lock: Any = None) -> None:
        self.helm, self.options, self.lock = helm, options, lock  # lock: the held ReleaseLock (None: dry run)
        self.name, self.namespace = settings.release, settings.namespace

    def writing(self, revision: int, where: str, then: str) -> Any:
        """Tell the lock which revision comes next, and name this stage for a stop's line."""
        if self.lock is not None:
            self.lock.writing(revision)
        return cli.stage(where, then)

    async def current(self) -> tuple[Any | None, list[Any]]:
        """The current revision (None: no release) and the whole history, oldest first."""
        from pyhelm3 import errors

        try:
            current = await self.helm.get_current_revision(self.name, namespace=self.namespace)
        except errors.ReleaseNotFoundError:
            return None, []
        return current, sorted(await current.release.history(), key=lambda r: r.revision)

    async def recover(self, current: Any, history: list[Any]) -> None:
        """A release left pending by an interrupted deploy: roll back to the last deployed revision."""
        status, revision = current.status.value, current.revision
        if self.lock is not None and self.lock.last_revision == revision:
            # The toolkit run that made it recorded it in the lock, which we now hold: its writer is gone.
            gone = self.lock.previous_holder or "a toolkit run that released the lock"
            REPORTER.info(
                f"release {self.name} revision {revision} is {status}: made by {gone}, which no longer holds the "
                "release's lock: recovering it now"
            )
        else:
            # A writer that takes no lock (helm by hand, an older toolkit): only its age tells it is dead.
            age = (datetime.datetime.now(datetime.UTC) - current.updated).total_seconds()
            limit = duration_seconds(self.options.timeout)
            if age < limit:
                raise ToolError(
                    f"release {self.name} revision {revision} is {status} since {age:.0f}s, made outside the toolkit "
                    f"(no lock names it): another deploy may still be running: wait for it, or if it was "
                    f"interrupted run again in {limit - age:.0f}s (--timeout {limit}s)"
                )
        target = last_deployed(history, revision)
        what = f"release {self.name} was left {status} at revision {revision} by an interrupted deploy"
        if target is None:
            if self.options.dry_run:
                REPORTER.warning(f"{what}: would remove it (nothing was ever deployed) and install again")
                return
            with (
                cli.stage(f"while removing release {self.name}", "the next run removes it again and installs"),
                REPORTER.action(f"{what}: removing it (nothing was ever deployed)"),
            ):
                await self.helm.uninstall_release(self.name, namespace=self.namespace, timeout=self.options.timeout)
            return
        if self.options.dry_run:
            REPORTER.warning(f"{what}: would roll back to revision {target.revision}, the last deployed one")
            return
        where = f"while rolling release {self.name} back to revision {target.revision}"
        with (
            self.writing(revision + 1, where, "the next run recovers the unfinished rollback at once and deploys"),
            REPORTER.action(f"{what}: rolled back to revision {target.revision}, the last deployed one"),
        ):
            await current.release.rollback(target.revision, timeout=self.options.timeout, wait=False)

    async def upgrade(self, chart: Any, values: dict[str, Any], before: int) -> Any:
        """Install or upgrade; on failure roll back (or remove a failed first install) and raise with the reason."""
        from pyhelm3 import errors

        verb = "upgrade" if before else "install"
        where = f"during helm {verb} of release {self.name} to revision {before + 1}"
        then = f"helm was stopped; the next run recovers revision {before + 1} at once and deploys again"
        try:
            with (
                self.writing(before + 1, where, then),
                REPORTER.action(f"helm {verb} {self.name} in {self.namespace}") as action,
            ):
                revision = await self.helm.install_or_upgrade_release(
                    self.name,
                    chart,
                    values,
                    namespace=self.namespace,
                    create_namespace=False,
                    wait=self.options.wait,
                    timeout=self.options.timeout,
                )
                action.set("ok", f"revision {revision.revision} {revision.status.value}")
            return revision
        except errors.Error as exc:
            reason = helm_reason(exc)
        current, history = await self.current()
        if current is None or current.revision <= before:
            raise ToolError(f"helm {verb} failed before changing the release: {reason}")
        refusal = rollback_refusal(self.name, before + 1, (current.revision, current.status.value), made=True)
        if refusal:
            raise ToolError(f"helm {verb} failed: {reason}; {refusal}")
        target = last_deployed(history, current.revision)
        then = "the next run recovers the unfinished undo at once and deploys again"
        try:
            if target is None:
                with cli.stage(f"while removing the failed release {self.name}", then):
                    await self.helm.uninstall_release(self.name, namespace=self.namespace, timeout=self.options.timeout)
                undo = "the failed release was removed (nothing had been deployed before)"
            else:
                where = f"while rolling release {self.name} back to revision {target.revision}"
                with self.writing(current.revision + 1, where, then):
                    await current.release.rollback(target.revision, timeout=self.options.timeout, wait=False)
                undo = f"rolled back to revision {target.revision}"
        except errors.Error as exc:
            back = f"helm rollback {self.name} {target.revision}" if target else f"helm uninstall {self.name}"
            raise ToolError(
                f"helm {verb} to revision {current.revision} failed: {reason}; undoing it failed too: "
                f"{helm_reason(exc)}: run `{back} -n {self.namespace}`"
            ) from None
        raise ToolError(f"helm {verb} to revision {current.revision} failed: {reason}; {undo}")

    async def run(self, values: dict[str, Any], rendered: list[dict[str, Any]]) -> Any:
        chart = await self.helm.get_chart(self.options.chart)
        current, history = await self.current()
        if current is not None and current.status.value in PENDING:
            await self.recover(current, history)
            current, history = await self.current()
        if self.options.dry_run:
            base = last_deployed(history, None)
            live = list(await base.resources()) if base is not None else []
            show_diff(live, rendered, self.namespace, f"revision {base.revision}" if base else "no release")
            return None
        return await self.upgrade(chart, values, current.revision if current else 0)


# -- diff ----------------------------------------------------------------------------------------
def _key(obj: dict[str, Any], namespace: str) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind", "?"), meta.get("namespace") or namespace, meta.get("name", "?")


def _hide_secret_values(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Replace each value of a Secret's data/stringData by a marker that says only whether it changed."""
    for section in ("data", "stringData"):
        before = dict(((old or {}).get(section) or {}) if (old or {}).get("kind") == "Secret" else {})
        after = dict(((new or {}).get(section) or {}) if (new or {}).get("kind") == "Secret" else {})
        for values in (before, after):
            REPORTER.register_secrets(str(v) for v in values.values())
            if section == "data":
                REPORTER.register_secrets(_decoded(v) for v in values.values())
        if before:
            old[section] = dict.fromkeys(before, "(hidden)")  # type: ignore[index]
        if after:
            new[section] = {k: "(hidden)" if before.get(k) == v else "(hidden, changed)" for k, v in after.items()}  # type: ignore[index]


def _decoded(value: Any) -> str:
    try:
        return base64.b64decode(str(value)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""


def show_diff(live: list[dict[str, Any]], rendered: list[dict[str, Any]], namespace: str, base: str) -> None:
    """Print added, changed and removed objects of the new render against the deployed manifest."""
    import copy

    import yaml

    old = {_key(o, namespace): copy.deepcopy(o) for o in live if o}
    new = {_key(o, namespace): copy.deepcopy(o) for o in rendered if o}
    for key in old.keys() | new.keys():
        _hide_secret_values(old.get(key), new.get(key))
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = [key for key in sorted(old.keys() & new.keys()) if old[key] != new[key]]
    REPORTER.info(
        f"dry run against {base}: {len(added)} added, {len(changed)} changed, {len(removed)} removed, "
        f"{len(new) - len(added) - len(changed)} unchanged"
    )
    for sign, keys in (("+", added), ("-", removed)):
        for kind, ns, name in keys:
            REPORTER.info(f"{sign} {kind} {ns}/{name}")
    for key in changed:
        kind, ns, name = key
        REPORTER.info(f"~ {kind} {ns}/{name}")
        before = yaml.safe_dump(old[key], sort_keys=True).splitlines()
        after = yaml.safe_dump(new[key], sort_keys=True).splitlines()
        for line in list(difflib.unified_diff(before, after, "deployed", "new", n=2, lineterm=""))[2:]:
            REPORTER.info(f"    {line}")


# -- preflight -----------------------------------------------------------------------------------
def preflight(cloud: Any, api: Any, settings: Settings, rendered: list[dict[str, Any]]) -> list[str]:
    """Everything the deploy needs from the cluster and the account, as one line per missing piece.

    What a namespace-scoped identity may not read (cluster-scoped objects) is a warning, not a
    refusal: such an identity deploys the chart fine when a cluster admin set the cluster up.
    """
    from tools import database, kube_ops
    from tools.cloud import BACKEND_SECRET, FRONTEND_SECRET
    from tools.escalation import escalation_problems
    from tools.kube_rights import deploy_rights

    namespace = settings.namespace
    rights = deploy_rights(rendered)
    refused = kube_ops.denied(api, namespace, rights)
    if refused:  # nothing else matters until this is fixed
        extra = ", plus a ClusterRole for the cluster-scoped kinds" if any(r.cluster_scoped for r in rights) else ""
        raise ToolError(
            f"these credentials may not {', '.join(refused)} in namespace {namespace}: ask a cluster admin to "
            f"grant what `make rbac CLOUD={settings.cloud}` prints (`admin` in the namespace{extra})"
            + cloud.access_hint(namespace)
        )
    problems = escalation_problems(api, namespace, rendered, cloud.access_hint(namespace))
    for secret in (BACKEND_SECRET, FRONTEND_SECRET):
        if kube_ops.read_secret(api, namespace, secret) is None:
            problems.append(f"Secret {namespace}/{secret} does not exist: run make_secrets first (make secrets)")
    missing, unchecked = cloud.prerequisites(api)
    for line in unchecked:
        REPORTER.warning(line, title="helm_deploy preflight")
    legacy = database.legacy_problem(database.backup_state(cloud), settings.cloud)
    return problems + missing + ([legacy] if legacy else []) + auth_preflight(settings)


# -- main ----------------------------------------------------------------------------------------
@cli.main_boundary
@cli.stage("before changing the release", "the release was not changed: run it again")
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--images", default=DEFAULT_OUTPUT, metavar="PATH", help="build_push's output")
    parser.add_argument(
        "--revision-file",
        metavar="PATH",
        help="also write the `revision` output (N, or none) there: `make deploy` hands it to smoke",
    )
    parser.add_argument("--values", metavar="FILE", help="YAML chart values over the computed ones (like --set)")
    parser.add_argument("--chart", default=str(REPO_ROOT / "helm"), metavar="DIR", help="the chart (default: helm/)")
    parser.add_argument("--timeout", default="10m", help="helm's --timeout for the upgrade and rollbacks (10m)")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="do not wait for the workloads to become ready (smoke_test checks the rollout)",
    )
    lease.add_arguments(parser)
    parser.add_argument(
        "--helm-flag",
        dest="helm_flags",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for helm upgrade/install, repeatable: --helm-flag=--skip-schema-validation",
    )
    parser.add_argument(
        "--no-platform-check",
        dest="platform_check",
        action="store_false",
        help="deploy even when an image has no variant for a CPU architecture of the nodes (smoke_test will tell)",
    )
    args = parser.parse_args(argv)
    duration_seconds(args.timeout)  # every argument is checked before the first network call
    overrides = load_values(args.values)
    if not (Path(args.chart) / "Chart.yaml").is_file():
        raise UsageError(f"--chart {args.chart} has no Chart.yaml: give the chart's folder (default helm/)")
    options = Options(Path(args.chart), args.timeout, args.wait, args.dry_run, args.helm_flags)
    settings = cli.settings_from(args)
    from tools.config_rules import require_valid

    require_valid(settings, "helm_deploy")
    from tools import kube_ops
    from tools.cloud import cloud_for
    from tools.helm import render
    from tools.unchanged import unchanged_revision

    cloud = cloud_for(settings)
    images = every_image(Path(args.images))
    missing = missing_images(images, cloud)
    if missing:
        for line in missing:
            REPORTER.error(line, title="helm_deploy")
        raise ToolError(f"{len(missing)} image(s) not deployable: nothing was changed")
    values = merge(deploy_values(cloud, images), overrides)
    rendered = [o for o in render(settings.release, settings.namespace, values, options.chart) if o]
    with cloud.cluster_access() as kubeconfig:
        api = kube_ops.api_client(kubeconfig)
        with REPORTER.action(f"preflight of {settings.cloud} cluster, namespace {settings.namespace}") as action:
            problems = preflight(cloud, api, settings, rendered)
            if args.platform_check:
                from tools.node_platforms import platform_problems

                problems += platform_problems(images, cloud, api)
            else:
                REPORTER.warning("--no-platform-check: the images' CPU platforms were not compared with the nodes'")
            action.set("ok" if not problems else "warn", f"{len(problems)} missing" if problems else "")
        if problems:
            for line in problems:
                REPORTER.error(line, title="helm_deploy preflight")
            raise ToolError(f"{len(problems)} prerequisite(s) missing: nothing was changed")
        with REPORTER.action("database bucket") as action:
            action.set("ok", cloud.ensure_database_bucket(dry_run=args.dry_run))
        if args.dry_run:
            revision = _run(Deployer(helm_client(kubeconfig, options), settings, options).run(values, rendered))
        else:
            lock = lease.ReleaseLock(
                api,
                settings.namespace,
                settings.release,
                "helm_deploy",
                wait=args.lock_wait,
                duration=args.lock_duration,
            )
            with lock:
                same, options.repair = unchanged_revision(api, settings, values, rendered, options.chart)
                if same is not None:
                    hand_on(args.revision_file, "none")
                    return unchanged_report(settings, same, images)
                revision = _run(
                    Deployer(helm_client(kubeconfig, options), settings, options, lock).run(values, rendered)
                )
    if revision is None:
        hand_on(args.revision_file, "none")
        REPORTER.info("dry run: nothing was changed")
        return 0
    rows = [(name, f"{image['repository']}@{image['digest']}") for name, image in images.items()]
    REPORTER.summary(
        f"### helm_deploy\nRelease `{settings.release}` in `{settings.namespace}`: revision {revision.revision} "
        f"{revision.status.value}\n\n" + markdown_table(["Image", "Reference"], rows)
    )
    REPORTER.output("revision", str(revision.revision))
    hand_on(args.revision_file, str(revision.revision))
    REPORTER.ok(f"release {settings.release} revision {revision.revision} {revision.status.value}")
    return 0


def hand_on(path: str | None, revision: str) -> None:
    """The revision this run made (or none) for smoke's rollback rule, where `make deploy` reads it: under
    GitHub Actions the step output carries it; a make chain has no outputs between its steps."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(revision + "\n")


def unchanged_report(settings: Settings, revision: int, images: dict[str, dict[str, str]]) -> int:
    """No new revision: the job summary says so, and the step output `revision` is `none` (smoke rolls nothing back)."""
    rows = [(name, f"{image['repository']}@{image['digest']}") for name, image in images.items()]
    REPORTER.summary(
        f"### helm_deploy\nRelease `{settings.release}` in `{settings.namespace}`: unchanged at revision {revision}, "
        "no new revision\n\n" + markdown_table(["Image", "Reference"], rows)
    )
    REPORTER.output("revision", "none")
    return 0


def _run(coroutine: Any) -> Any:
    """Run the release steps; a helm error that escaped the steps' own handling is still one line."""
    from tools.helm import run_async

    return run_async(coroutine)


if __name__ == "__main__":
    sys.exit(main())
