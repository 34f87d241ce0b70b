"""The stand-in bucket drivers on the real cluster (tests/sim/csi.py): the chart's user volumes
mount through the kubelet's real CSI path, and what the real drivers refuse is refused with their
message in the pod's events.

The pods are the smoke test's storage-check pods (tools/smoke/storage.py builds them from the
chart's user-environment settings, as the backend builds user pods), with the stand-in user-env
image; the AWS one through a static PersistentVolume and claim, the GCP one an inline volume."""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.envfiles import good_env
from tests.realcluster import RELEASE, api
from tests.sim.csi_plugin import sockets
from tests.sim.csi_proto import MESSAGES
from tests.waiting import eventually
from tools.cloud import USER_SERVICE_ACCOUNT, cloud_for
from tools.helm import render
from tools.kube_ops import RELEASE_ANNOTATION, api_client
from tools.settings import load_settings
from tools.smoke.cache import Cluster
from tools.smoke.storage import check_storage, storage_check_manifests

pytestmark = pytest.mark.testbed
WRITE = 'echo "written by $TOKEN" > "$MOUNT/from-the-pod.txt"'


def user_environment_map(cloud: str, namespace: str, image: str) -> dict[str, Any]:
    """The chart's user-environment ConfigMap for `cloud` as rendered, with the stand-in user-env image."""
    settings = load_settings(cloud=cloud, environ=good_env(cloud, NAMESPACE=namespace))
    rendered = render(settings.release, namespace, cloud_for(settings).chart_values())
    (config_map,) = [o for o in rendered if o and o["metadata"]["name"].endswith("-user-environment")]
    config_map["data"]["USER_POD_IMAGE"] = image
    return config_map


def user_environment(cloud: str, namespace: str, image: str) -> dict[str, str]:
    """The chart's USER_POD_* settings for `cloud`."""
    return user_environment_map(cloud, namespace, image)["data"]


@pytest.fixture(scope="module")
def user_image(stand_in_images: Any) -> str:
    image = stand_in_images.images()["user-env"]
    return f"{image['repository']}@{image['digest']}"


@pytest.fixture(scope="module")
def site(cluster: str, cluster_namespace: str, stand_in_csi: Any) -> Iterator[tuple[Any, str]]:
    """(CoreV1Api as admin, namespace) with the user pods' ServiceAccount; PVs made here removed after."""
    from kubernetes import client

    core = client.CoreV1Api(api(cluster))
    core.create_namespaced_service_account(cluster_namespace, {"metadata": {"name": USER_SERVICE_ACCOUNT}})
    yield core, cluster_namespace
    # The pods go while the drivers are still registered, so the kubelet unpublishes their volumes
    # (it removes a pod from the API only once its volumes are unmounted).
    core.delete_collection_namespaced_pod(cluster_namespace)
    with contextlib.suppress(AssertionError):  # clean-up: the volumes go next either way
        eventually(lambda: not core.list_namespaced_pod(cluster_namespace).items, "the pods gone")
    for pv in core.list_persistent_volume(label_selector="app.kubernetes.io/component=storage-check").items:
        if pv.spec.claim_ref and pv.spec.claim_ref.namespace == cluster_namespace:
            core.delete_persistent_volume(pv.metadata.name)


def launch(site: tuple[Any, str], config: dict[str, str], bucket: str, rename: bool = True) -> str:
    """Create the storage check's objects with a pod that writes one file and stops; the pod's name."""
    core, namespace = site
    token = secrets.token_hex(4)
    manifests = storage_check_manifests(config, USER_SERVICE_ACCOUNT, namespace, RELEASE, bucket, token, 120, rename)
    pod = manifests[-1]
    pod["spec"]["containers"][0]["command"] = ["sh", "-c", WRITE]
    for obj in manifests:
        if obj["kind"] == "PersistentVolume":
            core.create_persistent_volume(obj)
        elif obj["kind"] == "PersistentVolumeClaim":
            core.create_namespaced_persistent_volume_claim(namespace, obj)
        else:
            core.create_namespaced_pod(namespace, obj)
    return pod["metadata"]["name"]


def wait_succeeded(site: tuple[Any, str], name: str, seconds: float = 90) -> None:
    core, namespace = site

    def succeeded() -> bool:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        assert phase != "Failed", f"pod {name} failed: {mount_events(site, name)}"
        return phase == "Succeeded"

    eventually(succeeded, lambda: f"pod {name} succeeded; events: {mount_events(site, name)}", seconds)


def mount_events(site: tuple[Any, str], name: str) -> list[str]:
    core, namespace = site
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [f"{e.reason}: {e.message}" for e in events]


def refused_with(site: tuple[Any, str], name: str, text: str, seconds: float = 60) -> str:
    """The pod's FailedMount event that carries `text` (the pod never starts)."""
    found = eventually(
        lambda: [e for e in mount_events(site, name) if e.startswith("FailedMount") and text in e],
        lambda: f"a FailedMount with {text!r} for {name}: {mount_events(site, name)}",
        seconds,
    )
    core, namespace = site
    assert core.read_namespaced_pod(name, namespace).status.phase == "Pending"
    return found[0]


def test_aws_user_volume_mounts_the_bucket(site, stand_in_csi, user_image: str) -> None:
    config = user_environment("aws", site[1], user_image)
    assert config["USER_POD_VOLUME_MODE"] == "csi-static-pv" and config["USER_POD_CSI_DRIVER"] == "s3.csi.aws.com"
    bucket = f"cmbtest-users-{site[1]}"[:63]
    name = launch(site, config, bucket, rename=False)
    wait_succeeded(site, name)
    written = stand_in_csi.bucket(bucket) / "from-the-pod.txt"
    assert written.read_text().startswith("written by ")
    assert written.stat().st_uid == 1000  # Mountpoint's uid=1000 from the chart's mount options


