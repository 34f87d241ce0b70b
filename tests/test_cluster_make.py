"""`make deploy-local` end to end on the real cluster: the stand-in images built and pushed to the
loopback registry, pulled by the kubelet, the release deployed and smoke-tested; a second run
converges and restarts no pod. The cluster has no ingress controller, so the smoke step skips
the HTTPS checks (SMOKE_ARGS=--no-endpoints)."""

from __future__ import annotations

import pytest

from tests.envfiles import good_env, write_env
from tests.fixtures.apps import stage_apps
from tests.make import make
from tests.realcluster import Site, create_namespace, delete_namespace

pytestmark = pytest.mark.testbed


def test_make_deploy_local_builds_deploys_and_converges(tmp_path, cluster, on_cluster, registry, stand_in_images):
    namespace = create_namespace(cluster, "make")
    try:
        (tmp_path / "inspect").mkdir()
        contexts = stage_apps(tmp_path / "apps")
        values = good_env("local", NAMESPACE=namespace, REGISTRY_URL=registry, CLUSTER_NAME="cmbmake")
        values.update({f"{n.upper().replace('-', '_')}_CONTEXT": str(p) for n, p in contexts.items()})
        env_file = write_env(tmp_path / "local.env", values)
        images = tmp_path / "images.json"
        args = [f"ENV_FILE={env_file}", f"IMAGES_FILE={images}", "SMOKE_ARGS=--no-endpoints"]
        first = make("deploy-local", *args, env=on_cluster)
        text = first.stdout + first.stderr
        assert first.returncode == 0, text[-4000:]
        for step in ("validate_secrets", "build_push", "make_secrets", "certs", "helm_deploy", "dns", "smoke_test"):
            assert f"tools.{step}" in text
        assert "skipped certificate: no managed certificate on a local cluster" in text
        assert "skipped dns: a local cluster has no managed DNS zone" in text
        assert "revision 1 deployed" in text and f"in {namespace} (local): healthy" in text
        handed = tmp_path / "deployed-revision"  # helm-deploy hands smoke the revision it made (beside IMAGES_FILE)
        assert f"--revision-file {handed}" in text and handed.read_text() == "1\n"
        site = Site(tmp_path / "inspect", cluster, namespace, stand_in_images)
        pods = {p.metadata.uid for c in ("backend", "frontend") for p in site.pods(c)}
        secrets = site.secret("cmbcluster-backend-secrets")

        second = make("deploy-local", *args, env=on_cluster)
        text = second.stdout + second.stderr
        assert second.returncode == 0, text[-4000:]
        assert "3 image(s) ready, 0 built" in text, text[-3000:]  # nothing rebuilt
        assert "0 created, 0 updated, 0 rotated" in text
        assert {p.metadata.uid for c in ("backend", "frontend") for p in site.pods(c)} == pods  # nothing restarted
        assert site.secret("cmbcluster-backend-secrets") == secrets
        assert "release cmbcluster: unchanged (revision 1), nothing to upgrade" in text
        assert site.history() == [(1, "deployed")]  # no new revision
        assert handed.read_text() == "none\n"  # so the chain's smoke rolls nothing back, whatever it finds
    finally:
        delete_namespace(cluster, namespace)
