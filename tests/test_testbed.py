"""The test bed itself: every part answers, on loopback only."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlparse

import boto3
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from kubernetes import client, config

from tests.testbed import TestBed


def _host(url: str) -> str:
    return urlparse(url if "://" in url else f"http://{url}").hostname or ""


def test_parts_listen_on_loopback_only(
    testbed: TestBed, registry: str, moto_url: str, gcs_url: str, kubeconfig: str, helm_sql: str
) -> None:
    for url in (registry, moto_url, gcs_url, testbed.env["KMOCK_URL"], helm_sql):
        assert _host(url) == "127.0.0.1", url


def test_registry_answers_v2(registry: str) -> None:
    with urllib.request.urlopen(f"http://{registry}/v2/_catalog", timeout=5) as resp:
        assert isinstance(json.load(resp)["repositories"], list)


def test_moto_and_gcs_answer(bed_env: dict[str, str], moto_url: str, gcs_url: str) -> None:
    assert boto3.client("sts").get_caller_identity()["Account"].isdigit()
    gcs = storage.Client(project="p", credentials=AnonymousCredentials())
    gcs.create_bucket("testbed-probe")
    assert "testbed-probe" in [b.name for b in gcs.list_buckets()]


def test_kubernetes_emulator_stores_objects(bed_env: dict[str, str], kubeconfig: str) -> None:
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    api.create_namespaced_config_map(
        "probe", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "b"})
    )
    assert api.read_namespaced_config_map("c", "probe").data == {"a": "b"}


def test_docker_engine_answers(docker_host: str) -> None:
    import subprocess

    proc = subprocess.run(
        ["/usr/bin/docker", "-H", docker_host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip()
