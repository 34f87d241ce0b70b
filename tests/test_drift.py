"""Drift, offline: only the fields the render sets count, quantities by value, Secrets by hash and never shown."""

from __future__ import annotations

import base64

import pytest

from tests.envfiles import canary
from tools.drift import drift, first_difference

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {"containers": [{"name": "c", "image": "r/web@sha256:1", "resources": {"limits": {"cpu": "0.5"}}}]}
        },
    },
}


def live(**changes: object) -> dict:
    """What the API server gives back: defaults and status added, quantities canonical."""
    container = {"name": "c", "image": "r/web@sha256:1", "resources": {"limits": {"cpu": "500m"}}}
    container.update(changes)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "uid": "u", "annotations": {"rev": "1"}},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate"},
            "template": {"spec": {"containers": [container]}},
        },
        "status": {"readyReplicas": 1},
    }


def test_defaults_status_and_canonical_quantities_are_not_drift() -> None:
    assert drift(DEPLOYMENT, live()) is None


def test_an_edited_field_is_named() -> None:
    assert drift(DEPLOYMENT, live(image="r/web@sha256:2")) == (
        "Deployment web: spec.template.spec.containers[0].image differs"
    )
    assert first_difference({"a": [1, 2]}, {"a": [1]}) == "a"  # a list item removed
    assert drift(DEPLOYMENT, None) == "Deployment web: missing"


def test_a_secret_is_compared_by_hash_and_never_shown() -> None:
    value = canary("drifted-secret")
    rendered = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"key": "same"}}
    same = {**rendered, "stringData": None, "data": {"key": base64.b64encode(b"same").decode()}}
    assert drift(rendered, same) is None  # stringData rendered, data live: the same content
    other = {**same, "data": {"key": base64.b64encode(value.encode()).decode()}}
    found = drift(rendered, other)
    assert found == "Secret s: data differs (compared by hash)"
    assert value not in found and base64.b64encode(value.encode()).decode() not in found


@pytest.mark.testbed
def test_each_kind_is_read_where_the_real_api_server_serves_it(cluster: str) -> None:
    """Scope and plural come from discovery: a cluster-scoped ValidatingAdmissionPolicy is read at the
    cluster's path (a namespaced path answers 404, which read as "missing" and made every deploy an
    upgrade), a Deployment in its namespace, and a kind the cluster does not serve is absent."""
    from tools.drift import Resources, live_object
    from tools.kube_ops import api_client

    resources = Resources(api_client(cluster))
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy"}
    assert resources.path({**policy, "metadata": {"name": "p"}}, "ns") == (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/p"
    )
    assert (
        resources.path({**DEPLOYMENT, "metadata": {"name": "web"}}, "ns")
        == "/apis/apps/v1/namespaces/ns/deployments/web"
    )
    ingress_class = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "c"}}
    assert resources.path(ingress_class, "ns") == "/apis/networking.k8s.io/v1/ingressclasses/c"
    unserved = {"apiVersion": "cmbcluster.invalid/v1", "kind": "Nothing", "metadata": {"name": "i"}}
    assert resources.path(unserved, "ns") is None and live_object(resources, unserved, "ns") is None
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    assert (live_object(resources, namespace, "ns") or {}).get("metadata", {}).get("name") == "kube-system"
