"""Cluster access in the cloud shim: EKS from moto's describe_cluster and a boto3-signed token,
GKE from the GKE REST API (faked with `responses`) and a google-auth token, local from the
user's kubeconfig. Every kubeconfig written is 0600 and gone when the block ends."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import stat
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml

from tools.cloud import AwsCloud, GcpCloud, LocalCloud
from tools.errors import ToolError
from tools.settings import load_settings

ACCOUNT = "123456789012"  # moto's account


@pytest.fixture(autouse=True)
def fresh_boto3_session(monkeypatch):
    """boto3's module-level session caches credentials: start without one, leave none behind."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def aws_settings(cluster: str, region: str = "us-east-1"):
    env = {"BASE_DOMAIN": "cmb.example.org", "AWS_ACCOUNT_ID": ACCOUNT, "AWS_REGION": region, "CLUSTER_NAME": cluster}
    return load_settings(cloud="aws", environ=env)


def gcp_settings(cluster: str):
    env = {
        "BASE_DOMAIN": "cmb.example.org",
        "PROJECT_ID": "cmb-project",
        "REGION": "us-central1",
        "CLUSTER_NAME": cluster,
        "LETSENCRYPT_EMAIL": "ops@example.org",
    }
    return load_settings(cloud="gcp", environ=env)


def assert_private_and_removed(path: str, seen: dict[str, object]) -> None:
    seen["path"] = path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


# -- EKS ---------------------------------------------------------------------------------------
@pytest.mark.testbed
def test_eks_kubeconfig_from_describe_cluster_and_signed_token(moto_url, bed_env, capfd, monkeypatch):
    import boto3

    name = f"cmb-{uuid.uuid4().hex[:8]}"
    eks = boto3.client("eks", region_name="eu-west-1")
    eks.create_cluster(name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={})
    described = eks.describe_cluster(name=name)["cluster"]

    seen: dict[str, object] = {}
    with AwsCloud(aws_settings(name, "eu-west-1")).cluster_access() as path:
        assert_private_and_removed(path, seen)
        config = yaml.safe_load(Path(path).read_text())

    assert not os.path.exists(str(seen["path"])) and not os.path.exists(os.path.dirname(str(seen["path"])))
    (cluster,) = config["clusters"]
    assert cluster["cluster"] == {
        "server": described["endpoint"],
        "certificate-authority-data": described["certificateAuthority"]["data"],
    }
    assert cluster["name"] == described["arn"] == config["current-context"]
    (user,) = config["users"]
    plugin = user["user"]["exec"]  # a token that renews itself: helm and the tools run this plugin
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert plugin["args"] == ["-m", "tools.eks_token", "--cluster", name, "--region", "eu-west-1"]
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # stdout stays the credential alone, even in CI
    shown = subprocess.run([plugin["command"], *plugin["args"]], capture_output=True, text=True, check=True)
    credential = json.loads(shown.stdout)
    assert credential["kind"] == "ExecCredential"
    expires = datetime.datetime.fromisoformat(credential["status"]["expirationTimestamp"].replace("Z", "+00:00"))
    lifetime = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 13 * 60 < lifetime <= 14 * 60
    token = credential["status"]["token"]
    assert token.startswith("k8s-aws-v1.") and not token.endswith("=")
    encoded = token.removeprefix("k8s-aws-v1.")
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert url.startswith(moto_url)  # boto3 followed AWS_ENDPOINT_URL, as it would the real STS
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-SignedHeaders"].split(";") == ["host", "x-k8s-aws-id"]
    assert query["X-Amz-Credential"].endswith("/eu-west-1/sts/aws4_request")
    assert len(query["X-Amz-Signature"]) == 64
    out, err = capfd.readouterr()
    assert token not in out + err


@pytest.mark.testbed
def test_eks_missing_cluster_is_one_clear_line(moto_url, bed_env):
    with (
        pytest.raises(ToolError, match=r"EKS cluster nope-cluster not found in us-east-1: check CLUSTER_NAME"),
        AwsCloud(aws_settings("nope-cluster")).cluster_access(),
    ):
        pass


@pytest.mark.testbed
def test_eks_without_credentials_is_one_clear_line(moto_url, bed_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ToolError, match="no AWS credentials"), AwsCloud(aws_settings("any")).cluster_access():
        pass


