"""The reporter (redaction, annotations, colour) and the one subprocess runner."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tools.errors import ToolError
from tools.report import REPORTER, Reporter, markdown_table
from tools.runner import run


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_registered_secrets_are_redacted_everywhere() -> None:
    out, err = io.StringIO(), io.StringIO()
    rep = Reporter(out, err)
    rep.register_secrets(["s3cr3t-value-xyz", None, "ab"])  # too short values are not redacted
    rep.info("token s3cr3t-value-xyz here")
    rep.error("failed with s3cr3t-value-xyz")
    assert "s3cr3t" not in out.getvalue() + err.getvalue()
    assert "token *** here" in out.getvalue()


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty, plain = Tty(), io.StringIO()
    Reporter(tty, tty).ok("done", 1.5)
    Reporter(plain, plain).ok("done", 1.5)
    assert "\033[32m" in tty.getvalue()
    assert plain.getvalue() == "ok      done (1.50s)\n"


def test_github_annotations_and_masks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out, err = io.StringIO(), io.StringIO()
    rep = Reporter(out, err)
    rep.register_secrets(["line-one-secret\nline-two-secret"])
    rep.error("bad: 100% broken, line-one-secret", title="step: one")
    rep.summary("| a | line-two-secret |")
    text = out.getvalue()
    assert "::add-mask::line-one-secret\n::add-mask::line-two-secret\n" in text
    assert "::error title=step%3A one::bad: 100%25 broken, ***" in text
    assert summary.read_text() == "| a | *** |\n\n"


def test_action_lines_carry_result_and_time() -> None:
    out, err = io.StringIO(), io.StringIO()
    rep = Reporter(out, err)
    with rep.action("push image") as result:
        result.set("skip", "already in the registry")
    with pytest.raises(RuntimeError), rep.action("build image"):
        raise RuntimeError("boom")
    assert out.getvalue().startswith("skipped push image: already in the registry (")
    assert err.getvalue().startswith("error   build image: failed (")


def test_markdown_table_escapes_pipes() -> None:
    assert markdown_table(["a", "b"], [["x|y", 1]]) == "| a | b |\n|---|---|\n| x\\|y | 1 |"


def test_run_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "created"
    proc = run(["touch", str(target)], dry_run=True)
    assert proc.returncode == 0 and not target.exists()
    assert f"would run: touch {target}" in capsys.readouterr().out


def test_run_passes_secrets_on_stdin_not_argv() -> None:
    proc = run([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"], input="abc")
    assert proc.stdout.strip() == "cba"


def test_run_failure_is_one_clear_error_with_secrets_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    REPORTER.register_secrets(["hunter2-very-secret"])
    with pytest.raises(ToolError) as err:
        run([sys.executable, "-c", "import sys; sys.exit('denied for hunter2-very-secret')"], what="login")
    assert str(err.value).startswith("login failed after ")
    assert "hunter2" not in str(err.value) + capsys.readouterr().err


def test_run_missing_binary() -> None:
    with pytest.raises(ToolError, match="no-such-binary-xyz is not installed"):
        run(["no-such-binary-xyz"])


def test_markdown_cells_are_safe() -> None:
    """Event text and log lines reach the job summary: no row break, no HTML, no link, no image."""
    event = 'Back-off | pulling "x"\nnew row | <img src=x onerror=alert(1)> [click](http://evil) ![i](http://e) *b* `c`'
    table = markdown_table(["reason"], [[event]])
    row = table.splitlines()[2]
    assert len(table.splitlines()) == 3  # the newline did not start a row
    assert row.count(" | ") == 0 and row.startswith("| ") and row.endswith(" |")
    assert "<img" not in row and "&lt;img" in row
    assert "[click]" not in row and "\\[click\\]" in row and "!\\[i\\]" in row


def test_masks_and_annotations_survive_workflow_command_characters(monkeypatch) -> None:
    """A secret with %, CR or LF: the mask is escaped as the runner expects, and an annotation is
    redacted before it is escaped (escaping first would hide the secret from redaction)."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out = io.StringIO()
    reporter = Reporter(out=out, err=io.StringIO())
    secret = "p%40ss:w0rd,with%0Apercent"
    reporter.register_secrets([secret])
    reporter.annotate("error", f"login failed for {secret}", title=f"user {secret}")
    text = out.getvalue()
    assert "::add-mask::p%2540ss:w0rd,with%250Apercent\n" in text
    annotation = text.splitlines()[-1]
    assert annotation.startswith("::error title=user ***::login failed for ***"), annotation
    assert "p%40ss" not in annotation and "p%2540ss" not in annotation


def test_sigterm_removes_temporary_credentials(tmp_path: Path) -> None:
    """A cancelled CI job sends SIGTERM: the copied kubeconfig must not stay behind in /tmp."""
    import os
    import select
    import signal
    import socket
    import subprocess

    from tests.envfiles import good_env, write_env
    from tests.waiting import eventually
    from tools.settings import REPO_ROOT

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers: the tool waits
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{silent.getsockname()[1]}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: pinned, context: {cluster: c, user: u}}]\n"
        "current-context: pinned\n"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env_file = write_env(tmp_path / "local.env", good_env("local", KUBE_CONTEXT="pinned"))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "TMPDIR": str(scratch), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.smoke_test", "--cloud", "local", "--env-file", str(env_file), "--no-endpoints"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def waiting_on_the_cluster() -> bool:
        assert proc.poll() is None, proc.communicate()
        # the tool copied the kubeconfig to pin the context, and connects to the cluster (which never answers)
        return bool(list(scratch.iterdir())) and bool(select.select([silent], [], [], 0)[0])

    try:
        eventually(waiting_on_the_cluster, "smoke_test connecting to the cluster with its copy of the kubeconfig", 30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        silent.close()
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM during the smoke test's checks" in err and "Traceback" not in err
    assert list(scratch.iterdir()) == []


def test_no_step_imports_another_step_or_a_private_helper() -> None:
    """The steps are independent scripts: they share small modules, never each other; and no
    module reaches for another module's private (underscore) names."""
    import ast

    from tools.settings import REPO_ROOT

    steps = {"validate_secrets", "build_push", "make_secrets", "certs", "helm_deploy", "dns", "smoke_test", "plan"}
    found = []
    for path in sorted((REPO_ROOT / "tools").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tools"):
                target = node.module.split(".")[-1]
                names = [alias.name for alias in node.names]
                if target in steps and target != path.stem:
                    found.append(f"{path.name} imports step {target}")
                if node.module == "tools":
                    found += [f"{path.name} imports step {n}" for n in names if n in steps]
                found += [f"{path.name} imports private {node.module}.{n}" for n in names if n.startswith("_")]
    assert found == []
