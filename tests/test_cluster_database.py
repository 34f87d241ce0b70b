"""The database volume's checks and the migration's cluster steps, on the real cluster.

Preflight finds the database's StorageClass (named, or the cluster's default) and on EKS refuses
one that does not provision with the EBS CSI driver. migrate_database stops the old backend (its
pods are gone before the file is copied) and, on EKS, deletes the old chart's bucket-backed
static claim and volume, and nothing else."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from tests.envfiles import good_env
from tests.realcluster import (
    Site,
    api,
    bind,
    litestream_image,
    service_account_kubeconfig,
)
from tests.testbed import TEST_STORAGE_CLASS
from tests.waiting import eventually
from tools import database
from tools.cloud import AwsCloud, LocalCloud
from tools.kube_client import Kube
from tools.settings import load_settings

pytestmark = pytest.mark.testbed
RELEASE = "cmbcluster"
LABELS = {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "backend"}


def local(namespace: str, **overrides: str) -> LocalCloud:
    return LocalCloud(load_settings(cloud="local", environ=good_env("local", NAMESPACE=namespace, **overrides)))


def test_the_database_class_is_found_or_named_with_the_fix(cluster: str, cluster_namespace: str) -> None:
    with Kube(cluster) as kube:
        assert local(cluster_namespace).database_class_problem(kube) == (None, None)  # the default class
        problem, _ = local(cluster_namespace, DATABASE_STORAGE_CLASS="fast-ssd").database_class_problem(kube)
        assert problem == (
            "StorageClass fast-ssd (DATABASE_STORAGE_CLASS) does not exist: name one of `kubectl get storageclass`"
        )
        aws = AwsCloud(load_settings(cloud="aws", environ=good_env("aws", DATABASE_STORAGE_CLASS=TEST_STORAGE_CLASS)))
        problem, _ = aws.database_class_problem(kube)
        assert problem and problem.startswith(f"StorageClass {TEST_STORAGE_CLASS} provisions with ")
        assert "not ebs.csi.aws.com" in problem and "DATABASE_STORAGE_CLASS" in problem


def test_a_namespace_admin_gets_a_warning_not_a_refusal(cluster: str, cluster_namespace: str, tmp_path: Path) -> None:
    deployer = service_account_kubeconfig(cluster, cluster_namespace, "db-deployer", tmp_path)
    bind(cluster, cluster_namespace, "db-deployer", "admin")
    with Kube(deployer) as kube:
        problem, unchecked = local(cluster_namespace).database_class_problem(kube)
    assert problem is None
    assert (
        unchecked
        == "the default StorageClass not checked: these credentials may not read StorageClasses (cluster scope)"
    )


def old_aws_release(cluster: str, namespace: str, image: str) -> str:
    """What the old chart made on EKS: a backend, and the database bucket as a static PV + claim."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api(cluster)), client.AppsV1Api(api(cluster))
    volume = f"{namespace}-{RELEASE}-database"
    core.create_persistent_volume(
        {
            "metadata": {"name": volume, "labels": LABELS},
            "spec": {
                "capacity": {"storage": "1200Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": f"{RELEASE}-database"},
                "csi": {"driver": "s3.csi.aws.com", "volumeHandle": "cmbtest-db-123456789012"},
            },
        }
    )
    claim = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1200Gi"}}}
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": f"{RELEASE}-database", "labels": LABELS},
            "spec": {**claim, "storageClassName": "", "volumeName": volume},
        },
    )
    # a claim of the release that is not the bucket's (the new chart's kind): left alone
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": f"{RELEASE}-scratch", "labels": LABELS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    container = {"name": "backend", "image": image, "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": f"{RELEASE}-backend", "labels": LABELS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [container]}},
            },
        },
    )
    eventually(
        lambda: core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=backend").items,
        "the old backend's pod",
    )
    return volume


