"""The no-op check offline: Helm's release record decoded as Helm writes it, and what counts as a change."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
import yaml

from tools.unchanged import Deployed, decode, release_change

IMAGE = {"repository": "r/backend", "tag": "c-1", "digest": "sha256:" + "1" * 64}
VALUES = {"backend": {"image": IMAGE}, "global": {"namespace": "ns"}}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "cmbcluster-backend"},
    "spec": {"template": {"spec": {"containers": [{"name": "b", "image": f"r/backend@{IMAGE['digest']}"}]}}},
}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cmbcluster-env"}, "data": {"a": "1"}}
CHART = ("cmbcluster", "0.1.0")


def record(resource: str) -> dict:
    """A release record as Helm's storage driver writes it: JSON, gzipped, base64 (and a Secret's base64)."""
    release = {
        "name": "cmbcluster",
        "version": 3,
        "info": {"status": "deployed"},
        "chart": {"metadata": {"name": CHART[0], "version": CHART[1]}},
        "config": VALUES,
        "manifest": "---\n" + yaml.safe_dump(DEPLOYMENT) + "---\n" + yaml.safe_dump(CONFIGMAP),
    }
    encoded = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
    if resource == "secrets":
        encoded = base64.b64encode(encoded.encode()).decode()
    return {
        "metadata": {"labels": {"owner": "helm", "name": "cmbcluster", "version": "3"}},
        "data": {"release": encoded},
    }


@pytest.mark.parametrize("resource", ["secrets", "configmaps"])
def test_a_record_decodes_as_helm_wrote_it(resource: str) -> None:
    release = decode(record(resource), resource)
    assert release["version"] == 3 and release["config"] == VALUES
    assert list(yaml.safe_load_all(release["manifest"])) == [DEPLOYMENT, CONFIGMAP]


def deployed(status: str = "deployed") -> Deployed:
    return Deployed(3, status, [DEPLOYMENT, CONFIGMAP], json.loads(json.dumps(VALUES)), CHART)


def test_the_same_release_is_no_change() -> None:
    assert release_change(deployed(), [CONFIGMAP, DEPLOYMENT], VALUES, CHART, "ns") is None  # order aside


def test_a_new_digest_is_a_change() -> None:
    digest = "sha256:" + "2" * 64
    values = {**VALUES, "backend": {"image": {**IMAGE, "digest": digest}}}
    assert release_change(deployed(), [DEPLOYMENT, CONFIGMAP], values, CHART, "ns") == "the values differ"
    container = {"name": "b", "image": f"r/backend@{digest}"}
    moved = {**DEPLOYMENT, "spec": {"template": {"spec": {"containers": [container]}}}}
    assert release_change(deployed(), [moved, CONFIGMAP], VALUES, CHART, "ns") == (
        "1 object(s) differ (Deployment cmbcluster-backend)"
    )


def test_other_changes_are_named() -> None:
    assert release_change(deployed("failed"), [DEPLOYMENT, CONFIGMAP], VALUES, CHART, "ns") == "revision 3 is failed"
    assert release_change(deployed(), [DEPLOYMENT, CONFIGMAP], VALUES, ("cmbcluster", "0.2.0"), "ns") == (
        "chart cmbcluster 0.1.0 -> 0.2.0"
    )
    assert (
        release_change(deployed(), [DEPLOYMENT], VALUES, CHART, "ns") == "1 object(s) differ (ConfigMap cmbcluster-env)"
    )
