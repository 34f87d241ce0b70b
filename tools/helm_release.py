"""The release part of a deploy, through pyhelm3: recover a release an interrupted deploy left
pending, install or upgrade, undo a failed upgrade by the one rollback rule (tools/helm.py), and the
dry run's diff against the deployed revision with secret values hidden.

helm_deploy runs it after its preflight and under the release's lock (tools/lease.py); it lives
apart so that the step keeps only its order of work. pyhelm3 is imported lazily: `--help` does not
pay for it.
"""

from __future__ import annotations

import base64
import datetime
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import cli
from tools.errors import ToolError, UsageError
from tools.helm import helm_reason, rollback_refusal, rollback_target
from tools.report import REPORTER
from tools.settings import Settings

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
# Helm 4 applies server-side: a field someone changed by hand (`kubectl scale`) is then owned by another
# field manager, and the repairing upgrade fails with "Apply failed with 1 conflict" unless it forces
# (https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts; `helm upgrade --force-conflicts`)
REPAIR_FLAGS = ["--force-conflicts"]
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def duration_seconds(text: str) -> int:
    """Seconds in a Helm duration (`10m`, `1h30m`, `90s`) or a plain number of seconds."""
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise UsageError(f"--timeout {text!r} is not a duration: use e.g. 10m, 90s or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


# -- release ---------------------------------------------------------------------------------------
@dataclass
class Options:
    """How helm_deploy's flags ask for the release: one value handed to the client and the Deployer."""

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
