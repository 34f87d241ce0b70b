"""One test per known defect of the original scripts (CMBCLUSTER_FACTS.md, "Known defects"),
each written so that the defect, put back into the chart, makes it fail."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.chart_helpers import (
    AUTHS,
    CHART,
    CLOUDS,
    RELEASE,
    helm_bin,
    render,
    settings_for,
    shim,
    shim_values,
    without_checkov,
    write_values,
)
from tools.cloud import BACKEND_SERVICE_ACCOUNT, USER_SERVICE_ACCOUNT
from tools.kube_rights import CLUSTER_SCOPED
from tools.settings import IMAGES

HELMS = ("helm4", "helm3")
WI = "iam.gke.io/gcp-service-account"
IRSA = "eks.amazonaws.com/role-arn"


@pytest.mark.parametrize("helm", HELMS)
def test_defect_1_project_id_is_read_from_global_gcp(helm: str) -> None:
    s = settings_for("gcp")
    r = render(helm, shim_values("gcp"))
    assert r.rc == 0, r.err
    bucket = f"{s['PROJECT_ID']}-{s.cluster_name}-db"
    assert r.env("backend")["DATABASE_BUCKET"] == bucket
    assert r.env("backend")["PROJECT_ID"] == s["PROJECT_ID"]
    litestream = r.one("ConfigMap", "cmbcluster-litestream")["data"]["litestream.yml"]
    assert f"gs://{bucket}/litestream/cmbcluster.db" in litestream
    # the old spelling is refused instead of silently ignored
    values = shim_values("gcp")
    values["global"]["projectId"] = "placeholder-project"
    r = render(helm, values)
    assert r.rc != 0 and "additional properties 'projectId' not allowed" in r.err


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("auth", ["google", "both"])
def test_defect_2_gcp_frontend_gets_the_google_client_id(helm: str, auth: str) -> None:
    s = settings_for("gcp", auth)
    r = render(helm, shim_values("gcp", auth))
    env = r.env("frontend")
    assert env["GOOGLE_CLIENT_ID"] == s["GOOGLE_CLIENT_ID"] == r.env("backend")["GOOGLE_CLIENT_ID"]
    assert env["GOOGLE_CLIENT_SECRET"] == ("secret", "cmbcluster-frontend-secrets", "GOOGLE_CLIENT_SECRET")


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_defect_3_the_chart_never_makes_or_changes_secrets(helm: str, cloud: str) -> None:
    """Secrets (FILE_ENCRYPTION_KEY above all) are made once by make_secrets; the chart renders
    no Secret, generates nothing random and looks nothing up, so an upgrade cannot replace one."""
    for template in (CHART / "templates").iterdir():
        text = template.read_text()
        for forbidden in ("randAlpha", "randAscii", "randNumeric", "randBytes", "genPrivateKey", "uuidv4", "lookup"):
            assert forbidden not in text, (template.name, forbidden)
    values = write_values(shim_values(cloud, "both"))
    cmd = [helm_bin(helm), "template", RELEASE, str(CHART), "-n", "cmbcluster", "-f", values]
    first, second = (subprocess.run(cmd, capture_output=True, text=True, check=True).stdout for _ in range(2))
    assert first == second  # deterministic: nothing regenerated per render
    r = render(helm, shim_values(cloud, "both"))
    assert not r.all("Secret")
    assert "FILE_ENCRYPTION_KEY" not in json.dumps(r.docs)  # only ever inside the Secret


HOST_LITERAL = re.compile(
    r"(?<![A-Za-z0-9_.-])((?:[a-z0-9-]+\.)+(?:com|org|net|io|dev|app|me|edu|cloud|info|local|test|site))(?![A-Za-z0-9_/-])"
)
NOT_HOSTS = {"networking.k8s.io", "rbac.authorization.k8s.io", "s3.csi.aws.com", "gcsfuse.csi.storage.gke.io"}


def test_defect_4_no_host_is_hard_coded_in_the_chart() -> None:
    found = {}
    for path in [*(CHART / "templates").iterdir(), CHART / "values.yaml"]:
        for host in HOST_LITERAL.findall(path.read_text()):
            if host not in NOT_HOSTS:
                found.setdefault(path.name, []).append(host)
    assert not found
    # the scan does find a host literal when there is one
    assert HOST_LITERAL.findall("host: cmbcluster.dev-box.example.org\n") == ["cmbcluster.dev-box.example.org"]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_defect_4_every_host_comes_from_base_domain(helm: str, cloud: str) -> None:
    domain = "zz-check.example.net"
    r = render(helm, shim_values(cloud, BASE_DOMAIN=domain))
    assert r.rc == 0, r.err
    ing = r.one("Ingress")
    hosts = [rule["host"] for rule in ing["spec"]["rules"]] + ing["spec"]["tls"][0]["hosts"]
    assert set(hosts) == {domain, f"api.{domain}"}
    assert "cmb.example.org" not in r.out  # the other tests' domain
    assert r.env("frontend")["NEXTAUTH_URL"] == f"https://{domain}"
    assert r.env("backend")["API_URL"] == f"https://api.{domain}"
    assert r.configmap_data()["USER_INGRESS_DOMAIN"] == domain


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_defect_5_user_service_account_has_its_own_clouds_binding(helm: str, cloud: str) -> None:
    r = render(helm, shim_values(cloud))
    user = without_checkov(r.one("ServiceAccount", USER_SERVICE_ACCOUNT)["metadata"].get("annotations"))
    backend = without_checkov(r.one("ServiceAccount", BACKEND_SERVICE_ACCOUNT)["metadata"].get("annotations"))
    expected_key = {"gcp": {WI}, "aws": {IRSA}, "local": set()}[cloud]
    assert set(user) == set(backend) == expected_key
    if cloud == "aws":
        assert user[IRSA] == settings_for("aws")["AWS_USER_IRSA_ROLE_ARN"]
    if cloud == "gcp":
        assert user[WI] == settings_for("gcp")["GCP_USER_SERVICE_ACCOUNT_EMAIL"]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_defect_6_everything_lives_in_the_release_namespace(helm: str, cloud: str) -> None:
    ns = "science"
    r = render(helm, shim_values(cloud), namespace=ns)
    assert r.rc == 0, r.err
    for doc in r.docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == ns, doc["kind"]
    assert r.env("backend")["NAMESPACE"] == ns
    assert r.one("RoleBinding")["subjects"][0]["namespace"] == ns
    if cloud == "aws":
        binding = r.one("ClusterRoleBinding")
        assert binding["subjects"][0]["namespace"] == ns and ns in binding["metadata"]["name"]
    assert "namespace: default" not in r.out


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_defect_6_notes_name_the_iam_subjects_in_the_release_namespace(cloud: str) -> None:
    """The IRSA trust policy (Workload Identity binding) must name the namespace actually used."""
    values = write_values(shim_values(cloud))
    cmd = [helm_bin("helm4"), "install", RELEASE, str(CHART), "-n", "science", "-f", values, "--dry-run=client"]
    env = {**os.environ, "KUBECONFIG": os.devnull}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    for sa in (BACKEND_SERVICE_ACCOUNT, USER_SERVICE_ACCOUNT):
        if cloud == "aws":
            assert f"system:serviceaccount:science:{sa}" in notes
        else:
            assert f"svc.id.goog[science/{sa}]" in notes
    assert "system:serviceaccount:default:" not in notes and "[default/" not in notes


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("auth", AUTHS)
def test_defect_7_mountpoint_s3_is_never_an_inline_volume(helm: str, auth: str) -> None:
    r = render(helm, shim_values("aws", auth))
    for spec in r.pod_specs():
        assert not [v for v in spec["volumes"] if "csi" in v or "ephemeral" in v]
    assert not r.all("PersistentVolume")  # the database is on a block volume, not a bucket
    data = r.configmap_data()
    assert data["USER_POD_VOLUME_MODE"] == "csi-static-pv"
    assert json.loads(data["USER_POD_VOLUME_ATTRIBUTES"]) == {"authenticationSource": "pod"}


def _variants(helm: str):
    for cloud in CLOUDS:
        for auth in AUTHS:
            yield f"{cloud}-{auth}", render(helm, shim_values(cloud, auth))
    no_pvc = shim_values("local")
    no_pvc["database"]["persistence"] = False
    yield "local-emptydir", render(helm, no_pvc)


@pytest.mark.parametrize("helm", HELMS)
def test_defect_8_every_mount_names_an_existing_volume(helm: str) -> None:
    checked = 0
    for name, r in _variants(helm):
        assert r.rc == 0, (name, r.err)
        for spec in r.pod_specs():
            volumes = [v["name"] for v in spec.get("volumes", [])]
            assert len(volumes) == len(set(volumes)), name
            mounted = set()
            for c in spec["containers"] + spec.get("initContainers", []):
                for m in c.get("volumeMounts", []):
                    assert m["name"] in volumes, (name, c["name"], m["name"])
                    mounted.add(m["name"])
                    checked += 1
            assert mounted == set(volumes), (name, set(volumes) - mounted)  # no orphan volume
            claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
            assert claims <= {c["metadata"]["name"] for c in r.all("PersistentVolumeClaim")}, name
    assert checked > 30


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("auth", AUTHS)
def test_defect_9_alb_ingress_has_no_nginx_or_cert_manager_annotations(helm: str, auth: str) -> None:
    r = render(helm, shim_values("aws", auth))
    ing = r.one("Ingress")
    assert ing["spec"]["ingressClassName"] == "alb"
    user = json.loads(r.configmap_data()["USER_INGRESS_ANNOTATIONS"])
    for found in (without_checkov(ing["metadata"]["annotations"]), user):
        assert found and all(k.startswith("alb.ingress.kubernetes.io/") for k in found), found
    assert "nginx" not in r.out and "cert-manager" not in r.out
    assert not r.all("Issuer")
    assert "secretName" not in ing["spec"]["tls"][0]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_defect_10_every_image_has_a_repository(helm: str, cloud: str) -> None:
    c = shim(cloud)
    repositories = {i.name: i.repository for i in c.images()}
    assert set(repositories) == set(IMAGES) == {"backend", "frontend", "user-env"}
    registry = c.registry()
    r = render(helm, shim_values(cloud))
    used = {
        "backend": r.container("backend")["image"],
        "frontend": r.container("frontend")["image"],
        "user-env": r.configmap_data()["USER_POD_IMAGE"],
    }
    for name, ref in used.items():
        assert ref.rsplit(":", 1)[0] == repositories[name], name
        assert ref.startswith(f"{registry}/"), name
    values = shim_values(cloud)
    values["global"]["registry"] = ""
    r = render(helm, values)
    assert r.rc != 0 and "/global/registry" in r.err


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("version", "ok"),
    [("1.28.9", False), ("v1.28.15-gke.1020000", False), ("1.29.0", True), ("v1.29.1-gke.1589018", True)],
)
def test_defect_11_gcs_fuse_in_init_containers_needs_gke_1_29(helm: str, version: str, ok: bool) -> None:
    r = render(helm, shim_values("gcp"), args=("--kube-version", version))
    assert (r.rc == 0) is ok, r.err
    if not ok:
        assert "needs GKE 1.29 or later" in r.err
    # other clouds are not held to it (AWS needs 1.30 for its volume policy: test_chart_volume_policy.py)
    assert render(helm, shim_values("local"), args=("--kube-version", version)).rc == 0
