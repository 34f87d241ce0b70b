"""Preflight and RBAC on the real cluster: who may deploy, and what the tool says when it may not.

Identities are ServiceAccounts with tokens from the TokenRequest API, bound as a cluster admin
would bind a deploy identity: `admin` in the namespace only (what the README prescribes for a
local cluster), or a custom Role that lacks one verb."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realcluster import Site, api, bind, create_namespace, delete_namespace, service_account_kubeconfig

pytestmark = pytest.mark.testbed


@pytest.fixture
def site(tmp_path, cluster, on_cluster, stand_in_images):
    namespace = create_namespace(cluster, "rbac")
    yield Site(tmp_path, cluster, namespace, stand_in_images)
    delete_namespace(cluster, namespace)


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
    assert site.history() == [(1, "deployed")]
    smoke = site.smoke()
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr


def test_a_role_missing_one_verb_is_named_exactly(site: Site, cluster: str, tmp_path: Path, monkeypatch) -> None:
    from kubernetes import client

    rules = [
        {"apiGroups": ["", "networking.k8s.io", "rbac.authorization.k8s.io"], "resources": ["*"], "verbs": ["*"]},
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
        "ask a cluster admin to bind them the `admin` ClusterRole there"
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
    assert "may not get deployments.apps, create deployments.apps, patch deployments.apps, delete deployments" in (
        result.stderr
    )
    assert "create configmaps" in result.stderr and "list secrets" in result.stderr
    assert site.history() == []
