"""The test bed itself: every part answers, on loopback only."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import boto3
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from kubernetes import client, config

from tests.testbed import TestBed


def _host(url: str) -> str:
    return urlparse(url if "://" in url else f"http://{url}").hostname or ""


def test_parts_listen_on_loopback_only(
    testbed: TestBed, registry: str, moto_url: str, moto_iam_url: str, gcs_url: str, kubeconfig: str, helm_sql: str
) -> None:
    for url in (registry, moto_url, moto_iam_url, gcs_url, testbed.env["KMOCK_URL"], helm_sql):
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


def test_testbed_up_outlives_the_command_and_down_stops_exactly_it(tmp_path) -> None:
    """`make testbed-up` is for manual use: its parts must survive the command that started them."""
    import os
    import subprocess
    import sys
    import time

    from tools.settings import REPO_ROOT

    root = tmp_path / "bed"
    command = [sys.executable, "-m", "tests.testbed"]
    up = subprocess.run(
        [*command, "up", str(root), "--parts", "registry,moto"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    env = dict(line.removeprefix("export ").split("=", 1) for line in (root / "env").read_text().splitlines())
    registry, moto = json.loads(env["REGISTRY"]), json.loads(env["AWS_ENDPOINT_URL"])
    pids = [int((root / f"{name}.pid").read_text()) for name in ("registry", "moto")]
    time.sleep(1)  # the command is gone; a part tied to it would be dying now
    with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{moto}/moto-api/", timeout=5) as resp:
        assert resp.status == 200
    down = subprocess.run([*command, "down", str(root)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        state = stat.read_text().split()[2] if stat.exists() else ""
        assert state in ("", "Z"), f"part {pid} still runs"
    assert not (root / "env").exists() and not list(root.glob("*.pid"))
    assert os.path.isdir(root)


def test_the_real_cluster_is_real_and_says_no(cluster: str, on_cluster) -> None:
    """A node that runs pods, an API on loopback, and RBAC that refuses an identity with no rights."""
    from kubernetes.client.rest import ApiException

    from tests.realcluster import api, core, create_namespace, delete_namespace, service_account_kubeconfig

    assert _host(api(cluster).configuration.host) == "127.0.0.1"
    nodes = core(cluster).list_node().items
    assert any(c.type == "Ready" and c.status == "True" for n in nodes for c in n.status.conditions)
    namespace = create_namespace(cluster, "probe")
    try:
        nobody = service_account_kubeconfig(cluster, namespace, "nobody", Path(tempfile.mkdtemp()))
        try:
            core(nobody).list_namespaced_secret(namespace)
            raise AssertionError("a ServiceAccount with no binding listed Secrets")
        except ApiException as exc:
            assert exc.status == 403
    finally:
        delete_namespace(cluster, namespace)
