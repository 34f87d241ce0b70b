"""Issue 18: `make deploy-aws` whole, as a user runs it, against the simulated EKS on the real cluster.

The deploy role is configured as the toolkit prints it (`make cloud-setup CLOUD=aws`'s script run by the AWS CLI,
`make rbac` applied by a cluster admin; tests/sim/eks_setup.py), and the chain runs with that role's assumed
credentials and the network edge's client variables only (no AWS_ENDPOINT_URL, no KUBECONFIG): validate; build,
pushed by the edge's dockerd to `123456789012.dkr.ecr.us-east-1.amazonaws.com` (ECR's API in moto, the registry
behind the edge); secrets; certs (ACM in moto, validated through Route53's DNS_ZONE in moto); helm-deploy through
the kubeconfig the tools write from DescribeCluster (the simulated EKS's own apiserver with EKS's token webhook
and access policies, on the kit's etcd: the kubelet pulls the images by their ECR names through containerd's
mirror and runs the pods); dns (Route53 ALIAS records); smoke, whose storage pod mounts the smoke bucket through
the stand-in `s3.csi.aws.com`. A second run converges: nothing built, no secret rotated, no pod restarted.

Stand-ins and what they do not check:
- the AWS Load Balancer Controller: tests/sim/alb_controller.py makes an ALB in moto and writes the Ingress's
  address, as the controller does; nothing serves HTTPS at that name, so smoke runs with `--no-endpoints`
  (no endpoint, DNS-resolution, certificate or live sign-in check: README, "Not verifiable offline");
- Litestream: tests/sim/litestream.py (pods have no route to the test bed's S3), so the database replica in the
  bucket is not exercised here (tests/test_cluster_database.py runs the real binary on a local replica);
- the shared moto does not enforce IAM: it answers yes to every call of the deploy role, also ones its printed
  policy would refuse (tests/test_cloud_setup.py holds the policy to the calls against the IAM-enforcing moto);
- one identity runs the whole chain: `make deploy-aws` is one process environment, so the separate push
  identity (`make cloud-setup ARGS="--identity push"`) cannot take over the build step locally; the deploy role's
  printed policy includes the ECR push rights for that reason;
- the database volume binds to the test bed's hostPath volumes (no EBS CSI driver): the deploy role may not read
  cluster-scoped StorageClasses and CSIDrivers, so preflight warns about them, as it does on EKS for such a role.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from kubernetes import client

from tests.fixtures.apps import stage_apps
from tests.realcluster import api, create_namespace, delete_namespace
from tests.sim.alb_controller import AlbController
from tests.sim.edge import containerd_mirror
from tests.sim.edge_routes import EKS
from tests.sim.eks import ACCOUNT, CLUSTER, MOTO_KEYS, REGION
from tests.sim.eks_setup import prepared_account, remove_rbac
from tools.helm import helm_binary
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed
SESSION = "github-run-18"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
STEPS = ("validate_secrets", "build_push", "make_secrets", "certs", "helm_deploy", "dns", "smoke_test")


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def running_pods(cluster: str, namespace: str) -> dict[str, str]:
    """{component: pod uid} of the release's backend and frontend, each Running and Ready."""
    pods = client.CoreV1Api(api(cluster)).list_namespaced_pod(namespace).items
    found = {}
    for pod in pods:
        component = (pod.metadata.labels or {}).get("app.kubernetes.io/component", "")
        if component in ("backend", "frontend") and not pod.metadata.deletion_timestamp:
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            assert pod.status.phase == "Running" and ready, f"{pod.metadata.name}: {pod.status.phase}"
            found[component] = pod.metadata.uid
    return found


