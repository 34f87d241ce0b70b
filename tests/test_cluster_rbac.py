"""Preflight and RBAC on the real cluster: who may deploy, and what the tool says when it may not.

Identities are ServiceAccounts with tokens from the TokenRequest API, bound as a cluster admin
would bind a deploy identity: `admin` in the namespace only (what the README prescribes for a
local cluster), or a custom Role that lacks one verb."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.realcluster import Site, api, bind, service_account_kubeconfig

pytestmark = pytest.mark.testbed


def test_admin_in_the_namespace_only_deploys_and_warns_about_what_it_cannot_read(
    site: Site, cluster: str, tmp_path: Path, monkeypatch
) -> None:
    deployer = service_account_kubeconfig(cluster, site.namespace, "deployer", tmp_path)
    bind(cluster, site.namespace, "deployer", "admin")
    monkeypatch.setenv("KUBECONFIG", deployer)
    secrets = site.secrets()
    assert secrets.returncode == 0, secrets.stdout + secrets.stderr
    result = site.deploy()
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    # IngressClass is cluster-scoped: a namespace admin cannot read it, so it is a warning, not a stop
    assert "IngressClass nginx not checked: these credentials may not read it (cluster scope)" in text
    assert "these credentials may not list the cluster's nodes: could not compare the images' CPU platforms" in text
    assert site.history() == [(1, "deployed")]
    smoke = site.smoke()
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr


def test_a_role_missing_one_verb_is_named_exactly(site: Site, cluster: str, tmp_path: Path, monkeypatch) -> None:
    from kubernetes import client

    rules = [
        {
            "apiGroups": ["", "networking.k8s.io", "rbac.authorization.k8s.io", "coordination.k8s.io"],
            "resources": ["*"],
            "verbs": ["*"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],  # no patch
        },
    ]
    client.RbacAuthorizationV1Api(api(cluster)).create_namespaced_role(
        site.namespace, {"metadata": {"name": "almost"}, "rules": rules}
    )
    almost = service_account_kubeconfig(cluster, site.namespace, "almost", tmp_path)
    bind(cluster, site.namespace, "almost", "almost", kind="Role")
    monkeypatch.setenv("KUBECONFIG", almost)
    result = site.deploy("--no-wait")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(
        f"error   these credentials may not patch deployments.apps in namespace {site.namespace}: "
        "ask a cluster admin to grant what `make rbac CLOUD=local` prints (`admin` in the namespace)"
    ), lines
    assert "Traceback" not in result.stderr
    assert site.history() == []


def test_no_rights_at_all_lists_every_refusal_and_changes_nothing(
    site: Site, cluster: str, tmp_path: Path, monkeypatch
) -> None:
    nobody = service_account_kubeconfig(cluster, site.namespace, "nobody", tmp_path)
    monkeypatch.setenv("KUBECONFIG", nobody)
    result = site.deploy("--no-wait")
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "these credentials may not" in line]
    named = line.split("may not ", 1)[1].split(" in namespace")[0].split(", ")
    for verb in ("get", "create", "patch", "delete"):
        assert f"{verb} deployments.apps" in named and f"{verb} configmaps" in named
    assert "list secrets" in named and "update secrets" in named  # helm's release records
    for verb in ("get", "create", "patch"):  # the release's lock
        assert f"{verb} leases.coordination.k8s.io" in named
    assert site.history() == []


# -- what `make rbac` prints is exactly enough ---------------------------------------------------------
def apply_rbac(cluster: str, docs: list[dict]) -> list[tuple[str, str]]:
    """Apply `make rbac`'s output as a cluster admin; returns the cluster-scoped objects made."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(api(cluster))
    made = []
    for doc in docs:
        if doc["kind"] == "RoleBinding":
            rbac.create_namespaced_role_binding(doc["metadata"]["namespace"], doc)
        elif doc["kind"] == "ClusterRole":
            rbac.create_cluster_role(doc)
            made.append(("ClusterRole", doc["metadata"]["name"]))
        else:
            rbac.create_cluster_role_binding(doc)
            made.append(("ClusterRoleBinding", doc["metadata"]["name"]))
    return made


def rbac_output(site: Site, cloud: str, subject: str) -> list[dict]:
    import yaml

    from tests.envfiles import good_env, write_env
    from tests.realcluster import run_tool

    env_file = write_env(site.folder / f"{cloud}-rbac.env", good_env(cloud, NAMESPACE=site.namespace))
    proc = run_tool("rbac", "--cloud", cloud, "--env-file", str(env_file), "--subject", subject)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_make_rbac_for_local_is_enough_for_a_namespace_scoped_deploy(site: Site, cluster: str, tmp_path, monkeypatch):
    deployer = service_account_kubeconfig(cluster, site.namespace, "deployer", tmp_path)
    docs = rbac_output(site, "local", f"ServiceAccount:{site.namespace}/deployer")
    assert [d["kind"] for d in docs] == ["RoleBinding"]  # nothing cluster-wide on a plain cluster
    assert apply_rbac(cluster, docs) == []
    monkeypatch.setenv("KUBECONFIG", deployer)
    assert site.secrets().returncode == 0
    result = site.deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert site.history() == [(1, "deployed")]


