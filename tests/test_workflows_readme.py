"""The README's walkthrough stays true: its commands, names, variables and messages exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from tests.test_workflows import WORKFLOWS, load, makefile_targets
from tools import cloud
from tools.settings import REPO_ROOT, SECRET_VARS, VARS_BY_NAME

README = (REPO_ROOT / "README.md").read_text()
GITHUB_TEXT = "\n".join(p.read_text() for p in sorted((REPO_ROOT / ".github").rglob("*")) if p.is_file())


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_first_block_is_the_two_set_up_commands() -> None:
    first = README.split("```")[1]
    assert first.startswith("bash\nmake setup && make demo             #")
    assert "\nmake test                           #" in first


def test_every_make_command_in_the_readme_exists() -> None:
    targets = makefile_targets()
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"deploy-aws", "deploy-gcp", "deploy-local", "validate", "smoke", "plan", "test"} <= used
    assert used <= targets, used - targets


def test_every_file_the_readme_names_exists() -> None:
    paths = set(re.findall(r"`((?:\.github|env|tests|tools|helm)/[\w./-]+)`", README))
    names = re.findall(r"`(\w+\.yml)`", README)
    assert len(paths) >= 20 and len(names) >= 5, (paths, names)  # the pattern still finds what the README names
    for path in paths:
        if "<" not in path:  # env/aws.env is yours (git-ignored), made from env/aws.env.example
            assert (REPO_ROOT / path).exists() or (REPO_ROOT / f"{path}.example").exists(), path
    for name in names:
        assert (WORKFLOWS / name).exists() or (REPO_ROOT / ".github" / name).exists(), name


def test_variables_and_secrets_tables_match_the_workflows() -> None:
    setup = section("Deploy from GitHub Actions")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", setup))
    used_vars = set(re.findall(r"\bvars\.([A-Z][A-Z0-9_]+)", GITHUB_TEXT))
    used_secrets = set(re.findall(r"\bsecrets\.([A-Z][A-Z0-9_]+)", GITHUB_TEXT))
    assert used_vars <= documented, f"variables the workflows read but the README omits: {used_vars - documented}"
    assert used_secrets <= documented, f"secrets the workflows use but the README omits: {used_secrets - documented}"
    secrets_table = {
        name for row in table_rows(setup) if row[0].startswith("`") for name in re.findall(r"`(\w+)`", row[0])
    }
    assert set(SECRET_VARS) <= secrets_table
    assert documented
    for name in documented:  # every name in the set-up is something the workflows or the toolkit read
        assert name in used_vars | used_secrets or name in VARS_BY_NAME or name == "OWNER", name


def test_the_manual_run_inputs_are_the_release_workflows() -> None:
    inputs = load(WORKFLOWS / "release.yml")["on"]["workflow_dispatch"]["inputs"]
    rows = {row[0].strip("`"): row for row in table_rows(section("Deploy from GitHub Actions")) if len(row) == 3}
    assert inputs and rows
    for name, spec in inputs.items():
        assert name in rows, f"input {name} is not in the README's table"
        for option in spec.get("options", []):
            assert f"`{option}`" in rows[name][1], (name, option)
    commands = re.findall(r"gh workflow run release\.yml[^\n]*", README)
    assert commands and all(re.search(r"-f (\w+)=", c) for c in commands), commands
    for command in commands:
        for name in re.findall(r"-f (\w+)=", command):
            assert name in inputs, command


def test_the_environment_names_and_oidc_subject_follow_the_workflows() -> None:
    jobs = load(WORKFLOWS / "deploy.yml")["jobs"]
    assert jobs["deploy"]["environment"]["name"] == "${{ inputs.target || inputs.cloud }}-${{ inputs.environment }}"
    assert "`<target>-<environment>`" in README and "`<cloud>-<environment>`" in README  # a cloud is a target
    assert "<environment>-deploy`" not in README  # no sibling
    status = load(WORKFLOWS / "status.yml")["jobs"]["status"]
    assert status["environment"]["name"] == "${{ matrix.target.target }}-status" and "`<target>-status`" in README
    # the sub claims of the approved job, in both formats GitHub sends
    assert "repo:OWNER/REPO:environment:aws-production`" in README
    assert "repo:OWNER@OWNER_ID/REPO@REPO_ID:environment:aws-production`" in README
    assert "make cloud-setup CLOUD=aws" in README and "make cloud-setup CLOUD=gcp" in README
    release = load(WORKFLOWS / "release.yml")
    assert release["on"]["push"]["tags"] == ["v[0-9]+.[0-9]+.[0-9]+*"] and "git push origin v1.4.0" in README


def test_the_release_set_up_is_what_github_setup_and_the_gate_do() -> None:
    text = section("Deploy from GitHub Actions")
    assert "make github-setup CLOUD=aws ARGS=" in text and "make github-setup" in text.split("make cloud-setup")[0]
    assert "`make github-gate`" in text and "`STAGING_REFS`" in text
    assert "vars.STAGING_REFS" in GITHUB_TEXT and "make github-gate" in GITHUB_TEXT
    for claim in ("What an operator creates once", "What each approval unlocks", "What a re-run asks"):
        assert claim in text, claim
    assert "asks its environment's reviewers again" in text


def test_the_cluster_prerequisites_name_what_the_toolkit_checks() -> None:
    text = section("Before the first deploy: the cluster")
    for cls in (cloud.AwsCloud, cloud.GcpCloud):
        assert f"`{cls.csi_driver}`" in text
    assert f":{cloud.BACKEND_SERVICE_ACCOUNT}`" in text and f":{cloud.USER_SERVICE_ACCOUNT}`" in text
    assert "IngressClass `alb`" in text and "IngressClass `nginx`" in text
    assert (
        "`aws-mountpoint-s3-csi-driver`" in text and "aws-mountpoint-s3-csi-driver" in cloud.AwsCloud.csi_driver_install
    )


def _python_strings() -> tuple[list[str], list[re.Pattern[str]]]:
    """Every string literal of tools/ and .github/ (f-string parts too) and each f-string as a pattern
    of the whole message it prints."""
    literals: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for path in [*(REPO_ROOT / "tools").rglob("*.py"), *(REPO_ROOT / ".github").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                # a value is one word, except at the very end; literal text must follow the first value,
                # else `f"IngressClass {name}"` would stand for any message that starts so
                values = node.values
                first = next((i for i, v in enumerate(values) if not isinstance(v, ast.Constant)), len(values))
                if not any(isinstance(v, ast.Constant) and v.value.strip() for v in values[first:]):
                    continue
                parts = [
                    re.escape(v.value) if isinstance(v, ast.Constant) else (".+" if i == len(values) - 1 else r"\S+")
                    for i, v in enumerate(values)
                ]
                patterns.append(re.compile("".join(parts)))
    return literals, patterns


def test_the_troubleshooting_messages_are_the_ones_the_tools_print() -> None:
    rows = table_rows(section("Troubleshooting"))[1:]
    assert len(rows) >= 10
    seed = ("CLOUD_PROVIDER", "No authentication provider configured", "s3", "IRSA", "environment variable")
    for word in seed:  # the seed's five rows are all there
        assert any(word in row[0] or word in row[1] for row in rows), word
    literals, patterns = _python_strings()
    checked = 0
    for row in rows:
        for message in re.findall(r"`([^`]+)`", row[0]):
            pieces = [p.strip() for p in message.split("…") if p.strip()]
            found = (
                message in GITHUB_TEXT
                or any(p.fullmatch(message) for p in patterns)
                or all(any(piece in lit for lit in literals) for piece in pieces)
            )
            assert found, f"no tool prints {message!r}"
            checked += 1
    assert checked >= 8
    names = [
        n
        for c in re.findall(r"`(kubectl [^`]+)`", section("Troubleshooting"))
        for n in re.findall(r"\b(cmbcluster-[a-z-]+)\b", c)
    ]
    assert names
    for name in names:
        assert name in (cloud.BACKEND_SERVICE_ACCOUNT, cloud.USER_SERVICE_ACCOUNT), name


def test_summary_and_artifact_claims_hold() -> None:
    deploy = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    assert "images" in deploy[True]["workflow_call"]["outputs"]
    assert "output `images`" in README
    for tool in ("build_push", "helm_deploy", "smoke_test"):
        assert "REPORTER.summary(" in (REPO_ROOT / "tools" / f"{tool}.py").read_text(), tool


def test_readme_paths_in_tests_section_exist() -> None:
    paths = re.findall(r"`(tests/[\w./]+)`", section("Tests"))
    assert len(paths) >= 10, paths
    for path in paths:
        assert Path(REPO_ROOT / path).exists(), path
