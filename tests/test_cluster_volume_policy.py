"""Issue 18, defect 6: on EKS the backend's ServiceAccount may create PersistentVolumes (one per user
bucket), and RBAC cannot say which, so the chart adds a ValidatingAdmissionPolicy and its binding
that refuse every PV that ServiceAccount makes unless it is a user volume of the cloud's CSI driver.
Held on the real API server: the chart's ClusterRole, policy and binding are applied as rendered,
then the backend's ServiceAccount makes PVs (RBAC good practices, "Persistent volume creation":
https://kubernetes.io/docs/concepts/security/rbac-good-practices/; the policy API:
https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/)."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.envfiles import good_env
from tests.realcluster import api, service_account_kubeconfig
from tools.cloud import BACKEND_SERVICE_ACCOUNT, AwsCloud
from tools.helm import render
from tools.settings import load_settings
from tools.waiting import wait_for

pytestmark = pytest.mark.testbed
KINDS = ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@dataclass
class Applied:
    namespace: str
    backend: Any  # CoreV1Api as the backend's ServiceAccount
    admin: Any  # AdmissionregistrationV1Api as the cluster admin
    objects: dict[str, dict[str, Any]]  # the chart's cluster-scoped objects by kind
    user_environment: dict[str, str]  # the chart's USER_POD_* settings (its ConfigMap)
    user_bucket_prefix: str
    database_bucket: str


@pytest.fixture(scope="module")
def backend_kubeconfig(cluster: str, cluster_namespace: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The backend's ServiceAccount, as the chart names it, with a token of its own."""
    folder = tmp_path_factory.mktemp("backend")
    return service_account_kubeconfig(cluster, cluster_namespace, BACKEND_SERVICE_ACCOUNT, folder)


@pytest.fixture
def applied(cluster: str, cluster_namespace: str, backend_kubeconfig: str, on_cluster) -> Iterator[Applied]:
    """The chart's cluster-scoped objects for AWS, applied as rendered for this namespace; removed after."""
    from kubernetes import client

    settings = load_settings(cloud="aws", environ=good_env("aws", NAMESPACE=cluster_namespace))
    aws = AwsCloud(settings)
    rendered = [o for o in render(settings.release, cluster_namespace, aws.chart_values()) if o]
    objects = {o["kind"]: o for o in rendered if o["kind"] in KINDS}
    assert set(objects) == set(KINDS)
    (user_environment,) = [o["data"] for o in rendered if o["metadata"]["name"].endswith("-user-environment")]
    admin_client = api(cluster)
    rbac, admission = client.RbacAuthorizationV1Api(admin_client), client.AdmissionregistrationV1Api(admin_client)
    create = (
        rbac.create_cluster_role,
        rbac.create_cluster_role_binding,
        admission.create_validating_admission_policy,
        admission.create_validating_admission_policy_binding,
    )
    delete = (
        rbac.delete_cluster_role,
        rbac.delete_cluster_role_binding,
        admission.delete_validating_admission_policy,
        admission.delete_validating_admission_policy_binding,
    )
    with contextlib.ExitStack() as undo:
        for kind, make, remove in zip(KINDS, create, delete, strict=True):
            make(objects[kind])
            undo.callback(_quietly, remove, objects[kind]["metadata"]["name"])
        yield Applied(
            cluster_namespace,
            client.CoreV1Api(api(backend_kubeconfig)),
            admission,
            objects,
            user_environment,
            aws.user_bucket_prefix,
            aws.database_bucket,
        )


def _quietly(remove: Any, name: str) -> None:
    from kubernetes.client.rest import ApiException

    with contextlib.suppress(ApiException):  # a test may have removed it already
        remove(name)


def user_volume(site: Applied, name: str) -> dict[str, Any]:
    """A user's PersistentVolume as the pod manager makes it from the chart's USER_POD_* settings."""
    settings = site.user_environment
    return {
        "metadata": {"name": f"{site.namespace}-{name}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": site.namespace, "name": name},
            "mountOptions": json.loads(settings["USER_POD_MOUNT_OPTIONS"]),
            "csi": {
                "driver": settings["USER_POD_CSI_DRIVER"],
                "volumeHandle": f"{site.namespace}-{name}",
                "volumeAttributes": {
                    "bucketName": f"{site.user_bucket_prefix}-alice-1",
                    **json.loads(settings["USER_POD_VOLUME_ATTRIBUTES"]),
                },
            },
        },
    }


