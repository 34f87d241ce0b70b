"""One writer per release: a `coordination.k8s.io` Lease in the release's namespace, held while a step writes.

Two operators (or a laptop and a CI job) deploying one release at once would otherwise undo each
other. The Lease names its holder (step, user@host or GitHub run, pid) and when it was taken; the
holder renews it every third of its duration from a thread and clears it on exit. A holder that
died (SIGKILL, a lost runner) stops renewing, so its Lease expires on its own and the next comer
takes it over with a line saying so. A second comer waits with progress lines naming the holder,
up to `--lock-wait` seconds (0: fail at once).

The Lease also keeps, after its holder left, the revision the last toolkit writer was making
(`writing()`): a release left pending at exactly that revision was an interrupted toolkit run,
which the next holder may recover at once.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import os
import socket
import threading
import time
from typing import Any

from tools.errors import ToolError
from tools.kube_client import ApiError, KubeApi, Unreachable, path
from tools.kube_ops import call, describe
from tools.report import REPORTER

REVISION_ANNOTATION = "cmbcluster.io/writing-revision"
DEFAULT_WAIT = 600.0
DEFAULT_DURATION = 30
PROGRESS_EVERY = 15.0
POLL = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The lock flags of every step that changes a release."""
    parser.add_argument(
        "--lock-wait",
        type=_seconds,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"wait this long for another writer of the release to finish (0: fail at once; {DEFAULT_WAIT:.0f})",
    )
    parser.add_argument(
        "--lock-duration",
        type=_duration,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"the lock expires this long after its holder stopped renewing it, e.g. was killed ({DEFAULT_DURATION})",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 86400 * 7:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: give 0 to 604800 seconds")
    return value


def _duration(text: str) -> float:
    value = _seconds(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is too short: the lock lives at least 1 second")
    return value


def lease_name(release: str) -> str:
    return f"{release}-writer"


def identity(step: str) -> str:
    """Who holds the lock: the step and the GitHub run, or user@host; and the pid."""
    if os.environ.get("GITHUB_RUN_ID"):
        where = (
            f"GitHub run {os.environ.get('GITHUB_REPOSITORY', '?')}#{os.environ['GITHUB_RUN_ID']}"
            f"/{os.environ.get('GITHUB_RUN_ATTEMPT', '1')} job {os.environ.get('GITHUB_JOB', '?')}"
        )
    else:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        where = f"{user}@{socket.gethostname()}"
    return f"{step} by {where} pid {os.getpid()}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(moment: datetime.datetime) -> str:
    """A MicroTime as the API server wants it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class ReleaseLock:
    """Hold the release's Lease for a `with` block (or fail with one line saying who holds it)."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        release: str,
        step: str,
        *,
        wait: float = DEFAULT_WAIT,
        duration: float = DEFAULT_DURATION,
    ) -> None:
        self.api, self.namespace, self.release_name = api, namespace, release
        self.name = lease_name(release)
        self.me = identity(step)
        self.wait, self.duration = wait, max(1, round(duration))
        self.last_revision: int | None = None  # what the previous toolkit writer was making (annotation)
        self.previous_holder = ""  # who held it before us, when they died holding it
        self._resource_version = ""
        self._held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one request at a time on the Lease: renewals vs writing()
        self.lost = ""

    # -- API ---------------------------------------------------------------------------------
    def _path(self, named: bool = True) -> str:
        return path("leases", self.namespace, self.name if named else None)

    def _read(self) -> dict[str, Any] | None:
        return call(self.api, lambda: self.api.get(self._path()), f"read Lease {self.namespace}/{self.name}", True)

    def _spec(self, acquired: datetime.datetime) -> dict[str, Any]:
        now = _micro(_now())
        return {
            "holderIdentity": self.me,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _micro(acquired),
            "renewTime": now,
        }

    def _write(self, body: dict[str, Any], create: bool) -> dict[str, Any] | None:
        """Create or patch (with resourceVersion: someone else's change in between is a 409). None: lost the race."""
        try:
            if create:
                return self.api.create(self._path(False), body)  # type: ignore[no-any-return]
            return self.api.patch(self._path(), body)  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.status == 409 or (exc.status == 404 and not create):  # changed or deleted in between
                return None
            raise ToolError(f"Lease {self.namespace}/{self.name}: {describe(exc)}") from None
        except Unreachable as exc:
            raise ToolError(f"Lease {self.namespace}/{self.name}: cannot reach the Kubernetes API: {exc}") from None

    # -- acquire -----------------------------------------------------------------------------
    def acquire(self) -> None:
        start = time.monotonic()
        seen: tuple[str, str] | None = None  # (holder, renewTime) and when we first saw it unchanged
        seen_at = start
        told = -PROGRESS_EVERY
        waited_for = ""
        while True:
            lease = self._read()
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "labels": {"app.kubernetes.io/managed-by": "cmbcluster-deploy"}},
                    "spec": self._spec(_now()),
                }
                if self._taken(self._write(body, create=True)):
                    break
                continue
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            renewed = spec.get("renewTime") or ""
            if (holder, renewed) != seen:
                seen, seen_at = (holder, renewed), time.monotonic()
            expired = self._expired(spec, time.monotonic() - seen_at)
            if not holder or holder == self.me or expired:
                annotations = (lease.get("metadata") or {}).get("annotations") or {}
                body = {
                    "metadata": _version((lease.get("metadata") or {}).get("resourceVersion")),
                    "spec": self._spec(_now()),
                }
                if self._taken(self._write(body, create=False)):
                    self.last_revision = _int(annotations.get(REVISION_ANNOTATION))
                    if holder and expired and holder != self.me:
                        self.previous_holder = holder
                        REPORTER.warning(
                            f"the lock of release {self.release_name} held by {holder} expired (not renewed for "
                            f"{spec.get('leaseDurationSeconds')}s since {renewed or '?'}: its holder died): taken over"
                        )
                    break
                continue
            waited = time.monotonic() - start
            since = spec.get("acquireTime") or renewed or "?"
            if self.wait <= 0:
                raise ToolError(
                    f"release {self.release_name} is locked by {holder} since {since}: another deploy step is writing "
                    f"it; wait for it to finish, or run again with --lock-wait SECONDS to wait"
                )
            if waited >= self.wait:
                raise ToolError(
                    f"release {self.release_name} is still locked by {holder} (since {since}) after waiting "
                    f"{waited:.0f}s: let it finish and run again, or raise --lock-wait"
                )
            if waited - told >= PROGRESS_EVERY:
                told = waited
                REPORTER.info(
                    f"waiting for the lock of release {self.release_name}: held by {holder} since {since} "
                    f"({waited:.0f}s of up to {self.wait:.0f}s)"
                )
            waited_for = holder
            time.sleep(min(POLL, max(0.05, self.wait - waited)))
        if waited_for:
            waited = time.monotonic() - start
            REPORTER.ok(f"lock of release {self.release_name} taken after waiting {waited:.0f}s for {waited_for}")
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _taken(self, written: dict[str, Any] | None) -> bool:
        if written is None:
            return False
        self._held = True
        self._resource_version = (written.get("metadata") or {}).get("resourceVersion") or ""
        return True

    def _expired(self, spec: dict[str, Any], unchanged_for: float) -> bool:
        """Expired: not renewed within its duration, by its own renewTime or as long as we watched it unchanged
        (the latter immune to clock skew, as client-go's leader election judges it:
        https://github.com/kubernetes/client-go/blob/master/tools/leaderelection/leaderelection.go)."""
        duration = float(spec.get("leaseDurationSeconds") or DEFAULT_DURATION)
        if unchanged_for > duration:
            return True
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        return renewed is not None and (_now() - renewed).total_seconds() > duration

    # -- hold ----------------------------------------------------------------------------------
    def _renew(self) -> None:
        while not self._stop.wait(self.duration / 3):
            try:
                with self._lock:
                    body = {
                        "metadata": _version(self._resource_version),
                        "spec": {"renewTime": _micro(_now()), "holderIdentity": self.me},
                    }
                    if not self._taken(self._write(body, create=False)):
                        self.lost = f"the lock of release {self.release_name} was taken over while this step held it"
                        REPORTER.warning(self.lost)
                        return
            except Exception as exc:  # a blip of the API server: try again at the next period
                REPORTER.warning(f"renewing the lock of release {self.release_name} failed: {exc}")

    def writing(self, revision: int) -> None:
        """Record the revision this step is about to make, so that the next holder recognises it if we die."""
        with self._lock:
            body = {
                "metadata": {**_version(self._resource_version), "annotations": {REVISION_ANNOTATION: str(revision)}},
                "spec": {"renewTime": _micro(_now())},
            }
            if not self._taken(self._write(body, create=False)):
                raise ToolError(f"the lock of release {self.release_name} was taken over: stopped before writing")

    def release(self) -> None:
        """Stop renewing and clear the holder (the annotation stays for the next holder)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self._held or self.lost:
            return
        with self._lock:
            body = {
                "metadata": _version(self._resource_version),
                "spec": {"holderIdentity": None, "acquireTime": None, "renewTime": None},
            }
            try:
                self._write(body, create=False)
            except ToolError as exc:  # it expires on its own
                REPORTER.warning(f"{exc}: it expires in {self.duration}s")
            self._held = False

    def __enter__(self) -> ReleaseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _version(resource_version: str | None) -> dict[str, str]:
    """A patch's precondition: it fails (409) when the Lease changed since we read it."""
    return {"resourceVersion": resource_version} if resource_version else {}
