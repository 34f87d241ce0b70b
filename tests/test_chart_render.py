"""`helm template` with what the deploy tools pass (Cloud.chart_values()) on every cloud and auth
choice, with Helm 3 and Helm 4: env vars, storage, identities, ingress flavour, security."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.chart_helpers import (
    AUTHS,
    CLOUDS,
    DIGEST,
    NAMESPACE,
    RELEASE,
    Render,
    render,
    settings_for,
    shim,
    shim_values,
    without_checkov,
)
from tools.cloud import BACKEND_SECRET, BACKEND_SERVICE_ACCOUNT, FRONTEND_SECRET, USER_SERVICE_ACCOUNT
from tools.kube_rights import CLUSTER_SCOPED

HELMS = ("helm4", "helm3")
MATRIX = [(h, c, a) for h in HELMS for c in CLOUDS for a in AUTHS]
IDS = [f"{h}-{c}-{a}" for h, c, a in MATRIX]


def rendered(helm: str, cloud: str, auth: str) -> Render:
    r = render(helm, shim_values(cloud, auth))
    assert r.rc == 0, r.err
    return r


@pytest.fixture(params=MATRIX, ids=IDS)
def case(request: pytest.FixtureRequest) -> tuple[str, str, str, Render]:
    helm, cloud, auth = request.param
    return helm, cloud, auth, rendered(helm, cloud, auth)


def test_helm3_and_helm4_are_what_they_claim(case) -> None:
    import subprocess

    from tests.chart_helpers import helm_bin

    helm = case[0]
    out = subprocess.run([helm_bin(helm), "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("v4." if helm == "helm4" else "v3."), out


def test_backend_env_is_exactly_the_seed_and_facts_tables(case) -> None:
    _, cloud, auth, r = case
    s = settings_for(cloud, auth)
    c = shim(cloud, auth)
    expected = {
        "CLOUD_PROVIDER": cloud,
        "CLUSTER_NAME": s.cluster_name,
        "NAMESPACE": NAMESPACE,
        "BASE_DOMAIN": s["BASE_DOMAIN"],
        "API_URL": s["API_URL"],
        "FRONTEND_URL": s["FRONTEND_URL"],
        "REGISTRY_URL": c.registry(),
        "AUTH_PROVIDER": s["AUTH_PROVIDER"],
        "MAX_INACTIVE_HOURS": s["MAX_INACTIVE_HOURS"],
        "MAX_USER_PODS": s["MAX_USER_PODS"],
        "USER_POD_SA_NAME": USER_SERVICE_ACCOUNT,
        "DATABASE_BUCKET": c.database_bucket,
    }
    if cloud == "gcp":
        expected |= {"PROJECT_ID": s["PROJECT_ID"], "REGION": s["REGION"]}
    if cloud == "aws":
        expected |= {
            "AWS_ACCOUNT_ID": s["AWS_ACCOUNT_ID"],
            "AWS_REGION": s["AWS_REGION"],
            "EKS_CLUSTER_NAME": s.cluster_name,
            "S3_DATABASE_BUCKET": c.database_bucket,
            "S3_USER_BUCKET_PREFIX": f"{s.cluster_name}-user",
        }
    if auth in ("google", "both"):
        expected["GOOGLE_CLIENT_ID"] = s["GOOGLE_CLIENT_ID"]
    if auth in ("cognito", "both"):
        expected |= {k: s[k] for k in ("COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_ISSUER")}
    assert r.env("backend") == expected


def test_backend_secrets_and_pod_manager_settings_come_through_env_from(case) -> None:
    r = case[3]
    env_from = r.container("backend")["envFrom"]
    assert {"secretRef": {"name": BACKEND_SECRET}} in env_from
    assert {"configMapRef": {"name": f"{RELEASE}-user-environment"}} in env_from
    # optional: true would start the backend without its keys
    assert all(not ref.get("optional") for item in env_from for ref in item.values())


def test_frontend_env_has_each_configured_provider_and_only_those_secrets(case) -> None:
    _, cloud, auth, r = case
    s = settings_for(cloud, auth)
    expected = {
        "PORT": "8501",
        "HOSTNAME": "0.0.0.0",
        "NEXTAUTH_URL": s["FRONTEND_URL"],
        "NEXT_PUBLIC_API_URL": s["API_URL"],
        "NEXTAUTH_SECRET": ("secret", FRONTEND_SECRET, "NEXTAUTH_SECRET"),
    }
    if auth in ("google", "both"):
        expected["GOOGLE_CLIENT_ID"] = s["GOOGLE_CLIENT_ID"]
        expected["GOOGLE_CLIENT_SECRET"] = ("secret", FRONTEND_SECRET, "GOOGLE_CLIENT_SECRET")
    if auth in ("cognito", "both"):
        expected["COGNITO_CLIENT_ID"] = s["COGNITO_CLIENT_ID"]
        expected["COGNITO_ISSUER"] = s["COGNITO_ISSUER"]
        expected["COGNITO_CLIENT_SECRET"] = ("secret", FRONTEND_SECRET, "COGNITO_CLIENT_SECRET")
    assert r.env("frontend") == expected
    assert "envFrom" not in r.container("frontend")  # a provider's secret only when that provider is set


def test_no_secret_value_or_secret_object_in_the_chart_output(case) -> None:
    from tests.envfiles import good_env, secret_values

    _, cloud, auth, r = case
    assert not r.all("Secret")
    for value in secret_values(good_env(cloud, auth)):
        assert value not in r.out
    for component in ("backend", "frontend"):
        for name, value in r.env(component).items():
            if name.endswith(("SECRET", "SECRET_KEY", "ENCRYPTION_KEY")):
                assert isinstance(value, tuple) and value[0] == "secret", f"{component} {name} is a literal"


def test_deployments_ports_probes_and_replicas(case) -> None:
    r = case[3]
    backend = r.deployment("backend")
    assert backend["spec"]["replicas"] == 1
    assert backend["spec"]["strategy"] == {"type": "Recreate"}
    for component, port, path, allowance in (("backend", 8000, "/health", 180), ("frontend", 8501, "/api/health", 120)):
        c = r.container(component)
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"] == {"path": path, "port": "http"}, (component, probe)
        # probed each second while starting, so a new pod is Ready about a second after it listens, with the
        # same time to start in all (seconds)
        startup = c["startupProbe"]
        assert startup["periodSeconds"] == 1 and startup["periodSeconds"] * startup["failureThreshold"] == allowance
        svc = r.one("Service", f"{RELEASE}-{component}")
        assert svc["spec"]["ports"][0]["port"] == port
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
        assert (
            svc["spec"]["selector"].items() <= r.deployment(component)["spec"]["template"]["metadata"]["labels"].items()
        )


def test_images_are_the_shims_repositories(case) -> None:
    _, cloud, auth, r = case
    refs = {i.name: f"{i.repository}:latest" for i in shim(cloud, auth).images()}
    assert r.container("backend")["image"] == refs["backend"]
    assert r.container("frontend")["image"] == refs["frontend"]
    assert r.configmap_data()["USER_POD_IMAGE"] == refs["user-env"]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", CLOUDS)
def test_digests_pin_every_image(helm: str, cloud: str) -> None:
    r = render(helm, shim_values(cloud, digests=True))
    assert r.rc == 0, r.err
    repos = {i.name: i.repository for i in shim(cloud).images()}
    assert r.container("backend")["image"] == f"{repos['backend']}@{DIGEST}"
    assert r.container("frontend")["image"] == f"{repos['frontend']}@{DIGEST}"
    assert r.configmap_data()["USER_POD_IMAGE"] == f"{repos['user-env']}@{DIGEST}"


def test_images_default_to_registry_and_cluster_name(case) -> None:
    """A person running helm directly gives only global.registry: same names as the shim's."""
    helm, cloud, auth, _ = case
    values = shim_values(cloud, auth)
    for key in ("backend", "frontend", "userEnvironment"):
        values[key]["image"]["repository"] = ""
    r = render(helm, values)
    assert r.rc == 0, r.err
    refs = {i.name: f"{i.repository}:latest" for i in shim(cloud, auth).images()}
    assert r.container("backend")["image"] == refs["backend"]
    assert r.configmap_data()["USER_POD_IMAGE"] == refs["user-env"]