# -- GKE ---------------------------------------------------------------------------------------
@pytest.fixture
def service_account(tmp_path, monkeypatch) -> dict[str, str]:
    """A real service-account key file (fresh RSA key); google-auth signs its token request with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "cmb-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "deployer@cmb-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return info


GKE = "https://container.googleapis.com/v1/projects/cmb-project/locations/us-central1/clusters"


def test_gke_kubeconfig_from_the_gke_api_with_a_google_auth_token(service_account, capfd):
    import responses

    access_token = "ya29.test-" + uuid.uuid4().hex
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    with responses.RequestsMock() as fake:
        token_call = fake.post(
            "https://oauth2.googleapis.com/token",
            json={"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"},
        )
        cluster_call = fake.get(
            f"{GKE}/cmb-gke",
            json={
                "name": "cmb-gke",
                "endpoint": "34.1.2.3",
                "status": "RUNNING",
                "masterAuth": {"clusterCaCertificate": ca},
            },
        )
        seen: dict[str, object] = {}
        with GcpCloud(gcp_settings("cmb-gke")).cluster_access() as path:
            assert_private_and_removed(path, seen)
            config = yaml.safe_load(Path(path).read_text())
        assert token_call.call_count == 1 and cluster_call.call_count == 1
        assert cluster_call.calls[0].request.headers["Authorization"] == f"Bearer {access_token}"
        assert b"assertion=" in token_call.calls[0].request.body  # a JWT signed with the key file

    assert not os.path.exists(str(seen["path"]))
    (cluster,) = config["clusters"]
    assert cluster["cluster"] == {"server": "https://34.1.2.3", "certificate-authority-data": ca}
    assert config["current-context"] == "gke_cmb-project_us-central1_cmb-gke"
    assert config["users"][0]["user"] == {"token": access_token}
    out, err = capfd.readouterr()
    assert access_token not in out + err


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, r"GKE cluster cmb-gke not found in cmb-project/us-central1: check CLUSTER_NAME"),
        (403, r"may not read GKE cluster .*grant container.clusters.get"),
        (500, r"GKE API answered HTTP 500 .*: backend exploded"),
    ],
)
def test_gke_api_errors_are_one_clear_line(service_account, status, message):
    import responses

    with responses.RequestsMock() as fake:
        fake.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.x", "expires_in": 3600})
        fake.get(f"{GKE}/cmb-gke", status=status, json={"error": {"code": status, "message": "backend exploded"}})
        with pytest.raises(ToolError, match=message), GcpCloud(gcp_settings("cmb-gke")).cluster_access():
            pass


def test_gke_without_google_credentials_says_how_to_log_in(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ToolError, match="Google credentials"), GcpCloud(gcp_settings("cmb-gke")).cluster_access():
        pass


def test_gke_refused_credentials_are_one_line(service_account):
    import responses

    with responses.RequestsMock() as fake:
        fake.post("https://oauth2.googleapis.com/token", status=400, json={"error": "invalid_grant"})
        with (
            pytest.raises(ToolError, match="Google credentials were refused"),
            GcpCloud(gcp_settings("cmb-gke")).cluster_access(),
        ):
            pass


def test_kubeconfig_is_removed_when_the_block_fails(service_account):
    import responses

    with responses.RequestsMock() as fake:
        fake.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.y", "expires_in": 3600})
        fake.get(f"{GKE}/cmb-gke", json={"endpoint": "10.0.0.1", "masterAuth": {"clusterCaCertificate": ""}})
        seen: dict[str, object] = {}
        with pytest.raises(RuntimeError), GcpCloud(gcp_settings("cmb-gke")).cluster_access() as path:
            seen["path"] = path
            raise RuntimeError("the deploy failed half-way")
    assert not os.path.exists(os.path.dirname(str(seen["path"])))


# -- local -------------------------------------------------------------------------------------
def test_local_uses_the_users_kubeconfig_and_pins_the_context(tmp_path, monkeypatch):
    own = tmp_path / "config"
    own.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t0k3n-local"}}],
                "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}, {"name": "b", "context": {}}],
                "current-context": "a",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(own))
    plain = load_settings(cloud="local", environ={"BASE_DOMAIN": "cmb.example.org"})
    with LocalCloud(plain).cluster_access() as path:
        assert path == str(own)  # used as it is, nothing written
    pinned = load_settings(cloud="local", environ={"BASE_DOMAIN": "cmb.example.org", "KUBE_CONTEXT": "b"})
    with LocalCloud(pinned).cluster_access() as path:
        assert path != str(own) and yaml.safe_load(Path(path).read_text())["current-context"] == "b"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(path)
    assert yaml.safe_load(own.read_text())["current-context"] == "a"  # the user's file is untouched


@pytest.mark.testbed
def test_an_updating_eks_cluster_is_a_warning_not_a_refusal(moto_url, bed_env, monkeypatch, capfd):
    """EKS keeps its API up through an add-on or version upgrade (status UPDATING, often for long).
    moto has no way to put a cluster in that state, so EKS's DescribeCluster answer is staged at the
    network edge (AWS_ENDPOINT_URL_EKS); STS, which signs the token, is still moto."""
    cluster = {
        "name": "cmb-upgrading",
        "arn": f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/cmb-upgrading",
        "status": "UPDATING",
        "endpoint": "https://127.0.0.1:1",
        "certificateAuthority": {"data": ""},
    }

    def answer(path: str) -> tuple[int, dict, str]:
        return (200, {"cluster": cluster}, "") if path == "/clusters/cmb-upgrading" else (404, {}, "NotFound")

    with staged_eks(monkeypatch, answer):
        with AwsCloud(aws_settings("cmb-upgrading")).cluster_access() as path:
            assert yaml.safe_load(Path(path).read_text())["clusters"][0]["cluster"]["server"] == cluster["endpoint"]
        cluster["status"] = "FAILED"
        with (
            pytest.raises(ToolError, match="EKS cluster cmb-upgrading is FAILED: wait until it is ACTIVE"),
            AwsCloud(aws_settings("cmb-upgrading")).cluster_access(),
        ):
            pass
    assert "EKS cluster cmb-upgrading is UPDATING (an upgrade is under way); going on" in capfd.readouterr().out


@pytest.mark.testbed
def test_the_alb_sources_are_the_clusters_vpc_cidrs(moto_url, bed_env, capfd):
    """With no subnet tagged for load balancers, the NetworkPolicy admits the ALB from the VPC's own
    blocks, read at deploy time (not all of 10/8, 172.16/12 and 192.168/16), and says that this
    holds the pods too."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.43.0.0/16")
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    name = f"cmb-{uuid.uuid4().hex[:8]}"
    boto3.client("eks", region_name="us-east-1").create_cluster(
        name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={"subnetIds": [subnet]}
    )
    from tests.envfiles import good_env
    from tools.settings import load_settings

    cloud = AwsCloud(load_settings(cloud="aws", environ=good_env("aws", CLUSTER_NAME=name)))
    assert cloud.deploy_values() == {"networkPolicy": {"aws": {"loadBalancerCidrs": ["10.42.0.0/16", "10.43.0.0/16"]}}}
    from tools.helm import render

    values = {**cloud.chart_values(), **cloud.deploy_values()}
    (policy,) = [
        o for o in render("cmbcluster", "cmbcluster", values) if o and o["metadata"]["name"].endswith("-user-pods")
    ]
    sources = [peer["ipBlock"]["cidr"] for peer in policy["spec"]["ingress"][0]["from"]]
    assert sources == ["10.42.0.0/16", "10.43.0.0/16"]
    assert "is tagged kubernetes.io/role/elb" in capfd.readouterr().out


