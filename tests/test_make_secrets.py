"""make_secrets on the real cluster of the test bed: generate once, then keep byte for byte;
--rotate changes one key; FILE_ENCRYPTION_KEY needs a data-loss confirmation; a Secret edited by
hand; no value is printed."""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.envfiles import canary, good_env, write_env
from tests.realcluster import api as admin_api
from tools.make_secrets import main

pytestmark = pytest.mark.testbed
BACKEND, FRONTEND = "cmbcluster-backend-secrets", "cmbcluster-frontend-secrets"
SWITCHES = {
    "DEV_MODE": "false",
    "DEBUG": "false",
    "TLS_ENABLED": "true",
    "RATE_LIMIT_ENABLED": "true",
    "ENABLE_SECURITY_HEADERS": "true",
    "CSP_ENABLED": "true",
    "JWT_ALGORITHM": "HS256",
    "TOKEN_EXPIRE_HOURS": "8",
}
GENERATED = {"SECRET_KEY": None, "NEXTAUTH_SECRET": None, "FILE_ENCRYPTION_KEY": None}


@pytest.fixture
def namespace(cluster, on_cluster) -> Iterator[str]:
    """A namespace make_secrets creates itself (and the test deletes)."""
    from tests.realcluster import delete_namespace

    name = f"ms-{uuid.uuid4().hex[:10]}"
    yield name
    delete_namespace(cluster, name)


def env(tmp_path: Path, namespace: str, auth: str = "google", **overrides: str | None) -> str:
    values = good_env("local", auth, NAMESPACE=namespace, **{**GENERATED, **overrides})
    return str(write_env(tmp_path / f"{uuid.uuid4().hex[:6]}.env", values))


