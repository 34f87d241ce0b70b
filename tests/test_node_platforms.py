"""Preflight's platform check for a cluster with amd64 and arm64 (Graviton/Axion) nodes, which the
real single-node cluster cannot stage: the nodes live in the Kubernetes API emulator, the images
in the test bed's registry (the stand-in backend built by the real engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.envfiles import good_env
from tests.fixtures.apps import stage_apps
from tests.realcluster import build_and_push
from tools import kube_ops
from tools.cloud import cloud_for
from tools.image_index import checked_manifest, put_index
from tools.node_platforms import platform_problems
from tools.registry import Registry
from tools.settings import load_settings

pytestmark = pytest.mark.testbed


def add_node(kubeconfig: str, name: str, arch: str) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    api.create_node({"metadata": {"name": name, "labels": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"}}})


def test_an_image_without_the_arm64_nodes_variant_is_refused_and_a_two_platform_index_passes(
    kubeconfig: str, registry: str, docker_host: str, bed_env: dict[str, str], tmp_path: Path
) -> None:
    add_node(kubeconfig, "pool-x86-1", "amd64")
    add_node(kubeconfig, "pool-graviton-1", "arm64")
    add_node(kubeconfig, "pool-graviton-2", "arm64")
    context = stage_apps(tmp_path / "apps")["backend"]
    repository = f"{registry}/nodeplat-backend"
    amd64 = build_and_push(bed_env, context, f"{repository}:amd64")
    cloud = cloud_for(load_settings(cloud="local", environ=good_env("local", REGISTRY_URL=registry)))
    api = kube_ops.api_client(kubeconfig)

    (line,) = platform_problems({"backend": {"repository": repository, "digest": amd64}}, cloud, api)
    assert line == (
        f"image backend {repository}@{amd64[:19]} was built for linux/amd64 and has no linux/arm64 variant, the "
        "architecture of node(s) pool-graviton-1, pool-graviton-2: build for the nodes (IMAGE_PLATFORMS=linux/arm64, "
        "or a list with every node architecture) and deploy again"
    )

    client = Registry(registry)
    try:
        build_and_push(bed_env, context, f"{repository}:arm64")  # the same files, its config to say arm64
        manifests = [
            checked_manifest(client, repository, "amd64", "linux/amd64")[0],
            checked_manifest(client, repository, "arm64", "linux/arm64")[0],
        ]
        index = put_index(client, repository, manifests, ["both"])
    finally:
        client.close()
    assert platform_problems({"backend": {"repository": repository, "digest": index}}, cloud, api) == []