def test_make_rbac_for_aws_grants_exactly_the_rights_preflight_checks(site: Site, cluster: str, tmp_path):
    from kubernetes import client

    from tests.envfiles import good_env
    from tools import kube_ops
    from tools.cloud import AwsCloud
    from tools.helm import render
    from tools.kube_rights import deploy_rights
    from tools.settings import load_settings

    deployer = service_account_kubeconfig(cluster, site.namespace, "deployer", tmp_path)
    docs = rbac_output(site, "aws", f"ServiceAccount:{site.namespace}/deployer")
    assert [d["kind"] for d in docs] == ["RoleBinding", "ClusterRole", "ClusterRoleBinding"]
    settings = load_settings(cloud="aws", environ=good_env("aws", NAMESPACE=site.namespace))
    rights = deploy_rights([o for o in render("cmbcluster", site.namespace, AwsCloud(settings).chart_values()) if o])
    made = apply_rbac(cluster, docs)
    rbac = client.RbacAuthorizationV1Api(api(cluster))
    try:
        with kube_ops.api_client(deployer) as as_deployer:
            assert kube_ops.denied(as_deployer, site.namespace, rights) == []  # enough
            rbac.delete_cluster_role_binding(made[1][1])
            refused = kube_ops.denied(as_deployer, site.namespace, rights)
        # and needed: without the cluster-wide part, exactly the cluster-scoped rights are missing
        assert refused == [name for right in rights if right.cluster_scoped for name in right.names()]
        assert {name.split()[1].split(".")[0] for name in refused} == {
            "persistentvolumes",
            "clusterroles",
            "clusterrolebindings",
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
        }
    finally:
        for kind, name in made:
            with contextlib.suppress(client.exceptions.ApiException):  # the binding may be gone already
                (rbac.delete_cluster_role if kind == "ClusterRole" else rbac.delete_cluster_role_binding)(name)


def test_make_rbac_for_aws_installs_the_chart_and_touches_no_other_cluster_role(
    site: Site, cluster: str, tmp_path: Path
) -> None:
    """Issue 18, defect 7: what `make rbac CLOUD=aws` prints installs, upgrades and uninstalls the
    chart (its ClusterRole, binding and admission policy included), and no more: get, patch and
    delete of cluster-scoped objects are limited to the chart's own by name."""
    import subprocess

    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from tests.envfiles import good_env
    from tools.cloud import AwsCloud
    from tools.helm import CHART_DIR, helm_binary
    from tools.settings import load_settings

    deployer = service_account_kubeconfig(cluster, site.namespace, "deployer", tmp_path)
    docs = rbac_output(site, "aws", f"ServiceAccount:{site.namespace}/deployer")
    rules = docs[1]["rules"]
    named = [r for r in rules if r.get("resourceNames")]
    assert {v for r in named for v in r["verbs"]} == {"get", "patch", "delete"}
    unnamed = [r["verbs"] for r in rules if r["resources"][0] != "persistentvolumes" and r not in named]
    assert unnamed and all(verbs == ["list", "watch", "create"] for verbs in unnamed)  # create and read only
    values = tmp_path / "aws-values.yaml"
    settings = load_settings(cloud="aws", environ=good_env("aws", NAMESPACE=site.namespace))
    values.write_text(yaml.safe_dump(AwsCloud(settings).chart_values()))
    made = apply_rbac(cluster, docs)
    rbac = client.RbacAuthorizationV1Api(api(cluster))

    def helm(*args: str) -> subprocess.CompletedProcess:
        argv = [helm_binary(), *args, "-n", site.namespace, "--kubeconfig", deployer]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)

    try:
        chart = ["cmbcluster", str(CHART_DIR), "-f", str(values)]
        for step in (("install", *chart), ("upgrade", *chart, "--set", "backend.config.maxUserPods=7")):
            result = helm(*step)
            assert result.returncode == 0, result.stderr
        as_deployer = client.RbacAuthorizationV1Api(api(deployer))
        for change in (
            lambda: as_deployer.delete_cluster_role("admin", dry_run="All"),
            lambda: as_deployer.patch_cluster_role("admin", {"metadata": {"labels": {"x": "y"}}}, dry_run="All"),
            lambda: as_deployer.delete_cluster_role_binding("cluster-admin", dry_run="All"),
            lambda: as_deployer.patch_cluster_role_binding("cluster-admin", {"subjects": []}, dry_run="All"),
        ):
            with pytest.raises(ApiException) as refused:
                change()
            assert refused.value.status == 403
        # helm 4 waits by watching each kind of the release: list and watch, cluster-wide
        result = helm("uninstall", "cmbcluster", "--wait", "--timeout", "60s")
        assert result.returncode == 0, result.stderr
        names = [o.metadata.name for o in rbac.list_cluster_role().items if site.namespace in o.metadata.name]
        assert names == [made[0][1]]  # the chart's ClusterRole went with it; the deploy identity's stays
        policies = client.AdmissionregistrationV1Api(api(cluster)).list_validating_admission_policy().items
        assert not [p for p in policies if site.namespace in p.metadata.name]
    finally:
        helm("uninstall", "cmbcluster", "--ignore-not-found")
        for kind, name in made:
            with contextlib.suppress(client.exceptions.ApiException):
                (rbac.delete_cluster_role if kind == "ClusterRole" else rbac.delete_cluster_role_binding)(name)
