"""Every rendered manifest validates offline against the Kubernetes 1.33 and 1.37 schemas, and
checkov's Kubernetes checks pass on the chart rendered with its release namespace (or are
skipped, each with its reason, in checkov's own configuration .checkov.yaml: what a user's
cluster receives carries no scanner notes)."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.chart_helpers import AUTHS, CHART, CLOUDS, REPO, VALUES_DIR, Render, helm_bin, render, shim_values
from tests.skips import unavailable

KUBE_VERSIONS = ("1.33.0", "1.37.0")
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CHECKOV_INSTALL = "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov"
CHECKOV_CONFIG = REPO / ".checkov.yaml"
ACCEPTED_SKIPS = {"CKV_K8S_35", "CKV_K8S_38", "CKV_K8S_40"}

# A Cloud DNS solver with no serviceAccountSecretRef uses cert-manager's ambient credentials, which an Issuer
# gets only when the controller runs with --issuer-ambient-credentials (default false); a ClusterIssuer gets
# them (https://cert-manager.io/docs/configuration/acme/dns01/google/). Issue 18, defect 3.
AMBIENT_CLOUD_DNS = {
    "type": "object",
    "required": ["dns01"],
    "properties": {
        "dns01": {
            "type": "object",
            "required": ["cloudDNS"],
            "properties": {"cloudDNS": {"not": {"required": ["serviceAccountSecretRef"]}}},
        }
    },
}
# cert-manager's Issuer is not a Kubernetes kind: the fields this chart sets, checked here.
ISSUER_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "if": {"properties": {"kind": {"const": "Issuer"}}},
    "then": {
        "properties": {
            "metadata": {"required": ["namespace"]},
            "spec": {"properties": {"acme": {"properties": {"solvers": {"not": {"contains": AMBIENT_CLOUD_DNS}}}}}},
        }
    },
    "else": {"properties": {"metadata": {"not": {"required": ["namespace"]}}}},
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"enum": ["Issuer", "ClusterIssuer"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["acme"],
            "properties": {
                "acme": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["email", "server", "privateKeySecretRef", "solvers"],
                    "properties": {
                        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
                        "server": {"type": "string", "pattern": "^https://"},
                        "privateKeySecretRef": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string", "minLength": 1}},
                            "additionalProperties": False,
                        },
                        "solvers": {"type": "array", "minItems": 1},
                    },
                }
            },
        },
    },
}


def variants() -> list[tuple[str, Render]]:
    out = []
    for helm in ("helm4", "helm3"):
        for cloud in CLOUDS:
            for auth in AUTHS:
                out.append((f"{helm}-{cloud}-{auth}", render(helm, shim_values(cloud, auth))))
            out.append((f"{helm}-{cloud}-file", render(helm, files=(VALUES_DIR / "good" / f"{cloud}.yaml",))))
        out.append((f"{helm}-gcp-dns01", render(helm, shim_values("gcp", DNS_ZONE="example.org"))))
        no_pvc = shim_values("local")
        no_pvc["database"]["persistence"] = False
        out.append((f"{helm}-local-emptydir", render(helm, no_pvc)))
    return out


def test_rendered_manifests_validate_against_kubernetes_schemas() -> None:
    kinds: set[str] = set()
    seen: set[str] = set()  # many variants render identical objects: validate each once
    checked = 0
    for name, r in variants():
        assert r.rc == 0, (name, r.err)
        for doc in r.docs:
            kinds.add(doc["kind"])
            key = json.dumps(doc, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            if doc["apiVersion"].startswith("cert-manager.io/"):
                jsonschema.validate(doc, ISSUER_SCHEMA)
                continue
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc}")
                checked += 1
    assert checked > 100
    assert {"Deployment", "Service", "Ingress", "PersistentVolumeClaim", "Issuer", "NetworkPolicy", "Role"} <= kinds
    assert "ClusterIssuer" in kinds


def test_an_issuer_relying_on_ambient_cloud_dns_credentials_fails_validation() -> None:
    """The schema above is not vacuous: the namespaced Issuer the chart rendered with DNS_ZONE before issue 18
    (Cloud DNS, no key) fails it, and the ClusterIssuer it renders now passes."""
    (issuer,) = [d for d in render("helm4", shim_values("gcp", DNS_ZONE="example.org")).docs if "Issuer" in d["kind"]]
    jsonschema.validate(issuer, ISSUER_SCHEMA)
    namespaced = {**issuer, "kind": "Issuer", "metadata": {**issuer["metadata"], "namespace": "cmbcluster"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(namespaced, ISSUER_SCHEMA)


def test_strict_validation_catches_an_unknown_field() -> None:
    """The check above is not vacuous: a misspelt field fails it."""
    r = render("helm4", shim_values("aws"))
    doc = json.loads(json.dumps(r.deployment("backend")))
    doc["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def _checkov(values_file: Path, helm_dir: Path) -> dict[str, Any]:
    """Render as a deploy does (release namespace given), then scan the manifests."""
    rendered = helm_dir.parent / f"{values_file.stem}-manifests.yaml"
    template = [str(helm_dir / "helm"), "template", "cmbcluster", str(CHART), "-n", "cmbcluster"]
    done = subprocess.run([*template, "-f", str(values_file)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rendered.write_text(done.stdout)
    env = {**os.environ, "PATH": f"{helm_dir}:{os.environ.get('PATH', '')}"}
    cmd = [str(CHECKOV), "-f", str(rendered), "--config-file", str(CHECKOV_CONFIG), "--skip-download", "--compact"]
    cmd += ["-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False)
    assert proc.stdout.strip().startswith("{"), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    report["returncode"] = proc.returncode
    report["stderr"] = proc.stderr
    return report


def test_checkov_kubernetes_checks_pass_or_carry_a_reason(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        unavailable(f"checkov not installed at {CHECKOV}: run `{CHECKOV_INSTALL}` in the repository root")
    # checkov runs `helm` from PATH: give it this environment's Helm 4.
    helm_dir = tmp_path / "bin"
    helm_dir.mkdir()
    (helm_dir / "helm").symlink_to(helm_bin("helm4"))
    files = [VALUES_DIR / "good" / f"{cloud}.yaml" for cloud in CLOUDS]
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        reports = list(pool.map(lambda f: _checkov(f, helm_dir), files))
    for values_file, report in zip(files, reports, strict=True):
        where = values_file.name
        summary = report["summary"]
        # checkov skips a chart it cannot render (or whose skip annotations it cannot parse)
        # and still reports success: make sure it really scanned everything.
        assert summary["resource_count"] >= 15, (where, summary, report["stderr"][-3000:])
        assert summary["passed"] > 150, (where, summary)
        assert summary["parsing_errors"] == 0, where
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert not failed and summary["failed"] == 0, (where, failed)
        assert report["returncode"] == 0, where
        # the accepted findings are skipped by the configuration (each with its reason there), not
        # by notes on the objects: nothing is reported as skipped by an annotation
        assert report["results"]["skipped_checks"] == [], where


def test_checkov_configuration_skips_only_the_accepted_checks_with_reasons() -> None:
    import yaml

    text = CHECKOV_CONFIG.read_text()
    assert set(yaml.safe_load(text)["skip-check"]) == ACCEPTED_SKIPS
    for check in ACCEPTED_SKIPS:  # each skip has its reason in the comment above it
        before = text.split(f"  - {check}")[0].rstrip().splitlines()[-1]
        assert before.strip().startswith("#") and len(before) > 40, check


@pytest.mark.parametrize("cloud", CLOUDS)
def test_no_rendered_object_carries_a_scanner_note(cloud: str) -> None:
    """Users' clusters receive no checkov (or other scanner) annotations."""
    values = VALUES_DIR / "good" / f"{cloud}.yaml"
    proc = subprocess.run(
        [helm_bin("helm4"), "template", "cmbcluster", str(CHART), "-n", "cmbcluster", "-f", str(values)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "checkov" not in proc.stdout.lower()
    import yaml

    for doc in filter(None, yaml.safe_load_all(proc.stdout)):
        for meta in (doc["metadata"], ((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}):
            assert "annotations" not in meta or meta["annotations"], (doc["kind"], doc["metadata"]["name"])
