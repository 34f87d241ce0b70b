"""Issue 18, the simulated GKE: the GCP deploy identity, set up as printed, reaches the cluster and installs the chart.

On the simulated GKE (tests/sim: a token server issuing Google access tokens for service-account keys, GKE's
clusters.get, GKE's authenticator and IAM authorizer beside RBAC on a real kube-apiserver), the deploy
service account's IAM bindings are applied from the structured source `make cloud-setup CLOUD=gcp` prints
(tools/cloud_permissions.py gcp_grants) and its Kubernetes rights from the `make rbac` line the script names;
the tools' own `GcpCloud.cluster_access` writes the kubeconfig (google-auth token, endpoint and CA from
clusters.get); Helm installs the chart. The printed IAM holds one container.* permission,
container.clusters.get: every right inside the cluster comes from RBAC, so the chart's Role passes
Kubernetes' escalation check through RBAC, as on EKS with its access entry's group.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_helpers import helm_install
from tests.envfiles import good_env
from tests.sim.gke import CLUSTER, CLUSTER_NAME, LOCATION, PROJECT
from tests.sim.gke_setup import account_for, apply_printed_rbac, grant_printed_iam, printed_script
from tools.cloud import GcpCloud, cloud_for, google_access_token
from tools.errors import ToolError
from tools.escalation import escalation_problems
from tools.helm import render
from tools.kube_ops import api_client
from tools.settings import load_settings

ESCALATION = "attempting to grant RBAC permissions not currently held"
REQUIRES = re.compile(r'requires one of \["container\.[A-Za-z]+\.[A-Za-z]+"\] permission\(s\)')
# cert-manager's Issuer, as its install makes it (a documented prerequisite of the GCP chart): the CRD, schema
# left open (the chart's own tests check the Issuer), and its role aggregated into `admin` as cert-manager's
# chart aggregates `cert-manager-edit` (https://cert-manager.io/docs/installation/best-practice/ , RBAC)
CERT_MANAGER = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "issuers.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io",
            "scope": "Namespaced",
            "names": {"kind": "Issuer", "plural": "issuers", "singular": "issuer", "listKind": "IssuerList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": "cert-manager-edit",
            "labels": {
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
            },
        },
        "rules": [
            {
                "apiGroups": ["cert-manager.io"],
                "resources": ["certificates", "certificaterequests", "issuers"],
                "verbs": ["create", "delete", "deletecollection", "patch", "update"],
            },
            {
                "apiGroups": ["cert-manager.io"],
                "resources": ["certificates", "certificaterequests", "issuers"],
                "verbs": ["get", "list", "watch"],
            },
        ],
    },
]


def settings_env(namespace: str) -> dict[str, str]:
    return good_env("gcp", CLUSTER_NAME=CLUSTER, NAMESPACE=namespace, GKE_LOCATION=LOCATION)


def set_up(sim: Any, folder: Path, namespace: str, rbac: bool = True) -> Path:
    """The printed set-up for one deploy service account (tests/sim/gke_setup.py): its IAM grants and, as a
    cluster admin, the namespace and the RBAC of the script's `make rbac` line (unless `rbac` is False).
    Returns the account's key file."""
    account, environ = account_for(namespace), settings_env(namespace)
    script = printed_script(environ, folder, account)
    assert grant_printed_iam(sim, environ, script, account) == {"container.clusters.get"}  # nothing inside
    created = sim.control_plane.kubectl("create", "namespace", namespace)
    assert created.returncode == 0, created.stderr
    if rbac:
        # GKE's Kubernetes user for a service account: its email
        assert apply_printed_rbac(sim, environ, script, folder) == f"User:{account}"
    return sim.tokens.key_file(folder, account, PROJECT)


