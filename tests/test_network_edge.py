"""The tools reach the simulated providers at the providers' real host names, unmodified.

Only the clients' documented variables are set (HTTPS_PROXY, AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE,
SSL_CERT_FILE; tests/sim/edge.py cites each): no AWS_ENDPOINT_URL, no STORAGE_EMULATOR_HOST. The
network edge (tests/sim/edge_proxy.py) terminates TLS with the test CA and routes by host name to
moto, the registry and the GCS emulator; the kit's containerd pulls the ECR name from the same
registry through its hosts.toml.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.envfiles import good_env, write_env
from tests.fixtures.apps import NAMES, stage_apps
from tests.realcluster import core, run_tool
from tests.sim.edge import MARK, containerd_mirror
from tests.sim.edge_routes import (
    AR_REGISTRY,
    CLOUD_DNS,
    ECR_REGISTRY,
    EKS,
    GCS,
    GKE,
    GOOGLE_TOKEN,
    MOTO,
    RESOURCE_MANAGER,
    part_for,
)
from tests.waiting import eventually
from tools.cloud import cloud_for
from tools.settings import load_settings

pytestmark = pytest.mark.testbed
ACCOUNT, REGION = "123456789012", "us-east-1"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
AR_HOST = "us-central1-docker.pkg.dev"  # good_env("gcp")'s REGION
NO_ENDPOINTS = ("AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST")


def edge_env(edge: Any, monkeypatch: pytest.MonkeyPatch, **extra: str) -> dict[str, str]:
    """This process and its children see the providers only through the edge's documented variables."""
    env = {**edge.client_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", **extra}
    for key in NO_ENDPOINTS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def hosts_seen(edge: Any) -> set[str]:
    return {host for host, _, _ in edge.proxy.seen}


def test_routes_map_the_providers_host_names_and_nothing_else() -> None:
    assert part_for(ECR_HOST) == ECR_REGISTRY
    assert part_for("api.ecr.us-east-1.amazonaws.com") == MOTO
    assert part_for("eks.eu-west-2.amazonaws.com") == EKS
    assert part_for("ec2.us-east-1.amazonaws.com") == MOTO  # helm_deploy reads the cluster VPC's subnets
    assert part_for("sts.amazonaws.com") == part_for("iam.amazonaws.com") == MOTO
    assert part_for("cmb-db.s3.us-east-1.amazonaws.com") == part_for("s3.amazonaws.com") == MOTO
    assert part_for("us-central1-docker.pkg.dev") == AR_REGISTRY
    assert part_for("storage.googleapis.com") == GCS and part_for("oauth2.googleapis.com") == GOOGLE_TOKEN
    assert part_for("container.googleapis.com") == GKE and part_for("dns.googleapis.com") == CLOUD_DNS
    assert part_for("cloudresourcemanager.googleapis.com") == RESOURCE_MANAGER
    for outside in ("pypi.org", "amazonaws.com.evil.org", "s3.us-east-1.amazonaws.com.evil.org", "ec2.amazonaws.com"):
        assert part_for(outside) is None, outside


def test_the_edge_refuses_unknown_hosts_and_untrusting_clients(network_edge: Any) -> None:
    proxy = urllib.request.ProxyHandler({"https": network_edge.proxy.url})
    trusting = ssl.create_default_context(cafile=str(network_edge.bundle))
    with pytest.raises(OSError, match="403"):  # CONNECT refused: nothing leaves the machine
        urllib.request.build_opener(proxy, urllib.request.HTTPSHandler(context=trusting)).open("https://pypi.org/")
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):  # the public roots alone do not trust it
        untrusting = ssl.create_default_context()
        opener = urllib.request.build_opener(proxy, urllib.request.HTTPSHandler(context=untrusting))
        opener.open("https://sts.amazonaws.com/")