def host_path_volume(site: Applied, name: str) -> dict[str, Any]:
    """The same volume with the node's root file system instead of the bucket."""
    volume = user_volume(site, name)
    del volume["spec"]["csi"], volume["spec"]["mountOptions"]
    volume["spec"]["hostPath"] = {"path": "/", "type": "Directory"}
    return volume


def refusal(core: Any, volume: dict[str, Any], dry_run: bool = True) -> str:
    """The API server's message refusing `volume`, or "" when it accepts it (dry run: nothing is made)."""
    from kubernetes.client.rest import ApiException

    try:
        core.create_persistent_volume(volume, dry_run="All" if dry_run else None)
    except ApiException as exc:
        return json.loads(exc.body).get("message", exc.body) if exc.body else str(exc.status)
    return ""


def policy_in_force(site: Applied, expected: bool) -> None:
    """Policies take effect asynchronously (the API server's informers): ask with dry runs, which
    pass through admission and make nothing, until the hostPath volume is refused (or accepted)."""
    volume = host_path_volume(site, "probe")

    def probe() -> tuple[bool | None, str]:
        refused = bool(refusal(site.backend, volume))
        return (True if refused == expected else None), ("accepted" if not refused else "refused")

    wait_for(probe, what="the hostPath volume", timeout=30, hint="the API server did not load the policy")


def test_the_backend_makes_user_volumes_but_no_host_path_volume(applied: Applied) -> None:
    policy_in_force(applied, expected=True)
    # for real, not a dry run: the node's root as a volume is refused with the policy's message
    message = refusal(applied.backend, host_path_volume(applied, "root"), dry_run=False)
    name = applied.objects["ValidatingAdmissionPolicy"]["metadata"]["name"]
    assert f"ValidatingAdmissionPolicy '{name}'" in message, message
    assert "user volumes must be CSI volumes of s3.csi.aws.com: no hostPath" in message, message
    with pytest.raises(Exception) as gone:  # nothing was made
        applied.backend.read_persistent_volume(f"{applied.namespace}-root")
    assert getattr(gone.value, "status", None) in (403, 404)

    # a user's volume as the pod manager makes it is made (and removed)
    good = user_volume(applied, "alice")
    applied.backend.create_persistent_volume(good)
    applied.backend.delete_persistent_volume(good["metadata"]["name"])

    # every other pin of the shape, one at a time (dry runs)
    def changed(edit: Any) -> dict[str, Any]:
        volume = copy.deepcopy(good)
        edit(volume["spec"])
        return volume

    cases = {
        "storageClassName": lambda s: s.update(storageClassName="gp3"),
        "claimed from namespace": lambda s: s["claimRef"].update(namespace="kube-system"),
        "name a user bucket": lambda s: s["csi"]["volumeAttributes"].update(bucketName=applied.database_bucket),
        "only bucketName and these volumeAttributes": lambda s: s["csi"]["volumeAttributes"].update(
            authenticationSource="driver"
        ),
        "only the chart's mount options": lambda s: s["mountOptions"].append("endpoint-url http://127.0.0.1:9"),
        "CSI volumes of s3.csi.aws.com": lambda s: s["csi"].update(driver="hostpath.csi.k8s.io"),
    }
    for words, edit in cases.items():
        assert words in refusal(applied.backend, changed(edit)), words
    assert refusal(applied.backend, good) == ""


def test_without_the_policy_binding_the_host_path_volume_is_accepted(applied: Applied) -> None:
    """The refusal above is the policy's: remove its binding and the same identity's hostPath
    volume passes (a dry run: nothing is made)."""
    policy_in_force(applied, expected=True)
    applied.admin.delete_validating_admission_policy_binding(
        applied.objects["ValidatingAdmissionPolicyBinding"]["metadata"]["name"]
    )
    policy_in_force(applied, expected=False)
    assert refusal(applied.backend, host_path_volume(applied, "root")) == ""
