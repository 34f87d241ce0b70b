"""Issue 18: a user environment as the backend makes it, on the real cluster with the stand-in bucket drivers.

Helm installs the chart with the cloud's values into a namespace of its own (its Deployments' images are
the clouds' registry names, which the kit cannot pull: only its RBAC, ServiceAccounts, admission policy,
NetworkPolicies and user-environment ConfigMap matter here). Then, with a token of the backend's own
ServiceAccount, the test makes what the backend's pod manager makes for a user, from that ConfigMap
(tools/smoke/storage.py builds it as the pod manager does): on AWS a PersistentVolume for the user's
bucket, its claim and the pod; on GCP the pod with its inline gcsfuse volume and annotation. The pod runs
as the user identity and writes into the bucket's folder of the stand-in driver (tests/sim/csi.py).

Not imitated: EKS's pod identity webhook (it would add AWS_ROLE_ARN and a projected token to the pod
from the ServiceAccount's role-arn annotation) and GKE's metadata server; the annotations the providers
read are asserted instead. NetworkPolicy is not enforced by the kit's CNI bridge: the installed policies
are evaluated against the running user pod instead (README, "Not verifiable offline")."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.envfiles import good_env
from tests.realcluster import RELEASE, api, create_namespace, delete_namespace, service_account_kubeconfig
from tests.waiting import eventually
from tools.cloud import BACKEND_SERVICE_ACCOUNT, USER_SERVICE_ACCOUNT, cloud_for
from tools.helm import helm_binary
from tools.settings import REPO_ROOT, load_settings
from tools.smoke.storage import storage_check_manifests

pytestmark = pytest.mark.testbed
WRITE = 'echo "written by $TOKEN" > "$MOUNT/from-the-pod.txt"'
POLICY_MESSAGE = "user volumes must be CSI volumes of s3.csi.aws.com: no hostPath"


@dataclass
class Release:
    """The chart installed for one cloud, and API clients as the cluster admin and as the backend."""

    cloud: str
    namespace: str
    cloud_shim: Any
    admin: Any  # CoreV1Api as the cluster admin
    backend: Any  # CoreV1Api as the backend's ServiceAccount
    serialize: Any  # a kubernetes object -> its API dict (camelCase, as the API server sends it)


@contextmanager
def installed(cluster: str, cloud: str, folder: Path) -> Iterator[Release]:
    """`helm install` of the chart with `cloud`'s values in a new namespace; uninstalled (its cluster-scoped
    objects with it), the user's volumes and the namespace removed after."""
    from kubernetes import client

    namespace = create_namespace(cluster, f"user-env-{cloud}")
    admin_client = api(cluster)
    admin = client.CoreV1Api(admin_client)
    try:
        settings = load_settings(cloud=cloud, environ=good_env(cloud, NAMESPACE=namespace))
        shim = cloud_for(settings)
        chart_values = shim.chart_values()
        # GCP: the chart's own option for an existing ClusterIssuer, so it makes no cert-manager Issuer: the
        # kit has no cert-manager (nor its CRDs). AWS has none (ACM). Nothing else of the cloud's values changes.
        cert_manager = chart_values.get("ingress", {}).get("certManager")
        if cert_manager:
            cert_manager.update(email="", clusterIssuer="existing-issuer")
        values = folder / f"values-{cloud}.json"
        values.write_text(json.dumps(chart_values))
        helm(cluster, "install", RELEASE, str(REPO_ROOT / "helm"), "-n", namespace, "-f", str(values))
        token = service_account_kubeconfig(cluster, namespace, BACKEND_SERVICE_ACCOUNT, folder, create=False)
        yield Release(
            cloud, namespace, shim, admin, client.CoreV1Api(api(token)), admin_client.sanitize_for_serialization
        )
    finally:
        # The release first (its Deployments would make new pods), then the pods, while the stand-in
        # drivers are registered, so the kubelet unpublishes their volumes.
        helm(cluster, "uninstall", RELEASE, "-n", namespace, check=False)
        admin.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        with contextlib.suppress(AssertionError):  # clean-up: the volumes and the namespace go next either way
            eventually(lambda: not admin.list_namespaced_pod(namespace).items, "the user pods gone")
        for pv in admin.list_persistent_volume().items:
            if pv.spec.claim_ref and pv.spec.claim_ref.namespace == namespace:
                admin.delete_persistent_volume(pv.metadata.name)
        delete_namespace(cluster, namespace)