def test_migration_stops_the_old_backend_and_removes_only_the_bucket_claim(
    cluster: str, cluster_namespace: str, stand_in_images
) -> None:
    from kubernetes import client

    backend = stand_in_images.images()["backend"]
    volume = old_aws_release(cluster, cluster_namespace, f"{backend['repository']}@{backend['digest']}")
    core, apps = client.CoreV1Api(api(cluster)), client.AppsV1Api(api(cluster))
    with Kube(cluster) as kube:
        dry = database.stop_backend(kube, cluster_namespace, RELEASE, dry_run=True)
        assert dry == f"would scale {RELEASE}-backend to 0 replicas"
        assert apps.read_namespaced_deployment(f"{RELEASE}-backend", cluster_namespace).spec.replicas == 1
        dry = database.release_bucket_claim(kube, cluster_namespace, RELEASE, AwsCloud.csi_driver, dry_run=True)
        assert dry == f"would delete claim {RELEASE}-database and volume {volume} (the bucket stays)"

        assert database.stop_backend(kube, cluster_namespace, RELEASE, dry_run=False).endswith("its pods are gone")
        assert apps.read_namespaced_deployment(f"{RELEASE}-backend", cluster_namespace).spec.replicas == 0
        assert not core.list_namespaced_pod(
            cluster_namespace, label_selector="app.kubernetes.io/component=backend"
        ).items

        done = database.release_bucket_claim(kube, cluster_namespace, RELEASE, AwsCloud.csi_driver, dry_run=False)
        assert done == f"deleted claim {RELEASE}-database and volume {volume} (the bucket stays)"
        eventually(
            lambda: not [v for v in core.list_persistent_volume().items if v.metadata.name == volume],
            "the old volume deleted",
        )
        claims = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(cluster_namespace).items]
        assert claims == [f"{RELEASE}-scratch"]
        # a second run finds nothing left to do
        assert database.release_bucket_claim(kube, cluster_namespace, RELEASE, AwsCloud.csi_driver, False) == (
            "no bucket-backed claim"
        )


# -- the backup on the real cluster ----------------------------------------------------------------------
def claim(cluster: str, namespace: str, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api(cluster)).create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )


def helper_pod(cluster: str, namespace: str, name: str, image: str, script: str, seed: bytes | None = None) -> str:
    """A pod of the stand-in image that mounts the database claim (RWO: the same node, the kit has one)
    and runs `script`; returns its log once it has succeeded."""
    from kubernetes import client

    core = client.CoreV1Api(api(cluster))
    volumes = [{"name": "database", "persistentVolumeClaim": {"claimName": f"{RELEASE}-database"}}]
    mounts = [{"name": "database", "mountPath": "/app/data"}]
    if seed is not None:
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name}, "binaryData": {"cmbcluster.db": base64.b64encode(seed).decode()}}
        )
        volumes.append({"name": "seed", "configMap": {"name": name}})
        mounts.append({"name": "seed", "mountPath": "/seed"})
    container = {"name": "main", "image": image, "command": ["/bin/sh", "-c", script], "volumeMounts": mounts}
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
                "containers": [container],
                "volumes": volumes,
            },
        },
    )

    def ended() -> str | None:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = eventually(ended, f"pod {name} at its end", seconds=120)
    log = core.read_namespaced_pod_log(name, namespace)
    assert phase == "Succeeded", log
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)  # a pod that exists holds the claim
    eventually(
        lambda: not [p for p in core.list_namespaced_pod(namespace).items if p.metadata.name == name],
        f"pod {name} deleted",
    )
    return log


def wait_gone(cluster: str, namespace: str, component: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api(cluster))
    eventually(
        lambda: (
            not core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/component={component}").items
        ),
        f"the {component} pods stopped",
        seconds=120,
    )


