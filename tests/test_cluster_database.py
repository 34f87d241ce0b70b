"""The database volume's checks and the migration's cluster steps, on the real cluster.

Preflight finds the database's StorageClass (named, or the cluster's default) and on EKS refuses
one that does not provision with the EBS CSI driver. migrate_database stops the old backend (its
pods are gone before the file is copied) and, on EKS, deletes the old chart's bucket-backed
static claim and volume, and nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.envfiles import good_env
from tests.realcluster import api, bind, service_account_kubeconfig
from tests.testbed import TEST_STORAGE_CLASS
from tools import database
from tools.cloud import AwsCloud, LocalCloud
from tools.kubeapi import Kube
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
    deadline = time.monotonic() + 60
    while not core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=backend").items:
        assert time.monotonic() < deadline, "the old backend's pod never appeared"
        time.sleep(0.5)
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
        deadline = time.monotonic() + 60
        while [v for v in core.list_persistent_volume().items if v.metadata.name == volume]:
            assert time.monotonic() < deadline, "the old volume was not deleted"
            time.sleep(0.5)
        claims = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(cluster_namespace).items]
        assert claims == [f"{RELEASE}-scratch"]
        # a second run finds nothing left to do
        assert database.release_bucket_claim(kube, cluster_namespace, RELEASE, AwsCloud.csi_driver, False) == (
            "no bucket-backed claim"
        )