def test_the_alb_sources_are_its_tagged_subnets_not_the_pods(moto_url, bed_env):
    """The VPC CNI gives pods addresses of the node subnets: with the ALB in subnets tagged
    kubernetes.io/role/elb, only those are admitted, so user pods cannot reach the backend
    through the load balancer's rule."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    nodes = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.8.0/22")["Subnet"]["SubnetId"]
    public = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.50.{i}.0/24")["Subnet"]["SubnetId"] for i in (0, 1)]
    ec2.create_tags(Resources=public, Tags=[{"Key": "kubernetes.io/role/elb", "Value": "1"}])
    name = f"cmb-{uuid.uuid4().hex[:8]}"
    boto3.client("eks", region_name="us-east-1").create_cluster(
        name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={"subnetIds": [nodes]}
    )
    from tests.envfiles import good_env
    from tools.settings import load_settings

    cloud = AwsCloud(load_settings(cloud="aws", environ=good_env("aws", CLUSTER_NAME=name)))
    assert cloud.vpc_cidrs() == ["10.50.0.0/24", "10.50.1.0/24"]


@pytest.mark.testbed
def test_preflight_warns_when_eks_enforces_no_network_policy(moto_url, bed_env, monkeypatch):
    """The chart's NetworkPolicies only bite when the VPC CNI add-on's network policy agent is on.
    moto has no EKS add-ons, so DescribeAddon is staged at the network edge (AWS_ENDPOINT_URL_EKS)."""
    addon = {"addonName": "vpc-cni", "clusterName": "cmb-np", "status": "ACTIVE"}
    answers = [
        (404, {"message": "No addon: vpc-cni found in cluster: cmb-np"}, "ResourceNotFoundException"),
        (200, {"addon": {**addon, "configurationValues": '{"env": {"ENABLE_PREFIX_DELEGATION": "true"}}'}}, ""),
        (200, {"addon": {**addon, "configurationValues": '{"enableNetworkPolicy": "true"}'}}, ""),
    ]
    cloud = AwsCloud(aws_settings("cmb-np"))
    with staged_eks(monkeypatch, lambda path: answers.pop(0)):
        missing = cloud.network_policy_warning()
        off = cloud.network_policy_warning()
        on = cloud.network_policy_warning()
    assert missing is not None and missing.startswith("EKS cluster cmb-np has no managed vpc-cni add-on")
    assert off is not None and "does not enforce NetworkPolicy (vpc-cni enableNetworkPolicy is off)" in off
    assert """--configuration-values '{"enableNetworkPolicy":"true"}'""" in off
    assert on is None


@contextlib.contextmanager
def staged_eks(monkeypatch, answer):  # type: ignore[no-untyped-def]
    """EKS's API staged at the network edge (AWS_ENDPOINT_URL_EKS) where moto cannot stage a state:
    `answer(path)` gives (status, JSON body, error type or "")."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Eks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, error = answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if error:
                self.send_header("x-amzn-ErrorType", error)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Eks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", f"http://127.0.0.1:{server.server_port}")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