def test_make_deploy_aws_runs_whole_on_the_simulated_eks_and_converges(
    simulated_eks_cluster: Any,
    network_edge: Any,
    edge_docker: str,
    registry: str,
    moto_url: str,
    cluster: str,
    kit_certs: Path,
    testbed: Any,
    stand_in_csi: Any,
    tmp_path: Path,
) -> None:
    sim = simulated_eks_cluster
    namespace = create_namespace(cluster, "deploy-aws")
    try:
        # -- the account and the cluster, as their admins prepare them ------------------------------------
        contexts = stage_apps(tmp_path / "apps")
        account = prepared_account(
            sim,
            moto_url,
            registry,
            edge_docker,
            cluster,
            namespace,
            tmp_path,
            **{f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in contexts.items()},
        )
        env_file, role_arn, zone_id = account.env_file, account.role_arn, account.zone_id
        base = account.values["BASE_DOMAIN"]
        route53 = boto3.client("route53", endpoint_url=moto_url, region_name=REGION, **MOTO_KEYS)

        # -- the deploy, as the CI job's assumed role, through the network edge only ----------------------
        credentials = sim.reviewer.issue(role_arn, SESSION)
        ambient = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "KUBECONFIG"}
        env = {
            **ambient,
            **network_edge.client_env(),
            **credentials,
            "AWS_DEFAULT_REGION": REGION,
            "DOCKER_HOST": edge_docker,
            "DOCKER": "/usr/bin/docker",
            "DOCKER_BUILDKIT": "0",
            "NO_COLOR": "1",
        }
        images = tmp_path / "images.json"
        args = [f"ENV_FILE={env_file}", f"IMAGES_FILE={images}", "SMOKE_ARGS=--no-endpoints"]
        networking = client.NetworkingV1Api(api(cluster))
        balancer = f"k8s-{namespace}"[:32]
        with (
            network_edge.routed(EKS, sim.api.url),
            containerd_mirror(kit_certs, [ECR_HOST], registry),
            AlbController(networking, moto_url, sim.vpc_id, namespace, "cmbcluster", balancer) as alb,
        ):
            first = make("deploy-aws", *args, env=env)
            text = first.stdout + first.stderr
            assert first.returncode == 0, text[-5000:] + "\n".join(sim.hooks.log[-10:]) + f"\nALB: {alb.error}"
            pods = running_pods(cluster, namespace)
            secrets = client.CoreV1Api(api(cluster)).read_namespaced_secret("cmbcluster-backend-secrets", namespace)

            second = make("deploy-aws", *args, env=env)
            again = second.stdout + second.stderr
            assert second.returncode == 0, again[-5000:]

        # each step ran, and said what it did in a line of its own
        for step in STEPS:
            assert f"-m tools.{step} --cloud aws --env-file {env_file}" in text
        lines = text.splitlines()
        for result in (
            f"ok      {env_file} is valid for aws",
            "ok      3 image(s) ready, 3 built",
            "ok      secrets in namespace",
            f"ok      certificate: certificate for {base} and *.{base} ISSUED",
            "ok      database bucket: s3://cmbsim-db-",
            f"ok      helm install cmbcluster in {namespace}: revision 1 deployed",
            f"ok      Ingress {namespace}/cmbcluster address: ",
            "ok      user storage: bucket ",
        ):
            assert sum(line.startswith(result) for line in lines) == 1, result
        assert f"{ECR_HOST}/{CLUSTER}-backend" in images.read_text()  # pushed under ECR's host name
        for image in ("backend", "frontend"):  # and run by that name: the kubelet pulled it through containerd's mirror
            assert f"image {image}: {ECR_HOST}/{CLUSTER}-{image}@sha256:" in text
        assert any(h == ECR_HOST and m == "PUT" and "/manifests/" in p for h, m, p in network_edge.proxy.seen)
        assert "revision 1 deployed" in text and f"in {namespace} (aws): healthy" in text, text[-3000:]
        # the release is the deploy role's: the simulated EKS authenticated its session through the access entry
        user = f"{CLUSTER}-deploy-{namespace}:{SESSION}"
        authenticated = [line.split(" as ", 1)[1] for line in sim.hooks.log if line.startswith("authenticated ")]
        assert any(name.startswith(f"{user} ") for name in authenticated), authenticated[-5:]
        assert set(pods) == {"backend", "frontend"}
        # the storage check mounted the smoke bucket through the stand-in s3.csi.aws.com and passed
        smoke_bucket = f"{CLUSTER}-user-smoke-{ACCOUNT}"
        assert f"bucket {smoke_bucket}" in text and stand_in_csi.bucket(smoke_bucket).is_dir()
        # DNS: the ALIAS records at the ALB in the zone; the certificate ISSUED in ACM for the names
        records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        aliases = {
            r["Name"].rstrip(".").replace("\\052", "*"): r["AliasTarget"]["DNSName"]
            for r in records
            if "AliasTarget" in r
        }
        assert set(aliases) == {base, f"api.{base}", f"*.{base}"}, aliases
        assert all(target.rstrip(".").lower() == alb.address.lower() for target in aliases.values())
        acm = boto3.client("acm", endpoint_url=moto_url, region_name=REGION, **MOTO_KEYS)
        issued = [c for c in acm.list_certificates()["CertificateSummaryList"] if c["DomainName"] == base]
        assert len(issued) == 1 and issued[0]["Status"] == "ISSUED", issued

        # the second run converges
        assert "3 image(s) ready, 0 built" in again and "0 created, 0 updated, 0 rotated" in again, again[-3000:]
        assert "release cmbcluster: unchanged (revision 1), nothing to upgrade" in again, again[-3000:]
        assert running_pods(cluster, namespace) == pods  # nothing restarted
        after = client.CoreV1Api(api(cluster)).read_namespaced_secret("cmbcluster-backend-secrets", namespace)
        assert after.data == secrets.data
    finally:
        # the release's cluster-scoped objects (ClusterRole, binding, admission policy) go with it, as the admin
        subprocess.run(
            [helm_binary(), "uninstall", "cmbcluster", "-n", namespace, "--kubeconfig", cluster, "--wait"],
            capture_output=True,
            check=False,
            timeout=300,
        )
        remove_rbac(sim, tmp_path)
        delete_namespace(cluster, namespace)
