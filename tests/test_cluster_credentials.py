"""Cluster credentials that renew themselves: the kubeconfig's exec credential plugin (how EKS
access works, tools/eks_token.py) is run again when its token expires, and again at once when the
API server refuses a token (401), so a run longer than one token keeps working.

The real cluster cannot accept EKS tokens, so the plugin here hands out a real ServiceAccount
token of the test cluster with a short stated lifetime (3 s), and an unusable one on its first
call (a token that has already expired on the server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.realcluster import bind, service_account_kubeconfig
from tests.waiting import eventually
from tools.kube_client import Kube, path

pytestmark = pytest.mark.testbed

PLUGIN = """#!/bin/sh
calls="$(dirname "$0")/calls"
echo "$(date +%s.%N)" >> "$calls"
if [ "$(wc -l < "$calls")" -eq 1 ]; then token=expired-token; else token=$(cat "$(dirname "$0")/token"); fi
expires=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",'
printf '"status":{"token":"%s","expirationTimestamp":"%s"}}\\n' "$token" "$expires"
"""


def test_a_run_longer_than_one_token_keeps_working(cluster: str, cluster_namespace: str, on_cluster, tmp_path: Path):
    direct = service_account_kubeconfig(cluster, cluster_namespace, "renewing", tmp_path)
    bind(cluster, cluster_namespace, "renewing", "view")
    config = yaml.safe_load(Path(direct).read_text())
    (tmp_path / "token").write_text(config["users"][0]["user"]["token"])
    plugin = tmp_path / "plugin"
    plugin.write_text(PLUGIN)
    plugin.chmod(0o755)
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    kubeconfig = tmp_path / "exec.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))

    answers = []

    def calls() -> list[str]:
        return (tmp_path / "calls").read_text().split()  # the plugin's calls, one line each

    def renewed_twice() -> bool:
        answers.append(kube.get(path("configmaps", cluster_namespace))["kind"])
        assert answers[-1] == "ConfigMapList"  # every request answered, across the renewals
        return len(calls()) >= 4  # the refused token, its replacement, and two tokens' lifetimes

    with Kube(str(kubeconfig)) as kube:
        eventually(renewed_twice, lambda: f"two renewals as the tokens expired (the plugin's calls: {calls()})", 30)
    # the first token was refused (401) and renewed at once; then renewed as each one expired
    assert len(answers) >= 2 * len(calls()), (answers, calls())  # not before every request
    assert float(calls()[1]) - float(calls()[0]) < 1.0