def replica_files(cluster: str, namespace: str, claim_name: str, replica: str) -> list[Path]:
    """The LTX files Litestream wrote into the file replica `replica` (a folder of the claim's volume): the
    test bed's volumes are hostPath folders of this machine, read here as the node sees them."""
    from kubernetes import client

    core = client.CoreV1Api(api(cluster))
    volume = core.read_persistent_volume(
        core.read_namespaced_persistent_volume_claim(claim_name, namespace).spec.volume_name
    )
    folder = Path(volume.spec.host_path.path) if volume.spec.host_path else None
    assert folder and folder.is_dir(), f"claim {claim_name}'s volume is not a hostPath folder of this machine"
    return sorted((folder / replica).rglob("*.ltx"))


def seed_database(folder: Path) -> tuple[bytes, list[tuple]]:
    path = folder / "seed.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        db.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"user{i}@example.org") for i in range(40)])
    db.close()
    return path.read_bytes(), table(path)


def table(path: Path) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, email FROM users ORDER BY id").fetchall()
    finally:
        db.close()


def test_on_the_real_cluster_the_sidecar_backs_up_and_a_lost_volume_is_restored(
    site: Site, cluster: str, docker_host: str, registry: str, testbed, tmp_path: Path
) -> None:
    """The chart's pod on a real kubelet: the restore container runs first (nothing to restore on
    the first install), the native sidecar runs beside the backend under the restricted security
    context, streams the database to its replica (here a claim of its own, file:///backup: the test
    bed's S3 and GCS emulators listen on loopback, out of the pods' reach), catches the last
    changes when the pod stops; then the database's volume is deleted, and the next deploy's
    restore container brings every row back onto the new, empty volume."""
    from kubernetes import client

    image = litestream_image(tmp_path, testbed.env, registry)
    namespace = site.namespace
    claim(cluster, namespace, "database-backup")
    backup = {"url": "file:///backup/cmbcluster.db", "claimName": "database-backup"}
    values = {"database": {"backup": {**backup, "image": {**image, "pullPolicy": "IfNotPresent"}}}}
    assert site.secrets().returncode == 0
    first = site.deploy(values=values)
    assert first.returncode == 0, first.stdout + first.stderr
    (pod,) = site.pods("backend")
    statuses = {s.name: s for s in pod.status.init_container_statuses}
    assert statuses["restore-database"].state.terminated.exit_code == 0  # first install: nothing to restore
    assert statuses["litestream"].started and statuses["litestream"].state.running  # the native sidecar

    stand_in = site.stand_ins.images()["backend"]
    helper_image = f"{stand_in['repository']}@{stand_in['digest']}"
    data, rows = seed_database(tmp_path)
    helper_pod(cluster, namespace, "app-writes", helper_image, "cp /seed/cmbcluster.db /app/data/", seed=data)
    # the sidecar's first snapshot of the copied file, in the replica (it syncs the rest when the pod stops)
    eventually(
        lambda: replica_files(cluster, namespace, "database-backup", "cmbcluster.db"),
        "the sidecar's first snapshot in the replica",
    )

    apps, core = client.AppsV1Api(api(cluster)), client.CoreV1Api(api(cluster))
    apps.patch_namespaced_deployment_scale(f"{RELEASE}-backend", namespace, {"spec": {"replicas": 0}})
    wait_gone(cluster, namespace, "backend")
    core.delete_namespaced_persistent_volume_claim(f"{RELEASE}-database", namespace)  # the disk is lost
    eventually(
        lambda: (
            not [
                c
                for c in core.list_namespaced_persistent_volume_claim(namespace).items
                if c.metadata.name.endswith("-database")
            ]
        ),
        "the database claim deleted",
    )

    again = site.deploy(values=values)  # makes the claim anew, scales the backend back up
    assert again.returncode == 0, again.stdout + again.stderr
    (pod,) = site.pods("backend")
    statuses = {s.name: s for s in pod.status.init_container_statuses}
    assert statuses["restore-database"].state.terminated.exit_code == 0
    dump = helper_pod(cluster, namespace, "app-reads", helper_image, "base64 /app/data/cmbcluster.db")
    restored = tmp_path / "restored.db"
    restored.write_bytes(base64.b64decode(dump))
    assert table(restored) == rows
