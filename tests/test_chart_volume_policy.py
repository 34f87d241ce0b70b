"""The chart's PersistentVolume policy (issue 18, defect 6), rendered: on AWS only, named per release
namespace like the backend's ClusterRole, matching only the backend's ServiceAccount of that
namespace, and refused with one line on a Kubernetes that does not serve admissionregistration.k8s.io/v1
policies (GA in 1.30: https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/).
What it refuses is held on the real API server in test_cluster_volume_policy.py."""

from __future__ import annotations

import pytest

from tests.chart_helpers import render, shim_values
from tools.cloud import BACKEND_SERVICE_ACCOUNT

POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


@pytest.mark.parametrize("namespace", ["cmb-a", "cmb-b"])
def test_aws_renders_the_policy_and_its_binding_per_namespace(namespace: str) -> None:
    r = render("helm4", shim_values("aws"), namespace=namespace)
    assert r.rc == 0, r.err
    role = r.one("ClusterRole")["metadata"]["name"]
    policy, binding = (r.one(kind) for kind in POLICY_KINDS)
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == role and namespace in role
    assert binding["spec"] == {"policyName": role, "validationActions": ["Deny"]}
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{namespace}:{BACKEND_SERVICE_ACCOUNT}'"
    )
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["persistentvolumes"],
        }
    ]
    assert any(f"== '{namespace}'" in v["expression"] for v in policy["spec"]["validations"])


@pytest.mark.parametrize("cloud", ["gcp", "local"])
def test_no_policy_where_the_backend_makes_no_volumes(cloud: str) -> None:
    r = render("helm4", shim_values(cloud))
    assert r.rc == 0, r.err
    assert not [d for d in r.docs if d["kind"] in POLICY_KINDS]


@pytest.mark.parametrize(("version", "ok"), [("1.29.9", False), ("v1.29.15-eks-1234567", False), ("1.30.0", True)])
def test_aws_needs_kubernetes_1_30(version: str, ok: bool) -> None:
    r = render("helm4", shim_values("aws"), args=("--kube-version", version))
    assert (r.rc == 0) is ok, r.err
    if not ok:
        assert "is too old: the chart's ValidatingAdmissionPolicy" in r.err and "needs EKS 1.30" in r.err, r.err