@contextmanager
def as_account(sim: Any, key_file: Path, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The CI job's Application Default Credentials and the tools' own kubeconfig for the cluster."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with sim.api.mock(), GcpCloud(load_settings(cloud="gcp", environ=settings_env(namespace))).cluster_access() as kc:
        yield kc


def refusal(sim: Any, key_file: Path, namespace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The one line `GcpCloud.cluster_access` stops with for these credentials."""
    with pytest.raises(ToolError) as caught, as_account(sim, key_file, namespace, monkeypatch):
        pass
    return str(caught.value)


def token_of(kubeconfig: str) -> str:
    return yaml.safe_load(Path(kubeconfig).read_text())["users"][0]["user"]["token"]


def chart_values(chart_cloud: str, namespace: str) -> dict[str, Any]:
    environ = good_env(chart_cloud, CLUSTER_NAME=CLUSTER, NAMESPACE=namespace)
    return cloud_for(load_settings(cloud=chart_cloud, environ=environ)).chart_values()


def preflight_escalation(kubeconfig: str, chart_cloud: str, namespace: str) -> list[str]:
    """Preflight's escalation check on the chart about to be installed."""
    rendered = render("cmbcluster", namespace, chart_values(chart_cloud, namespace))
    return escalation_problems(api_client(kubeconfig), namespace, rendered, "")


@pytest.fixture(scope="module")
def cert_manager(simulated_gke: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("cert-manager") / "cert-manager.yaml"
    path.write_text(yaml.safe_dump_all(CERT_MANAGER))
    applied = simulated_gke.control_plane.kubectl("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    established = simulated_gke.control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/issuers.cert-manager.io", "--timeout=30s"
    )
    assert established.returncode == 0, established.stderr


def test_the_deploy_account_as_printed_installs_the_gcp_chart_through_rbac(
    simulated_gke: Any, cert_manager: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = "cmb-gke-printed"
    key_file = set_up(simulated_gke, tmp_path, namespace)
    seen = len(simulated_gke.hooks.log)
    with as_account(simulated_gke, key_file, namespace, monkeypatch) as kubeconfig:
        who = simulated_gke.control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
        problems = preflight_escalation(kubeconfig, "gcp", namespace)
        result = helm_install(kubeconfig, tmp_path, chart_values("gcp", namespace), namespace)

    assert simulated_gke.api.calls[-1] == CLUSTER_NAME  # the endpoint and CA came from clusters.get
    assert who.returncode == 0, who.stderr + "\n".join(simulated_gke.hooks.log[-5:])
    user = json.loads(who.stdout)["status"]["userInfo"]
    assert user["username"] == account_for(namespace) and user["groups"] == ["system:authenticated"]
    assert problems == []
    assert result.returncode == 0, result.stderr + "\n".join(simulated_gke.hooks.log[-10:])
    made = simulated_gke.control_plane.kubectl("get", "roles,rolebindings,issuers", "-n", namespace, "-o", "name")
    assert set(made.stdout.split()) == {
        "role.rbac.authorization.k8s.io/cmbcluster-pod-manager",
        "rolebinding.rbac.authorization.k8s.io/cmbcluster-pod-manager",
        "rolebinding.rbac.authorization.k8s.io/cmbcluster-deploy",  # make rbac's
        "issuer.cert-manager.io/cmbcluster-letsencrypt",
    }
    # IAM granted nothing inside the cluster: every allowed request came through RBAC
    assert not any(line.startswith("allowed by IAM") for line in simulated_gke.hooks.log[seen:])


def test_without_the_printed_kubernetes_rights_the_deploy_account_is_refused_with_the_permission_it_lacks(
    simulated_gke: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = "cmb-gke-norbac"
    key_file = set_up(simulated_gke, tmp_path, namespace, rbac=False)
    with as_account(simulated_gke, key_file, namespace, monkeypatch) as kubeconfig:
        result = helm_install(
            kubeconfig, tmp_path, chart_values("local", namespace), namespace
        )  # Helm's first request is refused

    assert result.returncode != 0
    # GKE's refusal: Kubernetes' sentence for the user, then the IAM permission that would have allowed it
    assert f'User "{account_for(namespace)}" cannot ' in result.stderr, result.stderr
    assert REQUIRES.search(result.stderr), result.stderr
    assert simulated_gke.control_plane.kubectl("get", "all", "-n", namespace, "-o", "name").stdout == ""


# With IAM alone (no RBAC), creating the chart's Role meets Kubernetes' escalation check as on EKS: RBAC holds
# none of its rules for the account, so the chain is asked for `escalate`, which IAM grants only as
# container.roles.escalate, in roles/container.admin and not in roles/container.developer (tests/sim/gke_iam.py).
# The chart with CLOUD=local values: its namespaced objects and Role, without the cert-manager stand-in.
@pytest.mark.parametrize("role", ["roles/container.developer", "roles/container.admin"])
def test_with_iam_alone_the_charts_role_needs_the_escalate_permission(
    simulated_gke: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    namespace = "cmb-gke-" + role.rsplit(".", 1)[1].lower()
    key_file = set_up(simulated_gke, tmp_path, namespace, rbac=False)
    simulated_gke.iam.bind(f"serviceAccount:{account_for(namespace)}", role)
    with as_account(simulated_gke, key_file, namespace, monkeypatch) as kubeconfig:
        problems = preflight_escalation(kubeconfig, "local", namespace)
        result = helm_install(kubeconfig, tmp_path, chart_values("local", namespace), namespace)

    roles = simulated_gke.control_plane.kubectl("get", "roles", "-n", namespace, "-o", "name").stdout.split()
    if role == "roles/container.admin":
        assert result.returncode == 0, result.stderr + "\n".join(simulated_gke.hooks.log[-10:])
        assert roles == ["role.rbac.authorization.k8s.io/cmbcluster-pod-manager"]
        assert problems == []
    else:
        assert len(problems) == 1 and "GKE IAM role" in problems[0] and ESCALATION in problems[0], problems
        assert result.returncode != 0
        refused = (
            f'roles.rbac.authorization.k8s.io "cmbcluster-pod-manager" is forbidden: user "{account_for(namespace)}"'
        )
        assert refused in result.stderr and ESCALATION in result.stderr, result.stderr
        assert roles == []


def test_google_tokens_that_are_invalid_expired_or_another_accounts_are_refused(
    simulated_gke: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = "cmb-gke-tokens"
    key_file = set_up(simulated_gke, tmp_path, namespace)
    control_plane = simulated_gke.control_plane

    def whoami(kubeconfig: str) -> subprocess.CompletedProcess:
        return control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)

    with as_account(simulated_gke, key_file, namespace, monkeypatch) as kubeconfig:
        assert whoami(kubeconfig).returncode == 0
        forged = Path(kubeconfig).read_text().replace(token_of(kubeconfig), "ya29.sim-not-issued-by-google")
        Path(kubeconfig).write_text(forged)
        invalid = whoami(kubeconfig)
    with as_account(simulated_gke, key_file, namespace, monkeypatch) as kubeconfig:
        simulated_gke.tokens.expire(token_of(kubeconfig))  # its hour is over
        expired = whoami(kubeconfig)
        listed = control_plane.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig)
    for refused in (invalid, expired, listed):
        assert refused.returncode != 0 and "Unauthorized" in refused.stderr, refused.stderr

    # another service account of the project, with no binding: clusters.get refuses it, and its token, though
    # Google's, does not authenticate without container.clusters.get (role-based-access-control, "Interaction
    # with IAM"); with it and no more (the printed account without RBAC) it is refused inside: the test above
    stranger = simulated_gke.tokens.key_file(tmp_path, f"stranger@{PROJECT}.iam.gserviceaccount.com", PROJECT)
    assert refusal(simulated_gke, stranger, namespace, monkeypatch) == (
        f"these Google credentials may not read GKE cluster {CLUSTER_NAME}: grant container.clusters.get (the "
        "deploy role `make cloud-setup CLOUD=gcp` prints holds it; rights inside come from `make rbac`) and enable "
        "the Kubernetes Engine API"
    )
    with as_account(simulated_gke, key_file, namespace, monkeypatch) as kubeconfig:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(stranger))
        Path(kubeconfig).write_text(Path(kubeconfig).read_text().replace(token_of(kubeconfig), google_access_token()))
        other = control_plane.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig)
    assert other.returncode != 0 and "Unauthorized" in other.stderr, other.stderr
    assert f"no container.clusters.get: stranger@{PROJECT}.iam.gserviceaccount.com" in simulated_gke.hooks.log

    # a key Google never issued (or one deleted): the token endpoint refuses the signed assertion, one line
    unknown = simulated_gke.tokens.key_file(tmp_path, account_for(namespace), PROJECT, registered=False)
    refused = refusal(simulated_gke, unknown, namespace, monkeypatch)
    assert refused == "Google credentials were refused: invalid_grant: Invalid JWT Signature."
