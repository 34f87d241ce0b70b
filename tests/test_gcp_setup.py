"""The printed GCP set-up (`make cloud-setup CLOUD=gcp`, issue 18): it runs to its end on a fresh project
(defect 2), the backend can make user buckets (defect 4), and the deploy service account's bucket rights
reach only the toolkit's buckets (defect 8).

IAM conditions are read here with the two forms the toolkit prints (`resource.name == '...'` and
`resource.name.startsWith('...')`, https://cloud.google.com/iam/docs/conditions-overview#cel); how GCS
evaluates them on a real project cannot be staged offline (README, "Not verifiable offline")."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.envfiles import good_env
from tools.cloud import GcpCloud
from tools.cloud_permissions import GCS_BUCKET, gcp_permissions
from tools.cloud_setup import gcp_script
from tools.settings import REPO_ROOT, load_settings

TERM = re.compile(r"^resource\.name(?: == '([^']*)'|\.startsWith\('([^']*)'\))$")
# What the predefined roles the toolkit binds hold of the permissions checked here
# (https://cloud.google.com/storage/docs/access-control/iam-roles).
PREDEFINED = {
    "roles/storage.admin": {"storage.buckets.create", "storage.buckets.get", "storage.buckets.update",
                            "storage.objects.list", "storage.objects.delete"},
    "roles/storage.objectUser": {"storage.objects.list", "storage.objects.delete"},
}  # fmt: skip


def cloud(**overrides: str) -> GcpCloud:
    return GcpCloud(load_settings(cloud="gcp", environ=good_env("gcp", **overrides)))


DEPLOY = "cmbcluster-deploy@cmb-project.iam.gserviceaccount.com"


def script(c: GcpCloud) -> str:
    return gcp_script(c, "CMBAgents/cmbcluster-deploy", ("1111", "2222"), ["staging"], DEPLOY, "github")


def matches(condition: str, name: str) -> bool:
    """Whether an IAM condition of the printed forms admits the resource `name` (None: no condition)."""
    if condition == "None":
        return True
    verdicts = []
    for term in condition.split(" || "):
        found = TERM.match(term)
        assert found, f"a condition term the test cannot read: {term!r}"
        equal, prefix = found.groups()
        verdicts.append(name == equal if equal is not None else name.startswith(prefix))
    return any(verdicts)


def bindings(text: str, member: str) -> list[tuple[set[str], str]]:
    """The project-level bindings of `member` in `text`: (the role's permissions, its condition)."""
    words = shlex.split(text.replace("\\\n", " "), comments=True)
    commands, current = [], []
    for word in [*words, "gcloud"]:
        if word == "gcloud" and current:
            commands.append(current)
            current = []
        current.append(word)
    custom = {}
    for c in commands:
        if c[1:4] == ["iam", "roles", "create"]:
            custom[c[4]] = set(c[c.index("--permissions") + 1].split(","))
    out = []
    for c in commands:
        if c[1:3] != ["projects", "add-iam-policy-binding"]:
            continue
        flags = dict(re.match(r"--([\w-]+)=?(.*)", w).groups() for w in c if w.startswith("--") and "=" in w)
        for i, w in enumerate(c):
            if w.startswith("--") and "=" not in w and i + 1 < len(c):
                flags[w[2:]] = c[i + 1]
        if flags["member"] != f"serviceAccount:{member}":
            continue
        role = flags["role"]
        permissions = (
            custom[role.rsplit("/", 1)[1]] if "/roles/" in role and role.startswith("projects/") else PREDEFINED[role]
        )
        condition = flags.get("condition", "None")
        out.append((permissions, condition.split("expression=", 1)[1] if "expression=" in condition else condition))
    return out


def allowed(text: str, member: str, permission: str, resource: str) -> bool:
    return any(permission in p and matches(condition, resource) for p, condition in bindings(text, member))


def test_the_deploy_accounts_bucket_rights_reach_only_its_buckets() -> None:
    """Defect 8: storage.objects.delete and storage.buckets.update on every bucket of the project, before."""
    c = cloud()
    text = script(c)
    declared = gcp_permissions(c)
    others = [f"{GCS_BUCKET}{c.user_bucket_prefix}-alice", f"{GCS_BUCKET}{c.database_bucket}-other", f"{GCS_BUCKET}x"]
    for permission, resources in declared.items():
        for resource in resources:  # each declared need is granted where it is needed
            assert allowed(text, DEPLOY, permission, resource), (permission, resource)
            if resource.startswith(GCS_BUCKET):  # and on the bucket's objects
                assert allowed(text, DEPLOY, permission, f"{resource}/objects/a"), (permission, resource)
        if all(r.startswith(GCS_BUCKET) for r in resources):  # and nowhere else
            for name in [*others, *(f"{GCS_BUCKET}{b}" for b in (c.database_bucket, c.smoke_bucket))]:
                if name not in resources:
                    assert not allowed(text, DEPLOY, permission, name), (permission, name)
    smoke, database = f"{GCS_BUCKET}{c.smoke_bucket}", f"{GCS_BUCKET}{c.database_bucket}"
    assert allowed(text, DEPLOY, "storage.objects.delete", f"{smoke}/objects/cmbcluster-storage-check/x")
    assert not allowed(text, DEPLOY, "storage.objects.delete", f"{database}/objects/litestream/cmbcluster.db")
    unconditioned = set().union(*(p for p, condition in bindings(text, DEPLOY) if condition == "None"))
    assert {p for p in unconditioned if p.startswith("storage.")} == {"storage.buckets.create"}


def test_the_backend_can_make_user_buckets_and_manage_only_those() -> None:
    """Defect 4: storage.buckets.create is checked on the project, where a condition on the new bucket's
    name has none to match; before, the backend had it only through such a condition."""
    c = cloud()
    backend = c.settings["GCP_SERVICE_ACCOUNT_EMAIL"]
    text = "\n".join(t for _, t in c.workload_policies())
    unconditioned = [p for p, condition in bindings(text, backend) if condition == "None"]
    assert unconditioned == [{"storage.buckets.create"}]  # a role of its own on the project: creating only
    alice = f"{GCS_BUCKET}{c.user_bucket_prefix}-alice"
    assert allowed(text, backend, "storage.buckets.update", alice)
    assert allowed(text, backend, "storage.objects.delete", f"{alice}/objects/notebook.ipynb")
    assert not allowed(text, backend, "storage.buckets.update", f"{GCS_BUCKET}{c.database_bucket}")
    assert not allowed(text, backend, "storage.objects.delete", f"{GCS_BUCKET}someone-elses/objects/a")


@pytest.mark.testbed
def test_the_printed_set_up_runs_to_its_end_on_a_fresh_project(gcs_url: str, bed_env: dict, tmp_path: Path) -> None:
    """Defect 2: the backend was bound to the database bucket before anything made it, under
    `set -euo pipefail`: the script stopped there and the grants after it never ran. Run twice: it converges."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    c = cloud(CLUSTER_NAME=f"cmb{uuid.uuid4().hex[:8]}")
    (tmp_path / "bin").mkdir()
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO_ROOT / "tests" / "gcloud_standin.py"} "$@"\n')
    gcloud.chmod(0o755)
    log = tmp_path / "gcloud.log"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "GCLOUD_LOG": str(log)}
    text = script(c)
    last = text.rstrip().splitlines()[-1]
    user = c.settings["GCP_USER_SERVICE_ACCOUNT_EMAIL"]
    for _ in range(2):
        log.write_text("")
        run = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        ran = log.read_text().splitlines()
        assert ran[-1].startswith("projects add-iam-policy-binding") and f"serviceAccount:{user}" in ran[-1], last
    bucket = storage.Client(project="x", credentials=AnonymousCredentials()).get_bucket(c.database_bucket)
    assert bucket.iam_configuration.uniform_bucket_level_access_enabled
    assert bucket.iam_configuration.public_access_prevention == "enforced"
