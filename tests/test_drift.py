"""Drift, offline: only the fields the render sets count, quantities by value, Secrets by hash and never shown."""

from __future__ import annotations

import base64

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