def test_database_lives_on_a_read_write_once_claim_never_on_a_bucket(case) -> None:
    """Mountpoint for S3 cannot rewrite a file and GCS FUSE cannot lock one: on every cloud the
    SQLite file sits on a ReadWriteOnce claim of the cluster's block storage, and no pod of the
    release mounts a bucket (user pods get theirs from the backend, not from the chart)."""
    _, cloud, _auth, r = case
    spec = r.deployment("backend")["spec"]["template"]
    mounts = {m["mountPath"]: m["name"] for m in r.container("backend")["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["spec"]["volumes"]}
    claim = r.one("PersistentVolumeClaim")
    assert volumes[mounts["/app/data"]] == {
        "name": "database",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    assert claim["spec"]["resources"]["requests"]["storage"] == ("1Gi" if cloud == "local" else "10Gi")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not r.all("PersistentVolume")
    for pod in r.pod_specs():
        assert not [v for v in pod["volumes"] if "csi" in v or "ephemeral" in v]
    assert "gke-gcsfuse/volumes" not in (spec["metadata"].get("annotations") or {})
    assert r.deployment("backend")["spec"]["strategy"] == {"type": "Recreate"}


def test_litestream_backs_the_database_up_to_the_database_bucket(case) -> None:
    """On gcp and aws a native sidecar streams the database to the database bucket and an init
    container restores it onto an empty volume; a local cluster has no bucket, so no replica."""
    _, cloud, auth, r = case
    c = shim(cloud, auth)
    pod = r.deployment("backend")["spec"]["template"]["spec"]
    init = {i["name"]: i for i in pod.get("initContainers", [])}
    if cloud == "local":
        assert not init and not [m for m in r.all("ConfigMap") if m["metadata"]["name"].endswith("-litestream")]
        return
    replica = c.database_replica
    assert replica == f"{'s3' if cloud == 'aws' else 'gs'}://{c.database_bucket}/litestream/cmbcluster.db"
    config = yaml.safe_load(r.one("ConfigMap", "cmbcluster-litestream")["data"]["litestream.yml"])
    expected = {"url": replica, **({"region": "us-east-1"} if cloud == "aws" else {})}
    assert config == {"dbs": [{"path": "/app/data/cmbcluster.db", "replica": expected}]}
    assert list(init) == ["restore-database", "litestream"]  # restore first, then the sidecar
    restore, sidecar = init["restore-database"], init["litestream"]
    assert restore["args"][0] == "restore" and "-if-db-not-exists" in restore["args"]
    assert "-if-replica-exists" in restore["args"] and "restartPolicy" not in restore
    assert sidecar["args"][:1] == ["replicate"] and sidecar["restartPolicy"] == "Always"
    for container in (restore, sidecar):
        assert (
            container["image"] == "docker.io/litestream/litestream:0.5.17" and container["imagePullPolicy"] == "Always"
        )
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["runAsNonRoot"] is True
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/app/data"] == "database"
    # the backend's own identity (IRSA / Workload Identity) is the replica's credentials: no secret
    assert pod["serviceAccountName"] == "cmbcluster-ksa"
    assert "Secret" not in json.dumps([restore.get("env"), sidecar.get("env"), sidecar.get("envFrom")])


@pytest.mark.parametrize("helm", HELMS)
def test_local_without_persistence_uses_an_empty_dir(helm: str) -> None:
    values = shim_values("local")
    values["database"]["persistence"] = False
    r = render(helm, values)
    assert r.rc == 0, r.err
    volumes = {v["name"]: v for v in r.deployment("backend")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["database"] == {"name": "database", "emptyDir": {}}
    assert not r.all("PersistentVolumeClaim")


@pytest.mark.parametrize("helm", HELMS)
def test_a_local_cluster_backs_up_to_a_claim_of_its_own_when_asked(helm: str) -> None:
    values = shim_values("local")
    values["database"]["backup"] = {"url": "file:///backup/cmbcluster.db"}
    missing = render(helm, values)
    assert missing.rc != 0 and "database.backup.claimName is empty: name the claim mounted at /backup" in missing.err
    values["database"]["backup"]["claimName"] = "db-backup"
    r = render(helm, values)
    assert r.rc == 0, r.err
    config = yaml.safe_load(r.one("ConfigMap", "cmbcluster-litestream")["data"]["litestream.yml"])
    assert config["dbs"][0]["replica"] == {"url": "file:///backup/cmbcluster.db"}
    pod = r.deployment("backend")["spec"]["template"]["spec"]
    assert {"name": "backup", "persistentVolumeClaim": {"claimName": "db-backup"}} in pod["volumes"]
    for container in pod["initContainers"]:
        assert {"name": "backup", "mountPath": "/backup"} in container["volumeMounts"]
    assert not [m for m in r.container("backend")["volumeMounts"] if m["name"] == "backup"]  # the app never sees it


@pytest.mark.parametrize("helm", HELMS)
def test_a_local_cluster_backs_up_to_an_s3_compatible_service_when_asked(helm: str) -> None:
    values = shim_values("local")
    values["database"].setdefault("backup", {}).update(
        url="s3://backups/cmb/cmbcluster.db", endpoint="http://minio.minio:9000"
    )
    r = render(helm, values)
    assert r.rc == 0, r.err
    config = yaml.safe_load(r.one("ConfigMap", "cmbcluster-litestream")["data"]["litestream.yml"])
    assert config["dbs"][0]["replica"] == {
        "url": "s3://backups/cmb/cmbcluster.db",
        "region": "us-east-1",
        "endpoint": "http://minio.minio:9000",
        "force-path-style": True,
    }
    values["database"]["backup"]["url"] = "ftp://backups/cmbcluster.db"
    bad = render(helm, values)
    assert bad.rc != 0 and "/database/backup/url" in bad.err


def test_service_accounts_carry_the_shims_iam_annotations(case) -> None:
    _, cloud, auth, r = case
    c = shim(cloud, auth)
    backend = r.one("ServiceAccount", BACKEND_SERVICE_ACCOUNT)
    user = r.one("ServiceAccount", USER_SERVICE_ACCOUNT)
    assert without_checkov(backend["metadata"].get("annotations")) == c.service_account_annotations("backend")
    assert without_checkov(user["metadata"].get("annotations")) == c.service_account_annotations("user")
    assert r.deployment("backend")["spec"]["template"]["spec"]["serviceAccountName"] == BACKEND_SERVICE_ACCOUNT
    frontend_pod = r.deployment("frontend")["spec"]["template"]["spec"]
    assert frontend_pod["serviceAccountName"] not in (BACKEND_SERVICE_ACCOUNT, USER_SERVICE_ACCOUNT)
    assert frontend_pod["automountServiceAccountToken"] is False
    assert user["automountServiceAccountToken"] is False


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("cloud", ["gcp", "aws"])
def test_separate_user_identity(helm: str, cloud: str) -> None:
    overrides = (
        {"GCP_USER_SERVICE_ACCOUNT_EMAIL": "users@cmb-project.iam.gserviceaccount.com"}
        if cloud == "gcp"
        else {"AWS_USER_IRSA_ROLE_ARN": "arn:aws:iam::123456789012:role/cmb-users"}
    )
    r = render(helm, shim_values(cloud, **overrides))
    assert r.rc == 0, r.err
    c = shim(cloud, **overrides)
    user = without_checkov(r.one("ServiceAccount", USER_SERVICE_ACCOUNT)["metadata"]["annotations"])
    backend = without_checkov(r.one("ServiceAccount", BACKEND_SERVICE_ACCOUNT)["metadata"]["annotations"])
    assert user == c.service_account_annotations("user") != backend


def test_rbac_is_namespaced_and_exactly_what_user_environments_need(case) -> None:
    _, cloud, _, r = case
    cluster_wide = [d for d in r.docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    if cloud != "aws":
        assert not cluster_wide
    else:  # user PersistentVolumes on EKS, and nothing else (proven on the real cluster too)
        cluster_role = r.one("ClusterRole")
        assert cluster_role["rules"] == [
            {
                "apiGroups": [""],
                "resources": ["persistentvolumes"],
                "verbs": ["get", "list", "watch", "create", "delete"],
            }
        ]
        assert NAMESPACE in cluster_role["metadata"]["name"]  # one per release namespace
        assert r.one("ClusterRoleBinding")["subjects"] == [
            {"kind": "ServiceAccount", "name": BACKEND_SERVICE_ACCOUNT, "namespace": NAMESPACE}
        ]
    role = r.one("Role")
    granted = {
        (g, res): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]
    }
    assert set(granted) == {
        ("", "pods"),
        ("", "services"),
        ("", "persistentvolumeclaims"),
        ("networking.k8s.io", "ingresses"),
    }
    assert all(
        "*" not in verbs and verbs <= {"get", "list", "watch", "create", "update", "patch", "delete"}
        for verbs in granted.values()
    )
    binding = r.one("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": BACKEND_SERVICE_ACCOUNT, "namespace": NAMESPACE}]


def test_user_environment_settings_need_no_cloud_knowledge(case) -> None:
    _, cloud, auth, r = case
    c = shim(cloud, auth)
    data = r.configmap_data()
    assert json.loads(data["USER_POD_ANNOTATIONS"]) == c.user_pod_annotations()
    assert data["USER_POD_CSI_DRIVER"] == c.csi_driver
    assert data["USER_POD_PORT"] == "8888"
    assert data["USER_BUCKET_PREFIX"] == c.user_bucket_prefix
    assert json.loads(data["USER_POD_LABELS"])["component"] == "user-pod"
    assert data["USER_INGRESS_DOMAIN"] == settings_for(cloud, auth)["BASE_DOMAIN"]
    mode = {"gcp": "csi-inline", "aws": "csi-static-pv", "local": "none"}[cloud]
    assert data["USER_POD_VOLUME_MODE"] == mode
    attributes = json.loads(data["USER_POD_VOLUME_ATTRIBUTES"])
    options = json.loads(data["USER_POD_MOUNT_OPTIONS"])
    if cloud == "gcp":
        assert attributes == {"mountOptions": ",".join(c.mount_options)} and options == []
    elif cloud == "aws":
        assert attributes == {"authenticationSource": "pod"}
        assert options == c.storage_values()["aws"]["mountOptions"]
        assert "allow-overwrite" in options  # re-saving a file: Mountpoint refuses overwrites without it
    else:
        assert attributes == {} and options == []
    # the backend pod restarts when these settings change
    template_annotations = r.deployment("backend")["spec"]["template"]["metadata"]["annotations"]
    assert len(template_annotations["checksum/user-environment"]) == 64


def test_ingress_hosts_tls_and_flavour(case) -> None:
    _, cloud, auth, r = case
    s = settings_for(cloud, auth)
    domain = s["BASE_DOMAIN"]
    ing = r.one("Ingress")
    rules = {rule["host"]: rule["http"]["paths"][0]["backend"]["service"]["name"] for rule in ing["spec"]["rules"]}
    assert rules == {domain: f"{RELEASE}-frontend", f"api.{domain}": f"{RELEASE}-backend"}
    (tls,) = ing["spec"]["tls"]
    assert tls["hosts"] == [domain, f"api.{domain}"]
    annotations = without_checkov(ing["metadata"]["annotations"])
    user_annotations = json.loads(r.configmap_data()["USER_INGRESS_ANNOTATIONS"])
    if cloud == "aws":
        assert ing["spec"]["ingressClassName"] == "alb"
        assert "secretName" not in tls  # ACM, not a Secret
        assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
        assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
        assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
        assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
        # user environments join the same ALB
        assert (
            user_annotations["alb.ingress.kubernetes.io/group.name"]
            == annotations["alb.ingress.kubernetes.io/group.name"]
        )
        assert not r.all("Issuer")
        for svc, path in (("backend", "/health"), ("frontend", "/api/health")):
            svc_annotations = r.one("Service", f"{RELEASE}-{svc}")["metadata"]["annotations"]
            assert svc_annotations["alb.ingress.kubernetes.io/healthcheck-path"] == path
    else:
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert tls["secretName"] == f"{RELEASE}-tls"
        assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
        assert not [k for k in annotations if k.startswith("alb.")]
    if cloud == "gcp":
        issuer = r.one("Issuer")
        assert annotations["cert-manager.io/issuer"] == issuer["metadata"]["name"]
        assert user_annotations["cert-manager.io/issuer"] == issuer["metadata"]["name"]
        assert issuer["spec"]["acme"]["email"] == s["LETSENCRYPT_EMAIL"]
        assert issuer["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]
    if cloud == "local":  # no e-mail given: TLS from a Secret the operator makes
        assert not r.all("Issuer")
        assert not [k for k in annotations if k.startswith("cert-manager.io")]


@pytest.mark.parametrize("helm", HELMS)
def test_dns01_in_cloud_dns_is_a_cluster_issuer(helm: str) -> None:
    """Issue 18, defect 3: cert-manager lends its own credentials (Workload Identity) to ClusterIssuers only
    unless its controller runs with --issuer-ambient-credentials
    (https://cert-manager.io/docs/configuration/acme/dns01/google/); the namespaced Issuer got none."""
    r = render(helm, shim_values("gcp", DNS_ZONE="example.org"))
    assert r.rc == 0, r.err
    assert not r.all("Issuer")
    issuer = r.one("ClusterIssuer")
    name = f"{NAMESPACE}-{RELEASE}-letsencrypt"  # the name is the cluster's: the namespace is in it
    assert issuer["metadata"]["name"] == name and "namespace" not in issuer["metadata"]
    dns01, http01 = issuer["spec"]["acme"]["solvers"]
    assert dns01 == {"selector": {"dnsZones": ["cmb.example.org"]}, "dns01": {"cloudDNS": {"project": "cmb-project"}}}
    assert http01 == {"http01": {"ingress": {"ingressClassName": "nginx"}}}
    assert issuer["spec"]["acme"]["privateKeySecretRef"] == {"name": f"{name}-account"}
    user = json.loads(r.configmap_data()["USER_INGRESS_ANNOTATIONS"])
    for found in (r.one("Ingress")["metadata"]["annotations"], user):
        assert found["cert-manager.io/cluster-issuer"] == name
        assert "cert-manager.io/issuer" not in found


@pytest.mark.parametrize("helm", HELMS)
def test_gce_is_refused_with_the_fix(helm: str) -> None:
    """Issue 18, defect 5: GKE makes a load balancer per Ingress, so each user environment's Ingress got an
    address of its own while *.baseDomain pointed at the release's."""
    values = shim_values("gcp")
    values["ingress"]["className"] = "gce"
    r = render(helm, values)
    assert r.rc != 0
    assert "ingress.className gce makes a load balancer per Ingress" in r.err and "use nginx (ingress-nginx)" in r.err


@pytest.mark.parametrize("helm", HELMS)
def test_acm_certificate_arn_is_passed_to_the_alb(helm: str) -> None:
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/0123abcd-0000-4000-8000-0123456789ab"
    r = render(helm, shim_values("aws", AWS_CERTIFICATE_ARN=arn))
    assert r.rc == 0, r.err
    assert r.one("Ingress")["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"] == arn
    user = json.loads(r.configmap_data()["USER_INGRESS_ANNOTATIONS"])
    assert user["alb.ingress.kubernetes.io/certificate-arn"] == arn


def test_security_defaults(case) -> None:
    r = case[3]
    for spec in r.pod_specs():
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        mounted = set()
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc.get("privileged") is False
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= c["resources"][part].keys(), (c["name"], part)
            mounted |= {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounted  # writable scratch space on a read-only root
    assert "/app/.next/cache" in {m["mountPath"] for m in r.container("frontend")["volumeMounts"]}


def test_network_policies(case) -> None:
    _, cloud, _, r = case
    policies = {p["metadata"]["name"]: p["spec"] for p in r.all("NetworkPolicy")}
    assert set(policies) == {f"{RELEASE}-backend", f"{RELEASE}-frontend", f"{RELEASE}-user-pods"}
    frontend_labels = r.deployment("frontend")["spec"]["template"]["metadata"]["labels"]
    for name, port in (("backend", 8000), ("frontend", 8501), ("user-pods", 8888)):
        spec = policies[f"{RELEASE}-{name}"]
        egress = cloud == "aws" and name == "user-pods"
        assert spec["policyTypes"] == (["Ingress", "Egress"] if egress else ["Ingress"])
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
        pod_peers = [p for p in rule["from"] if set(p) == {"podSelector"}]
        controller = [p for p in rule["from"] if p not in pod_peers]
        if name == "backend":  # from the frontend, and nothing else inside the cluster
            (peer,) = pod_peers
            assert peer["podSelector"]["matchLabels"].items() <= frontend_labels.items()
        else:
            assert not pod_peers
        if cloud == "aws":
            assert controller and all(set(p) == {"ipBlock"} for p in controller)
        else:
            assert controller == [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
                }
            ]
    assert policies[f"{RELEASE}-user-pods"]["podSelector"] == {"matchLabels": {"component": "user-pod"}}
    # user code may not ask the EC2 instance metadata service for the node's credentials (IRSA needs
    # none); on GKE the metadata server is Workload Identity itself and must stay reachable
    if cloud == "aws":
        (rule,) = policies[f"{RELEASE}-user-pods"]["egress"]
        assert rule == {
            "to": [
                {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
                {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}},
            ]
        }
    else:
        assert "egress" not in policies[f"{RELEASE}-user-pods"]
    for name in ("backend", "frontend"):
        selector = policies[f"{RELEASE}-{name}"]["podSelector"]["matchLabels"]
        assert selector.items() <= r.deployment(name)["spec"]["template"]["metadata"]["labels"].items()


def test_standard_labels_and_namespace_on_everything(case) -> None:
    r = case[3]
    assert r.docs
    for doc in r.docs:
        labels = doc["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, (doc["kind"], key)
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"].startswith("cmbcluster-")
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


def test_no_scanner_notes_reach_the_cluster(case) -> None:
    """checkov's accepted findings live in .checkov.yaml, not on the objects users deploy."""
    r = case[3]
    assert r.docs
    for doc in r.docs:
        for meta in (doc["metadata"], ((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}):
            assert not any(k.startswith("checkov.io/") for k in meta.get("annotations") or {}), doc["kind"]


@pytest.mark.parametrize("helm", HELMS)
def test_network_policy_can_be_turned_off(helm: str) -> None:
    values = shim_values("local")
    values["networkPolicy"] = {"enabled": False}
    r = render(helm, values)
    assert r.rc == 0, r.err
    assert not r.all("NetworkPolicy")