def helm(kubeconfig: str, *args: str, check: bool = True) -> None:
    proc = subprocess.run(
        [helm_binary(), *args, "--kubeconfig", kubeconfig], capture_output=True, text=True, check=False, timeout=300
    )
    assert proc.returncode == 0 or not check, f"helm {args[0]}: {proc.stderr[-2000:]}"


def user_environment(release: Release, image: str) -> tuple[dict[str, str], str]:
    """The installed chart's USER_POD_* settings (the stand-in user-env image for the cloud's) and the
    user pods' ServiceAccount the backend is told to use (its USER_POD_SA_NAME)."""
    from kubernetes import client

    config = release.admin.read_namespaced_config_map(f"{RELEASE}-user-environment", release.namespace).data
    deployment = client.AppsV1Api(release.admin.api_client).read_namespaced_deployment(
        f"{RELEASE}-backend", release.namespace
    )
    env = {e.name: e.value for c in deployment.spec.template.spec.containers for e in c.env or []}
    return {**config, "USER_POD_IMAGE": image}, env["USER_POD_SA_NAME"]


def make_user_environment(release: Release, config: dict[str, str], service_account: str, bucket: str) -> str:
    """What the pod manager makes for a user, made by the backend's ServiceAccount; the pod's name."""
    token = secrets.token_hex(4)
    manifests = storage_check_manifests(
        config, service_account, release.namespace, RELEASE, bucket, token, 120, release.cloud_shim.renames_files
    )
    pod = manifests[-1]
    pod["metadata"]["labels"] = json.loads(config["USER_POD_LABELS"])  # a user pod, as the pod manager labels it
    pod["spec"]["containers"][0]["command"] = ["sh", "-c", WRITE]
    for obj in manifests:
        if obj["kind"] == "PersistentVolume":
            release.backend.create_persistent_volume(obj)
        elif obj["kind"] == "PersistentVolumeClaim":
            release.backend.create_namespaced_persistent_volume_claim(release.namespace, obj)
        else:
            release.backend.create_namespaced_pod(release.namespace, obj)
    return pod["metadata"]["name"]


def wait_succeeded(release: Release, name: str, seconds: float = 90) -> Any:
    """The pod once it has run to its end; its events in the failure message."""

    def succeeded() -> Any:
        pod = release.admin.read_namespaced_pod(name, release.namespace)
        assert pod.status.phase != "Failed", f"pod {name} failed: {events(release, name)}"
        return pod if pod.status.phase == "Succeeded" else None

    return eventually(succeeded, lambda: f"pod {name} succeeded: {events(release, name)}", seconds)


def events(release: Release, name: str) -> list[str]:
    found = release.admin.list_namespaced_event(release.namespace, field_selector=f"involvedObject.name={name}")
    return [f"{e.reason}: {e.message}" for e in found.items]


def host_path_refusal(release: Release, config: dict[str, str], bucket: str) -> str:
    """The API server's refusal of a hostPath PV the backend makes (a user volume's shape with the node's
    root instead of the bucket), polled while the new policy loads (dry runs: nothing is made)."""
    from kubernetes.client.rest import ApiException

    (volume, *_) = storage_check_manifests(config, USER_SERVICE_ACCOUNT, release.namespace, RELEASE, bucket, "r", 60)
    del volume["spec"]["csi"], volume["spec"]["mountOptions"]
    volume["spec"]["hostPath"] = {"path": "/", "type": "Directory"}

    def refusal() -> str | None:
        try:
            release.backend.create_persistent_volume(volume, dry_run="All")
        except ApiException as exc:
            answer = json.loads(exc.body).get("message", "") if exc.body else str(exc.status)
            if "ValidatingAdmissionPolicy" in answer:
                return answer
            raise
        return None  # accepted

    return eventually(refusal, "the policy's refusal of the backend's hostPath PersistentVolume (None: accepted)", 30)


# -- NetworkPolicy, evaluated (the kit's CNI bridge does not enforce it) ---------------------------------------
def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's match (an empty selector selects everything), as the API documents it:
    https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements"""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def admits(peer: dict[str, Any], pod_labels: dict[str, str], namespace_labels: dict[str, str]) -> bool:
    """Whether a NetworkPolicyPeer admits a pod of the policy's own namespace (a podSelector alone: pods of
    that namespace; a namespaceSelector: pods of the namespaces it selects, narrowed by a podSelector beside
    it): https://kubernetes.io/docs/concepts/services-networking/network-policies/#behavior-of-to-and-from-selectors
    An ipBlock admits the load balancer's addresses (the Ingress's path; tests/test_cluster_access.py holds
    that they are its subnets, not the pods'), which no label here decides."""
    if "ipBlock" in peer:
        return False
    in_namespace = selects(peer["namespaceSelector"], namespace_labels) if "namespaceSelector" in peer else True
    return in_namespace and selects(peer.get("podSelector") or {}, pod_labels)


