"""The README's "Before the first deploy" table, line by line, against what preflight reads (issue 18).

Every CSIDriver, IngressClass and StorageClass the table names for a cloud is one preflight reads for
that cloud, and every one preflight reads is named there. What preflight reads is recorded at the
network edge: the cluster-object part of preflight (`Cloud.prerequisites`, the one place that reads
them; the clouds' own additions call cloud APIs, tested elsewhere) runs against a Kubernetes API on
127.0.0.1 that answers every object as missing and records each path it is asked for.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.envfiles import good_env
from tools import kube_ops
from tools.cloud import Cloud, cloud_for
from tools.settings import REPO_ROOT, load_settings

README = REPO_ROOT / "README.md"
COLUMNS = {"AWS (EKS)": "aws", "GCP (GKE)": "gcp", "local (kind, k3s, minikube)": "local"}
KINDS = {"csidrivers": "CSIDriver", "ingressclasses": "IngressClass", "storageclasses": "StorageClass"}
NAMED = re.compile(r"\b(CSIDriver|IngressClass|StorageClass) `([^`]+)`")


def table() -> dict[str, dict[str, str]]:
    """The table's cells: row title -> cloud -> text."""
    section = README.read_text().split("## Before the first deploy: the cluster\n", 1)[1].split("\n## ", 1)[0]
    first_table = "|" + section.split("\n|", 1)[1].split("\n\n", 1)[0]  # the section holds other tables too
    lines = first_table.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[1:] == list(COLUMNS), header
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = {COLUMNS[h]: cell for h, cell in zip(header[1:], cells[1:], strict=True)}
    return rows


class Recorder(BaseHTTPRequestHandler):
    """A Kubernetes API where nothing exists: 404 for an object, an empty list for a collection."""

    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path.split("?", 1)[0])
        resource_or_name = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[1]
        if resource_or_name in KINDS:
            status, body = 200, {"kind": "List", "apiVersion": "v1", "items": []}
        else:
            status, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recording_api() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Recorder,), {"paths": paths}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as folder:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "r", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
            "users": [{"name": "r", "user": {"token": "recorder"}}],
            "contexts": [{"name": "r", "context": {"cluster": "r", "user": "r"}}],
            "current-context": "r",
        }
        kubeconfig = Path(folder) / "config"
        kubeconfig.write_text(yaml.safe_dump(config))
        yield str(kubeconfig), paths
    server.shutdown()


def preflight_reads(recording_api: tuple[str, list[str]], cloud: str, **overrides: str) -> set[tuple[str, str]]:
    """(kind, name) of every cluster object preflight reads; name "" for a whole collection."""
    kubeconfig, paths = recording_api
    paths.clear()
    with kube_ops.api_client(kubeconfig) as api:
        Cloud.prerequisites(cloud_for(load_settings(cloud=cloud, environ=good_env(cloud, **overrides))), api)
    out = set()
    for path in paths:
        parts = path.rstrip("/").split("/")
        resource, name = (parts[-1], "") if parts[-1] in KINDS else (parts[-2], parts[-1])
        out.add((KINDS[resource], name))
    return out


@pytest.mark.parametrize("cloud", ["aws", "gcp", "local"])
def test_every_cluster_object_the_table_names_is_one_preflight_reads_and_vice_versa(recording_api, cloud) -> None:
    rows = table()
    named = {(kind, name) for cells in rows.values() for kind, name in NAMED.findall(cells[cloud])}
    reads = preflight_reads(recording_api, cloud)
    assert named == {read for read in reads if read[1]}, f"{cloud}: the table names {named}, preflight reads {reads}"
    # the database's class: the default one (a list of all), or the one DATABASE_STORAGE_CLASS names
    assert ("StorageClass", "") in reads
    assert "default" in rows["database volume"][cloud]
    assert "`DATABASE_STORAGE_CLASS`" in rows["database volume"][cloud]
    assert ("StorageClass", "fast") in preflight_reads(recording_api, cloud, DATABASE_STORAGE_CLASS="fast")