def raw(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data exactly as the API returns it (base64 strings), or None."""
    import os

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from tests.realcluster import api as admin_api

    try:
        secret = client.CoreV1Api(admin_api(os.environ["KUBECONFIG"])).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        assert exc.status == 404
        return None
    return dict(secret.data or {})


def decoded(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


@pytest.fixture
def api_calls(caplog: pytest.LogCaptureFixture) -> Any:
    """Every HTTP request sent to the cluster, as urllib3 logs it (method, path)."""
    import logging

    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")

    class Calls:
        def __iter__(self):  # type: ignore[no-untyped-def]
            found = []
            for record in caplog.records:
                match = re.search(r'"(GET|POST|PUT|PATCH|DELETE|HEAD) (\S+) HTTP', record.getMessage())
                if record.name == "urllib3.connectionpool" and match:
                    found.append((match.group(1), match.group(2)))
            return iter(found)

        def clear(self) -> None:
            caplog.clear()

    return Calls()


def writes(calls: Any) -> list[tuple[str, str]]:
    """The writes to the cluster, but for the release's lock (taken and released around a write)."""
    return [(m, u) for m, u in list(calls) if m not in ("GET", "HEAD") and "/leases" not in u]


def assert_no_secret_in(text: str, *secrets: dict[str, str] | None) -> None:
    from tools.settings import SECRET_VARS

    for data in secrets:
        for key, value in decoded(data or {}).items():
            if key in SECRET_VARS:
                assert value not in text, f"{key}'s value was printed"


def test_first_run_generates_second_run_changes_nothing(tmp_path, namespace, api_calls, capfd):
    from cryptography.fernet import Fernet

    envfile = env(tmp_path, namespace)
    assert main(["--cloud", "local", "--env-file", envfile]) == 0
    first = capfd.readouterr()
    assert f"namespace {namespace}: created" in first.out
    from kubernetes import client

    core = client.CoreV1Api(admin_api(os.environ["KUBECONFIG"]))
    assert core.read_namespace(namespace).metadata.name == namespace  # the namespace was made for real
    backend, frontend = raw(namespace, BACKEND), raw(namespace, FRONTEND)
    assert backend and frontend
    values = decoded(backend)
    assert set(values) == {"SECRET_KEY", "FILE_ENCRYPTION_KEY", "GOOGLE_CLIENT_SECRET", *SWITCHES}
    assert set(decoded(frontend)) == {"NEXTAUTH_SECRET", "GOOGLE_CLIENT_SECRET"}
    assert {k: values[k] for k in SWITCHES} == SWITCHES
    assert values["GOOGLE_CLIENT_SECRET"] == decoded(frontend)["GOOGLE_CLIENT_SECRET"] == canary("GOOGLE_CLIENT_SECRET")
    assert len(values["SECRET_KEY"]) >= 64 and len(decoded(frontend)["NEXTAUTH_SECRET"]) >= 64
    assert values["SECRET_KEY"] != decoded(frontend)["NEXTAUTH_SECRET"]
    token = Fernet(values["FILE_ENCRYPTION_KEY"].encode()).encrypt(b"user file")  # a real Fernet key
    assert "SECRET_KEY: created (generated)" in first.out
    assert "FILE_ENCRYPTION_KEY: created (generated)" in first.out
    assert "NEXTAUTH_SECRET: created (generated)" in first.out
    assert "GOOGLE_CLIENT_SECRET: created (settings)" in first.out

    api_calls.clear()
    assert main(["--cloud", "local", "--env-file", envfile]) == 0
    second = capfd.readouterr()
    assert raw(namespace, BACKEND) == backend and raw(namespace, FRONTEND) == frontend  # byte for byte
    assert writes(api_calls) == []  # not even the namespace: the Secrets prove it exists
    assert ": created" not in second.out and "0 created, 0 updated, 0 rotated, 13 kept; nothing to write" in second.out
    assert second.out.count(": kept") == len(backend) + len(frontend)
    assert Fernet(decoded(raw(namespace, BACKEND))["FILE_ENCRYPTION_KEY"].encode()).decrypt(token) == b"user file"
    assert_no_secret_in(first.out + first.err + second.out + second.err, backend, frontend)


def test_rotate_changes_one_key_only(tmp_path, namespace, api_calls, capfd):
    envfile = env(tmp_path, namespace)
    assert main(["--cloud", "local", "--env-file", envfile]) == 0
    backend, frontend = raw(namespace, BACKEND), raw(namespace, FRONTEND)
    api_calls.clear()
    assert main(["--cloud", "local", "--env-file", envfile, "--rotate", "SECRET_KEY"]) == 0
    out = capfd.readouterr()
    after = raw(namespace, BACKEND)
    assert after["SECRET_KEY"] != backend["SECRET_KEY"]
    assert {k: v for k, v in after.items() if k != "SECRET_KEY"} == {
        k: v for k, v in backend.items() if k != "SECRET_KEY"
    }
    assert raw(namespace, FRONTEND) == frontend
    assert [m for m, _ in writes(api_calls)] == ["PATCH"]  # one write: the backend Secret, one key
    assert "SECRET_KEY: rotated (generated)" in out.out
    assert_no_secret_in(out.out + out.err, backend, after, frontend)


def test_encryption_key_rotation_needs_the_data_loss_confirmation(tmp_path, namespace, api_calls, capfd):
    envfile = env(tmp_path, namespace)
    assert main(["--cloud", "local", "--env-file", envfile]) == 0
    backend = raw(namespace, BACKEND)
    capfd.readouterr()
    api_calls.clear()
    assert main(["--cloud", "local", "--env-file", envfile, "--rotate", "FILE_ENCRYPTION_KEY"]) == 2
    refused = capfd.readouterr()
    assert writes(api_calls) == [] and raw(namespace, BACKEND) == backend
    (line,) = [line for line in refused.err.splitlines() if line.strip()]
    assert "unreadable" in line and "--i-understand-data-loss" in line

    argv = ["--rotate", "FILE_ENCRYPTION_KEY", "--i-understand-data-loss"]
    assert main(["--cloud", "local", "--env-file", envfile, *argv]) == 0
    rotated = raw(namespace, BACKEND)
    assert rotated["FILE_ENCRYPTION_KEY"] != backend["FILE_ENCRYPTION_KEY"]
    assert {k for k in rotated if rotated[k] != backend[k]} == {"FILE_ENCRYPTION_KEY"}
    out = capfd.readouterr()
    assert "FILE_ENCRYPTION_KEY: rotated (generated)" in out.out
    assert_no_secret_in(refused.out + refused.err + out.out + out.err, backend, rotated)


def test_a_changed_setting_is_an_update_except_the_encryption_key(tmp_path, namespace, capfd):
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace)]) == 0
    backend = raw(namespace, BACKEND)
    capfd.readouterr()

    new_key = canary("operator-chosen-key")
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace, SECRET_KEY=new_key)]) == 0
    out = capfd.readouterr().out
    assert "SECRET_KEY: updated (settings)" in out and new_key not in out
    assert decoded(raw(namespace, BACKEND))["SECRET_KEY"] == new_key

    other_fernet = base64.urlsafe_b64encode(b"x" * 32).decode()
    kept = raw(namespace, BACKEND)
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace, FILE_ENCRYPTION_KEY=other_fernet)]) == 1
    refused = capfd.readouterr()
    assert raw(namespace, BACKEND) == kept and kept["FILE_ENCRYPTION_KEY"] == backend["FILE_ENCRYPTION_KEY"]
    assert "--rotate FILE_ENCRYPTION_KEY --i-understand-data-loss" in refused.err
    assert other_fernet not in refused.out + refused.err