def backend_admits_the_user_pod(release: Release, pod: Any) -> list[str]:
    """The installed backend NetworkPolicy's rules that admit the user pod (none: only through the Ingress)."""
    from kubernetes import client

    networking = client.NetworkingV1Api(release.admin.api_client)
    policy = release.serialize(networking.read_namespaced_network_policy(f"{RELEASE}-backend", release.namespace))
    backend = client.AppsV1Api(release.admin.api_client).read_namespaced_deployment(
        f"{RELEASE}-backend", release.namespace
    )
    spec = policy["spec"]
    # the policy is in force for the backend's pods, for their ingress: otherwise it says nothing
    assert selects(spec["podSelector"], backend.spec.template.metadata.labels), spec["podSelector"]
    assert "Ingress" in spec["policyTypes"]
    namespace_labels = release.admin.read_namespace(release.namespace).metadata.labels
    admitted = []
    for rule in spec.get("ingress") or []:
        peers = rule.get("from") or []
        if not peers:  # a rule without `from` admits every source
            admitted.append(json.dumps(rule))
        admitted += [json.dumps(p) for p in peers if admits(p, pod.metadata.labels, namespace_labels)]
    return admitted


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_backend_makes_a_user_environment_that_runs_as_the_user_and_writes_to_the_bucket(
    cloud: str, cluster: str, on_cluster, stand_in_csi: Any, stand_in_images: Any, tmp_path: Path
) -> None:
    image = stand_in_images.images()["user-env"]
    with installed(cluster, cloud, tmp_path) as release:
        config, service_account = user_environment(release, f"{image['repository']}@{image['digest']}")
        assert service_account == USER_SERVICE_ACCOUNT != BACKEND_SERVICE_ACCOUNT
        bucket = f"{release.cloud_shim.user_bucket_prefix}-alice-{secrets.token_hex(3)}"
        if cloud == "aws":
            # defect 6: the same identity's hostPath volume is refused by the chart's policy, nothing made
            assert POLICY_MESSAGE in host_path_refusal(release, config, bucket)
        name = make_user_environment(release, config, service_account, bucket)
        pod = wait_succeeded(release, name)

        written = stand_in_csi.bucket(bucket) / "from-the-pod.txt"
        assert written.read_text().startswith("written by ")
        volume = pod.spec.volumes[0]
        if cloud == "aws":  # the user's PersistentVolume, bound to its claim; Mountpoint's uid=1000 option
            claim = release.admin.read_namespaced_persistent_volume_claim(
                volume.persistent_volume_claim.claim_name, release.namespace
            )
            pv = release.admin.read_persistent_volume(claim.spec.volume_name)
            assert claim.status.phase == "Bound" and pv.spec.csi.volume_attributes["bucketName"] == bucket
            assert pv.spec.csi.driver == "s3.csi.aws.com" and written.stat().st_uid == 1000
        else:  # the inline gcsfuse volume, and the annotation that asks GKE for its sidecar
            assert volume.csi.driver == "gcsfuse.csi.storage.gke.io"
            assert volume.csi.volume_attributes["bucketName"] == bucket
            assert pod.metadata.annotations["gke-gcsfuse/volumes"] == "true"

        # the user identity, never the backend's: its IRSA role / Workload Identity account, no API token
        assert pod.spec.service_account_name == USER_SERVICE_ACCOUNT
        identity = {  # the provider's annotation on each ServiceAccount (Helm adds its own beside)
            a.metadata.name: {k: v for k, v in (a.metadata.annotations or {}).items() if "helm.sh" not in k}
            for a in release.admin.list_namespaced_service_account(release.namespace).items
        }
        assert identity[USER_SERVICE_ACCOUNT] == release.cloud_shim.service_account_annotations("user")
        assert identity[BACKEND_SERVICE_ACCOUNT] == release.cloud_shim.service_account_annotations("backend")
        assert identity[USER_SERVICE_ACCOUNT] != identity[BACKEND_SERVICE_ACCOUNT]
        assert not [v.name for v in pod.spec.volumes if v.name.startswith("kube-api-access")]

        # the backend admits the user pod by no in-cluster path (only the Ingress's)
        assert backend_admits_the_user_pod(release, pod) == []