def test_gcp_inline_volume_mounts_the_bucket(site, stand_in_csi, user_image: str) -> None:
    config = user_environment("gcp", site[1], user_image)
    assert config["USER_POD_VOLUME_MODE"] == "csi-inline"
    assert json.loads(config["USER_POD_ANNOTATIONS"]) == {"gke-gcsfuse/volumes": "true"}
    bucket = f"cmbtest-users-gcp-{site[1]}"[:63]
    name = launch(site, config, bucket)
    wait_succeeded(site, name)
    assert (stand_in_csi.bucket(bucket) / "from-the-pod.txt").read_text().startswith("written by ")


def test_wrong_attributes_and_options_are_refused_in_the_pods_events(site, user_image: str) -> None:
    aws = user_environment("aws", site[1], user_image)
    gcp = user_environment("gcp", site[1], user_image)
    bad_source = launch(site, {**aws, "USER_POD_VOLUME_ATTRIBUTES": '{"authenticationSource": "node"}'}, "b-aws-1")
    bad_flag = launch(site, {**aws, "USER_POD_MOUNT_OPTIONS": '["allow-delete", "allow-everything"]'}, "b-aws-2")
    disallowed = launch(site, {**gcp, "USER_POD_VOLUME_ATTRIBUTES": '{"mountOptions": "key-file=/k.json"}'}, "b-gcp-1")
    no_sidecar = launch(site, {**gcp, "USER_POD_ANNOTATIONS": "{}"}, "b-gcp-2")
    s3_inline = launch(site, {**aws, "USER_POD_VOLUME_MODE": "csi-inline"}, "b-aws-3")
    assert "unsupported authenticationSource 'node'" in refused_with(site, bad_source, "authenticationSource")
    assert "'--allow-everything'" in refused_with(site, bad_flag, "unexpected argument")
    assert "'key-file' is disallowed" in refused_with(site, disallowed, "disallowed")
    assert "gke-gcsfuse/volumes" in refused_with(site, no_sidecar, "failed to find the sidecar container")
    # the kubelet itself refuses, from the CSIDriver's volumeLifecycleModes: Mountpoint has no inline volumes
    assert "s3.csi.aws.com" in refused_with(site, s3_inline, "Ephemeral")


def test_the_plugin_answers_the_csi_identity_and_node_info_calls(stand_in_csi) -> None:
    """What node-driver-registrar and csi-sanity ask first, over the socket the kubelet uses."""

    def call(channel: grpc.Channel, method: str, request: str, response: str) -> Any:
        rpc = channel.unary_unary(
            method,
            request_serializer=MESSAGES[request].SerializeToString,
            response_deserializer=MESSAGES[response].FromString,
        )
        return rpc(MESSAGES[request](), timeout=5)

    for driver in ("s3.csi.aws.com", "gcsfuse.csi.storage.gke.io"):
        with grpc.insecure_channel(f"unix://{sockets(stand_in_csi.kubelet, driver)[1]}") as channel:
            info = call(channel, "/csi.v1.Identity/GetPluginInfo", "GetPluginInfoRequest", "GetPluginInfoResponse")
            assert info.name == driver and info.vendor_version
            capabilities = call(
                channel,
                "/csi.v1.Identity/GetPluginCapabilities",
                "GetPluginCapabilitiesRequest",
                "GetPluginCapabilitiesResponse",
            )
            assert list(capabilities.capabilities) == []  # node-only: no controller service
            probe = call(channel, "/csi.v1.Identity/Probe", "ProbeRequest", "ProbeResponse")
            assert probe.ByteSize() == 0  # `ready` unset: ready, by the spec
            node = call(channel, "/csi.v1.Node/NodeGetInfo", "NodeGetInfoRequest", "NodeGetInfoResponse")
            assert node.node_id == "localhost"


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_smoke_tests_storage_check_passes_on_the_stand_in(
    cloud: str, site, stand_in_csi, user_image: str, cluster: str, moto_url: str, gcs_url: str, bed_env
) -> None:
    """tools/smoke/storage.py as `make smoke` runs it, on the chart's settings for the cloud: its bucket
    made in moto or the GCS emulator, its pod writing, overwriting, reading and deleting on the mount."""
    core, namespace = site
    dev = {"ENVIRONMENT": "dev"} if cloud == "gcp" else {}  # the GCS emulator is honoured only in dev
    settings = load_settings(cloud=cloud, environ=good_env(cloud, NAMESPACE=namespace, **dev))
    config_map = user_environment_map(cloud, namespace, user_image)
    config_map["metadata"]["annotations"] = {RELEASE_ANNOTATION: settings.release}  # as Helm installs it
    core.create_namespaced_config_map(namespace, config_map)
    args = argparse.Namespace(storage_bucket=None, storage_deadline=90.0, grace=20.0)
    try:
        with api_client(cluster) as kube, Cluster(kube, namespace, ["deployments", "pods", "events"]) as watched:
            check = check_storage(watched, settings, args)
    finally:
        core.delete_namespaced_config_map(config_map["metadata"]["name"], namespace)
    assert check.status == "ok", check.detail
    assert "in the pod: write file" in check.detail and ("rename file" in check.detail) == (cloud == "gcp")
    bucket = stand_in_csi.bucket(cloud_for(settings).smoke_bucket)
    assert bucket.is_dir() and not list(bucket.iterdir())  # the check deleted what it wrote