def test_provider_secrets_follow_the_configured_providers(tmp_path, namespace, capfd):
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace)]) == 0
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace, auth="both")]) == 0
    out = capfd.readouterr().out
    assert f"{BACKEND} COGNITO_CLIENT_SECRET: created (settings)" in out
    assert f"{FRONTEND} COGNITO_CLIENT_SECRET: created (settings)" in out
    assert decoded(raw(namespace, FRONTEND))["COGNITO_CLIENT_SECRET"] == canary("COGNITO_CLIENT_SECRET")
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace, auth="cognito")]) == 0
    out = capfd.readouterr().out
    assert f"{FRONTEND} GOOGLE_CLIENT_SECRET: left as is (no longer configured)" in out
    assert canary("GOOGLE_CLIENT_SECRET") not in out and canary("COGNITO_CLIENT_SECRET") not in out


def test_dry_run_says_what_it_would_do_and_writes_nothing(tmp_path, namespace, api_calls, capfd):
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace), "--dry-run"]) == 0
    out = capfd.readouterr().out
    assert writes(api_calls) == []
    assert raw(namespace, BACKEND) is None and raw(namespace, FRONTEND) is None
    assert "SECRET_KEY: would create (generated)" in out and "dry run: nothing was written" in out


def test_refuses_before_any_change_when_the_rules_report_errors(tmp_path, namespace, api_calls, capfd):
    assert main(["--cloud", "local", "--env-file", env(tmp_path, namespace, SECRET_KEY="too-short")]) == 1
    err = capfd.readouterr().err
    assert list(api_calls) == [] and "SECRET_KEY" in err and "nothing was changed" in err
    assert "too-short" not in err


def test_no_cluster_access_is_one_clear_line(tmp_path, monkeypatch, capfd):
    from tests.testbed import free_port

    port = free_port()  # nothing listens there
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert main(["--cloud", "local", "--env-file", env(tmp_path, "nowhere")]) == 1
    (line,) = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert f"cannot reach the Kubernetes API at http://127.0.0.1:{port}" in line


def test_a_secret_edited_by_hand_is_kept_and_a_missing_key_is_restored(tmp_path, namespace, api_calls, capfd):
    """Someone ran `kubectl edit secret`: a value they changed is theirs to keep (never rotated back
    silently), an extra key they added stays, and a generated key they deleted is made again."""
    from kubernetes import client

    envfile = env(tmp_path, namespace)
    assert main(["--cloud", "local", "--env-file", envfile]) == 0
    before = decoded(raw(namespace, BACKEND))
    core = client.CoreV1Api(admin_api(os.environ["KUBECONFIG"]))
    edited = base64.b64encode(b"x" * 64).decode()
    core.patch_namespaced_secret(BACKEND, namespace, {"data": {"SECRET_KEY": edited, "EXTRA": "eWVz"}})
    core.patch_namespaced_secret(FRONTEND, namespace, [{"op": "remove", "path": "/data/NEXTAUTH_SECRET"}])
    capfd.readouterr()
    api_calls.clear()
    assert main(["--cloud", "local", "--env-file", envfile]) == 0
    out = capfd.readouterr().out
    after = decoded(raw(namespace, BACKEND))
    assert after["SECRET_KEY"] == "x" * 64 and after["EXTRA"] == "yes"
    assert after["FILE_ENCRYPTION_KEY"] == before["FILE_ENCRYPTION_KEY"]
    frontend = decoded(raw(namespace, FRONTEND))
    assert len(frontend["NEXTAUTH_SECRET"]) >= 64
    assert "NEXTAUTH_SECRET: created (generated)" in out and "SECRET_KEY: kept" in out
    assert [m for m, _ in writes(api_calls)] == ["PATCH"]  # only the frontend Secret
    assert_no_secret_in(out, raw(namespace, BACKEND), raw(namespace, FRONTEND))
