"""The chart's bucket-name rules (`_helpers.tpl`) give the shim's answers (tools/cloud.py), for
many inputs: names, user prefix, and which names are invalid."""

from __future__ import annotations

import random
import shutil
import string
from pathlib import Path

import pytest
import yaml

from tests.chart_helpers import CHART, render, shim_values
from tools.cloud import check_bucket_name, database_bucket_name, user_bucket_prefix

CASES_TEMPLATE = """\
{{- range $i, $c := .Values.cases }}
{{- $g := dict "cloudProvider" $c.cloud "clusterName" $c.cluster }}
{{- $_ := set $g "gcp" (dict "projectId" $c.project) }}
{{- $_ := set $g "aws" (dict "accountId" $c.account) }}
{{- $ctx := dict "Values" (dict "global" $g) }}
{{- $bucket := include "cmbcluster.databaseBucket" $ctx }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: case-{{ $i }}
data:
  bucket: {{ $bucket | quote }}
  prefix: {{ include "cmbcluster.userBucketPrefix" $ctx | quote }}
  problem: {{ include "cmbcluster.bucketProblem" $bucket | quote }}
{{- end }}
"""


def _name(rng: random.Random, low: int, high: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def cases() -> list[dict[str, str]]:
    rng = random.Random(20251124)
    plain = string.ascii_lowercase + string.digits + "-"
    odd = plain + "_.A"
    out = [
        {"cloud": "gcp", "cluster": "cmbcluster", "project": "my-project-123", "account": ""},
        {"cloud": "aws", "cluster": "cmbcluster", "project": "", "account": "123456789012"},
        {"cloud": "local", "cluster": "cmbcluster", "project": "", "account": ""},
        {"cloud": "gcp", "cluster": "x" * 40, "project": "p" * 30, "account": ""},  # 74 characters
        {"cloud": "aws", "cluster": "x" * 47, "project": "", "account": "000000000001"},  # 63: just fits
        {"cloud": "aws", "cluster": "x" * 48, "project": "", "account": "000000000001"},  # 64: too long
        {"cloud": "gcp", "cluster": "c", "project": "", "account": ""},  # "-c-db": starts with a hyphen
        {"cloud": "local", "cluster": "ab-", "project": "", "account": ""},  # "ab--db"
        {"cloud": "local", "cluster": "Upper", "project": "", "account": ""},
    ]
    for _ in range(300):
        cloud = rng.choice(("gcp", "aws", "local"))
        alphabet = odd if rng.random() < 0.15 else plain
        out.append(
            {
                "cloud": cloud,
                "cluster": _name(rng, 1, 45, alphabet),
                "project": _name(rng, 1, 30, alphabet) if cloud == "gcp" else "",
                "account": "".join(rng.choice(string.digits) for _ in range(12)) if cloud == "aws" else "",
            }
        )
    return out


@pytest.fixture(scope="module")
def helpers_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chart with only the real _helpers.tpl and a template that applies it to every case."""
    root = tmp_path_factory.mktemp("bucket-chart") / "cmbcluster"
    (root / "templates").mkdir(parents=True)
    shutil.copy(CHART / "Chart.yaml", root / "Chart.yaml")
    shutil.copy(CHART / "templates" / "_helpers.tpl", root / "templates" / "_helpers.tpl")
    (root / "templates" / "cases.yaml").write_text(CASES_TEMPLATE)
    return root


@pytest.mark.parametrize("helm", ["helm4", "helm3"])
def test_chart_and_shim_agree_on_bucket_names(helm: str, helpers_chart: Path) -> None:
    all_cases = cases()
    r = render(helm, {"cases": all_cases}, chart=helpers_chart)
    assert r.rc == 0, r.err
    answers = {int(d["metadata"]["name"].split("-")[1]): d["data"] for d in r.docs}
    assert len(answers) == len(all_cases)
    invalid = 0
    for i, case in enumerate(all_cases):
        expected = database_bucket_name(case["cloud"], case["cluster"], case["project"], case["account"])
        got = answers[i]
        assert got["bucket"] == expected, case
        assert got["prefix"] == user_bucket_prefix(case["cluster"]), case
        shim_problem = check_bucket_name(expected)
        assert bool(got["problem"]) == bool(shim_problem), (case, got["problem"], shim_problem)
        invalid += bool(shim_problem)
    assert 10 < invalid < len(all_cases) - 100  # both verdicts are exercised


@pytest.mark.parametrize(
    ("cloud", "overrides"),
    [
        ("gcp", {"CLUSTER_NAME": "cmb", "PROJECT_ID": "science-lab-42"}),
        ("gcp", {"CLUSTER_NAME": "a1-b2-c3", "PROJECT_ID": "p00000"}),
        ("aws", {"CLUSTER_NAME": "cmb-eks", "AWS_ACCOUNT_ID": "000011112222"}),
        ("aws", {"CLUSTER_NAME": "x" * 40, "AWS_ACCOUNT_ID": "999999999999"}),
        ("local", {"CLUSTER_NAME": "kind-cmb"}),
    ],
)
def test_rendered_chart_names_the_bucket_like_the_shim(cloud: str, overrides: dict[str, str]) -> None:
    from tests.chart_helpers import shim

    c = shim(cloud, **overrides)
    r = render("helm4", shim_values(cloud, **overrides))
    assert r.rc == 0, r.err
    env = r.env("backend")
    assert env["DATABASE_BUCKET"] == c.database_bucket
    if cloud == "aws":
        assert env["S3_DATABASE_BUCKET"] == c.database_bucket
        assert env["S3_USER_BUCKET_PREFIX"] == c.user_bucket_prefix
    assert r.configmap_data()["USER_BUCKET_PREFIX"] == c.user_bucket_prefix
    # the replica's URL (tools.cloud.database_replica_url) is the chart's cmbcluster.databaseReplicaUrl
    litestream = [m for m in r.all("ConfigMap") if m["metadata"]["name"].endswith("-litestream")]
    urls = [yaml.safe_load(m["data"]["litestream.yml"])["dbs"][0]["replica"]["url"] for m in litestream]
    assert urls == ([c.database_replica] if cloud != "local" else [])


@pytest.mark.parametrize("helm", ["helm4", "helm3"])
def test_account_id_with_a_leading_zero_stays_a_string(helm: str) -> None:
    """chart_values() passed as JSON keeps 012345678901 a string; the schema refuses a number."""
    values = shim_values("aws", AWS_ACCOUNT_ID="012345678901")
    r = render(helm, values)
    assert r.rc == 0, r.err
    assert r.env("backend")["DATABASE_BUCKET"] == "cmbtest-db-012345678901"
    values["global"]["aws"]["accountId"] = 12345678901  # what YAML makes of an unquoted 012345678901
    r = render(helm, values)
    assert r.rc != 0 and "at '/global/aws/accountId': got number, want string" in r.err