def test_aws_s3_through_its_real_host_name(network_edge: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    edge_env(network_edge, monkeypatch)
    cluster = f"edge{uuid.uuid4().hex[:6]}"
    cloud = cloud_for(load_settings(environ=good_env("aws", CLUSTER_NAME=cluster)))
    bucket = cloud.database_bucket
    assert cloud.ensure_bucket(bucket).startswith(f"s3://{bucket} created")
    assert cloud.ensure_bucket(bucket).startswith(f"s3://{bucket} exists")
    # virtual-hosted style; us-east-1 on S3's global name, elsewhere the regional one
    assert {f"{bucket}.s3.amazonaws.com", f"{bucket}.s3.{REGION}.amazonaws.com"} & hosts_seen(network_edge)
    moto = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)  # the test's own view, past the edge
    assert moto.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_ecr_registry_wants_the_token_ecr_issued(network_edge: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    edge_env(network_edge, monkeypatch)
    refused = requests.get(f"https://{ECR_HOST}/v2/", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == f'Basic realm="https://{ECR_HOST}/",service="ecr.amazonaws.com"'
    token = boto3.client("ecr", region_name=REGION).get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    assert token["proxyEndpoint"] == f"https://{ECR_HOST}"
    assert requests.get(f"https://{ECR_HOST}/v2/", auth=(user, password), timeout=10).status_code == 200
    assert requests.get(f"https://{ECR_HOST}/v2/", auth=(user, password + "x"), timeout=10).status_code == 401


def test_eks_through_its_real_host_name_to_the_simulated_eks_api(
    network_edge: Any, simulated_eks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """describe_cluster at eks.REGION.amazonaws.com is answered by the EKS API the test bed puts in
    front of moto: the simulated control plane's real endpoint and CA."""
    from tests.sim.eks import CLUSTER

    edge_env(network_edge, monkeypatch)
    with network_edge.routed(EKS, simulated_eks.api.url):
        cluster = cloud_for(load_settings(environ=good_env("aws", CLUSTER_NAME=CLUSTER))).eks_cluster
    assert cluster["endpoint"] == simulated_eks.api.endpoint
    assert base64.b64decode(cluster["certificateAuthority"]["data"]) == simulated_eks.api.ca
    assert f"eks.{REGION}.amazonaws.com" in hosts_seen(network_edge)


def test_gcs_through_storage_googleapis_com(network_edge: Any, gcs_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = good_env("gcp", CLUSTER_NAME=f"edge{uuid.uuid4().hex[:6]}")
    key = network_edge.google_service_account("cmb-deploy@cmb-project.iam.gserviceaccount.com", "cmb-project")
    edge_env(network_edge, monkeypatch, GOOGLE_APPLICATION_CREDENTIALS=str(key))
    cloud = cloud_for(load_settings(environ=settings))
    bucket = cloud.database_bucket
    assert cloud.ensure_bucket(bucket).startswith(f"gs://{bucket} created")
    assert {"oauth2.googleapis.com", "storage.googleapis.com"} <= hosts_seen(network_edge)
    with urllib.request.urlopen(f"{gcs_url}/storage/v1/b/{bucket}", timeout=10) as response:
        assert json.loads(response.read())["name"] == bucket  # the emulator has it
    anonymous = requests.get(f"https://storage.googleapis.com/storage/v1/b/{bucket}", timeout=10)
    assert anonymous.status_code == 401, "GCS at the edge wants a token its token endpoint issued"

    # A key the token endpoint does not know is refused there, as Google refuses an unknown key.
    stranger = network_edge.google_service_account(
        "stranger@cmb-project.iam.gserviceaccount.com", "cmb-project", registered=False
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(stranger))
    with pytest.raises(Exception, match="invalid_grant"):
        cloud_for(load_settings(environ=settings)).ensure_bucket(bucket)


def build_push(cloud: str, edge: Any, docker_host: str, folder: Path, monkeypatch: Any, **env: str) -> dict[str, Any]:
    """`build_push --cloud CLOUD` of the stand-in images, with only the edge's variables; its images file."""
    name = f"edge{uuid.uuid4().hex[:6]}"
    contexts = stage_apps(folder / "apps")
    values = {
        **good_env(cloud, CLUSTER_NAME=name),
        **{f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in contexts.items()},
    }
    env_file = write_env(folder / f"{cloud}.env", values)
    tool_env = edge_env(
        edge, monkeypatch, DOCKER_HOST=docker_host, DOCKER="/usr/bin/docker", DOCKER_BUILDKIT="0", **env
    )
    output = folder / "images.json"
    run_tool("build_push", "--cloud", cloud, "--env-file", str(env_file), "--output", str(output), env=tool_env)
    document = json.loads(output.read_text())
    assert all(document["images"][i]["repository"].endswith(f"/{name}-{i}") for i in NAMES), document
    assert all(document["images"][i]["digest"].startswith("sha256:") for i in NAMES), document
    return document


def pull_on_cluster(certs: Path, registry: str, cluster: str, namespace: str, record: dict[str, Any]) -> None:
    """A pod on the shared cluster runs `record`'s image by its registry name; the digest pulled is the one pushed."""
    reference = f"{record['repository']}:{record['tags'][0]}"
    pods = core(cluster)
    name = f"pull-{uuid.uuid4().hex[:6]}"
    with containerd_mirror(certs, [reference.split("/")[0]], registry):
        pod = {
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "app", "image": reference, "imagePullPolicy": "Always"}],
                "restartPolicy": "Never",
            },
        }
        pods.create_namespaced_pod(namespace, pod)
        status = wait_running(pods, namespace, name, 120)
    image_id = status.container_statuses[0].image_id
    assert image_id.endswith(record["digest"]), image_id


def test_build_push_aws_to_the_ecr_host_and_a_pod_pulls_it(
    network_edge: Any,
    edge_docker: str,
    registry: str,
    moto_url: str,
    cluster: str,
    cluster_namespace: str,
    kit_certs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    document = build_push("aws", network_edge, edge_docker, tmp_path, monkeypatch)
    assert document["registry"] == ECR_HOST
    backend = document["images"]["backend"]
    assert backend["repository"].startswith(f"{ECR_HOST}/")
    ecr = boto3.client("ecr", endpoint_url=moto_url, region_name=REGION)  # made through api.ecr.REGION.amazonaws.com
    names = [document["images"][i]["repository"].partition("/")[2] for i in NAMES]
    assert len(ecr.describe_repositories(repositoryNames=names)["repositories"]) == len(NAMES)
    seen = network_edge.proxy.seen
    assert any(h == f"api.ecr.{REGION}.amazonaws.com" for h, _, _ in seen)
    assert any(h == ECR_HOST and m == "PUT" and "/manifests/" in p for h, m, p in seen), "docker pushed via the edge"
    pull_on_cluster(kit_certs, registry, cluster, cluster_namespace, backend)


def test_build_push_gcp_to_artifact_registry_and_a_pod_pulls_it(
    network_edge: Any,
    edge_docker: str,
    registry: str,
    cluster: str,
    cluster_namespace: str,
    kit_certs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = network_edge.google_service_account("cmb-builder@cmb-project.iam.gserviceaccount.com", "cmb-project")
    document = build_push(
        "gcp", network_edge, edge_docker, tmp_path, monkeypatch, GOOGLE_APPLICATION_CREDENTIALS=str(key)
    )
    assert document["registry"] == f"{AR_HOST}/cmb-project/cmbcluster"
    seen = network_edge.proxy.seen
    assert any(h == "oauth2.googleapis.com" for h, _, _ in seen)
    assert any(h == AR_HOST and p.startswith("/v2/token") for h, _, p in seen), "docker took a registry token"
    assert any(h == AR_HOST and m == "PUT" and "/manifests/" in p for h, m, p in seen), "docker pushed via the edge"
    pull_on_cluster(kit_certs, registry, cluster, cluster_namespace, document["images"]["user-env"])


def wait_running(pods: Any, namespace: str, name: str, seconds: float) -> Any:
    """The pod's status once it runs; fails at once on a pull error (with the kubelet's reason)."""

    def running() -> Any:
        status = pods.read_namespaced_pod(name, namespace).status
        waiting = [c.state.waiting for c in status.container_statuses or [] if c.state.waiting]
        if any(w.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName") for w in waiting):
            pytest.fail(f"the kubelet could not pull: {waiting[0].reason}: {waiting[0].message}")
        return status if status.phase == "Running" else None

    return eventually(
        running, lambda: f"pod {name} running (it is {pods.read_namespaced_pod(name, namespace).status.phase})", seconds
    )


def test_containerd_mirror_is_undone_and_takes_over_only_orphans(tmp_path: Path, registry: str) -> None:
    import subprocess

    host = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    with containerd_mirror(tmp_path, [host], registry):
        toml = (tmp_path / host / "hosts.toml").read_text()
        assert f'[host."http://{registry}"]' in toml and 'capabilities = ["pull", "resolve"]' in toml
        with pytest.raises(RuntimeError, match="not an orphan"), containerd_mirror(tmp_path, [host], registry):
            pass  # this run's own file, its process alive
    assert not (tmp_path / host).exists()

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / host).mkdir()
    (tmp_path / host / "hosts.toml").write_text(f"{MARK}{dead.pid}\nserver = 'https://{host}'\n")
    with containerd_mirror(tmp_path, [host], registry):
        assert str(os.getpid()) in (tmp_path / host / "hosts.toml").read_text()
    (tmp_path / host).mkdir()
    (tmp_path / host / "hosts.toml").write_text(f'server = "https://{host}"\n')  # someone else's
    with pytest.raises(RuntimeError, match="not an orphan"), containerd_mirror(tmp_path, [host], registry):
        pass
    assert (tmp_path / host / "hosts.toml").exists(), "someone else's file is left alone"
