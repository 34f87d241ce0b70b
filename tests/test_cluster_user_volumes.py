"""On EKS the backend makes one PersistentVolume per user bucket (Mountpoint for S3 has no inline
volumes), and PersistentVolumes are cluster-scoped: the chart grants the backend's
ServiceAccount a ClusterRole for exactly that. Applied to the real cluster, the rendered
ClusterRole lets the ServiceAccount create and delete a PV, and nothing else cluster-wide: every
cluster-scoped resource the API serves and every verb is asked (SelfSubjectAccessReview), and
what the bound account may do beyond an unbound one is exactly the PV verbs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realcluster import api, service_account_kubeconfig
from tools.cloud import AwsCloud
from tools.helm import render
from tools.settings import load_settings

pytestmark = pytest.mark.testbed
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
GRANTED = {("persistentvolumes", "", verb) for verb in ("get", "list", "watch", "create", "delete")}


def cluster_scoped_resources(kubeconfig: str) -> list[tuple[str, str]]:
    """(resource, group) of every cluster-scoped resource the API server serves (from discovery)."""
    from tools.kube_client import Kube

    with Kube(kubeconfig) as kube:
        listings = [("", kube.get("/api/v1"))]
        for group in kube.get("/apis")["groups"]:
            listings.append((group["name"], kube.get(f"/apis/{group['preferredVersion']['groupVersion']}")))
    return sorted(
        {(r["name"], group) for group, listing in listings for r in listing["resources"] if not r["namespaced"]}
        - {(r["name"], group) for group, listing in listings for r in listing["resources"] if "/" in r["name"]}
    )


def allowed(kubeconfig: str, resources: list[tuple[str, str]]) -> set[tuple[str, str, str]]:
    from kubernetes import client

    authz = client.AuthorizationV1Api(api(kubeconfig))
    granted = set()
    for resource, group in resources:
        for verb in VERBS:
            review = {"spec": {"resourceAttributes": {"group": group, "resource": resource, "verb": verb}}}
            if authz.create_self_subject_access_review(review).status.allowed:
                granted.add((resource, group, verb))
    return granted


def test_the_backend_may_make_user_volumes_and_nothing_else_cluster_wide(
    cluster: str, cluster_namespace: str, on_cluster, tmp_path: Path
) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from tests.envfiles import good_env

    settings = load_settings(cloud="aws", environ=good_env("aws", NAMESPACE=cluster_namespace))
    rendered = render(settings.release, cluster_namespace, AwsCloud(settings).chart_values())
    rbac = {o["kind"]: o for o in rendered if o and o["kind"] in ("ClusterRole", "ClusterRoleBinding")}
    assert set(rbac) == {"ClusterRole", "ClusterRoleBinding"}
    backend = service_account_kubeconfig(cluster, cluster_namespace, "cmbcluster-ksa", tmp_path)
    control = service_account_kubeconfig(cluster, cluster_namespace, "unbound", tmp_path)
    admin = client.RbacAuthorizationV1Api(api(cluster))
    admin.create_cluster_role(rbac["ClusterRole"])
    admin.create_cluster_role_binding(rbac["ClusterRoleBinding"])
    name = rbac["ClusterRole"]["metadata"]["name"]
    try:
        resources = cluster_scoped_resources(cluster)
        assert ("persistentvolumes", "") in resources and ("nodes", "") in resources and len(resources) > 20
        assert allowed(backend, resources) - allowed(control, resources) == GRANTED

        core = client.CoreV1Api(api(backend))  # and for real: a user's volume, made and removed
        volume = {
            "metadata": {"name": f"{cluster_namespace}-user-probe"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "csi": {"driver": "s3.csi.aws.com", "volumeHandle": "probe", "volumeAttributes": {"bucketName": "b"}},
            },
        }
        core.create_persistent_volume(volume)
        with pytest.raises(ApiException) as refused:
            core.patch_persistent_volume(volume["metadata"]["name"], {"metadata": {"labels": {"x": "y"}}})
        assert refused.value.status == 403
        core.delete_persistent_volume(volume["metadata"]["name"])
        with pytest.raises(ApiException) as refused:
            core.list_node()
        assert refused.value.status == 403
    finally:
        admin.delete_cluster_role_binding(name)
        admin.delete_cluster_role(name)


def test_only_aws_renders_a_cluster_role() -> None:
    from tests.envfiles import good_env
    from tools.cloud import cloud_for

    for cloud in ("gcp", "local"):
        settings = load_settings(cloud=cloud, environ=good_env(cloud))
        kinds = {o["kind"] for o in render(settings.release, "cmbcluster", cloud_for(settings).chart_values()) if o}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, cloud
