"""build_push without Docker: content tags, .dockerignore rules, bad input, the image list, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envfiles import auth_lines
from tests.fixtures.apps import env_lines, stage_apps
from tests.testbed import free_port
from tools.build_push import main
from tools.content_tag import content_tag, context_entries, parse_dockerignore
from tools.errors import ToolError
from tools.images import load_images, write_images

REPO = Path(__file__).resolve().parent.parent


def run_cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def included(root: Path) -> set[str]:
    ignore = root / ".dockerignore"
    patterns = parse_dockerignore(ignore.read_text() if ignore.exists() else "")
    return {rel for rel, st in context_entries(root, patterns) if not (root / rel).is_dir()}


# -- .dockerignore: Docker's rules ------------------------------------------------------------
DOCKERIGNORE = """\
# a comment, then Docker's pattern kinds
*.md
!KEEP.md
**/*.log
build
!build/keep.txt
cache/
/secret.txt
docs/**
!docs/api/**
**/tmp
vendor
!**/wanted.txt
  spaced.txt
"""


def test_dockerignore_follows_dockers_rules(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            ".dockerignore": DOCKERIGNORE,
            "Dockerfile": "FROM scratch\n",
            "README.md": "root markdown: out",
            "KEEP.md": "exception: in",
            "sub/README.md": "*.md is anchored at the root: in",
            "app.log": "out",
            "sub/deep/x.log": "** matches any depth: out",
            "build/a.txt": "ignored folder: out",
            "build/keep.txt": "exception naming the folder: in",
            "cache/x": "trailing slash cleaned: out",
            "secret.txt": "leading slash dropped: out",
            "docs/guide.txt": "out",
            "docs/api/ref.txt": "re-included: in",
            "tmp/f": "out",
            "a/tmp/f": "parent folder matches **/tmp: out",
            "vendor/wanted.txt": "Docker does not walk into an ignored folder for !**/x: out",
            "src/wanted.txt": "in",
            "spaced.txt": "patterns are trimmed: out",
            "src/main.py": "in",
        },
    )
    assert included(root) == {
        ".dockerignore",
        "Dockerfile",
        "KEEP.md",
        "sub/README.md",
        "build/keep.txt",
        "docs/api/ref.txt",
        "src/wanted.txt",
        "src/main.py",
    }


def test_no_dockerignore_means_everything(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"Dockerfile": "FROM scratch\n", "a/b/c.txt": "x", ".hidden": "y"})
    assert included(root) == {"Dockerfile", "a/b/c.txt", ".hidden"}


def test_bad_dockerignore_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="lone '!'"):
        parse_dockerignore("ok\n!\n")
    with pytest.raises(ToolError, match=r"line 1: bad pattern"):
        parse_dockerignore("[z-a]\n")


# -- content tag -------------------------------------------------------------------------------
@pytest.fixture
def context(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM scratch\nCOPY app /app\n",
            ".dockerignore": "*.log\n",
            "app/main.txt": "hello",
            "app/data/values.json": "{}",
        },
    )


def tag(context: Path) -> str:
    return content_tag(context, context / "Dockerfile")


def test_content_tag_format_and_stability(context: Path, tmp_path: Path) -> None:
    first = tag(context)
    assert re.fullmatch(r"c-[0-9a-f]{12}", first), first
    os.utime(context / "app" / "main.txt", (1, 1))  # times do not count
    assert tag(context) == first
    copy = tmp_path / "elsewhere"
    subprocess.run(["cp", "-a", str(context), str(copy)], check=True)
    assert tag(copy) == first, "the tag depends on relative paths, not on where the context lives"


@pytest.mark.parametrize(
    "change, changes_tag",
    [
        (lambda c: (c / "debug.log").write_text("ignored by .dockerignore"), False),
        (lambda c: (c / "app" / "main.txt").write_text("hello!"), True),
        (lambda c: (c / "app" / "main.txt").chmod(0o755), True),
        (lambda c: (c / "app" / "new.txt").write_text(""), True),
        (lambda c: (c / "app" / "empty-dir").mkdir(), True),
        (lambda c: (c / "app" / "main.txt").rename(c / "app" / "renamed.txt"), True),
        (lambda c: (c / "app" / "link").symlink_to("main.txt"), True),
        (lambda c: (c / "Dockerfile").write_text("FROM scratch\nCOPY app /srv\n"), True),
        (lambda c: (c / ".dockerignore").write_text("*.log\n*.tmp\n"), True),
    ],
    ids=["ignored-file", "content", "mode", "new-file", "empty-dir", "rename", "symlink", "dockerfile", "ignore"],
)
def test_what_changes_the_content_tag(context: Path, change, changes_tag: bool) -> None:
    before = tag(context)
    change(context)
    assert (tag(context) != before) is changes_tag


def test_dockerfile_outside_the_context_counts(tmp_path: Path, context: Path) -> None:
    dockerfile = tmp_path / "other.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    first = content_tag(context, dockerfile)
    dockerfile.write_text("FROM scratch\nUSER 1000\n")
    assert content_tag(context, dockerfile) != first


# -- bad input, before anything is built ----------------------------------------------------------
def env_file(tmp_path: Path, body: str, registry: str = "127.0.0.1:5000", cloud: str = "local") -> Path:
    path = tmp_path / f"{cloud}.env"
    path.write_text(
        f"CLOUD_PROVIDER={cloud}\nCLUSTER_NAME=unit\nBASE_DOMAIN=cmb.example.org\nREGISTRY_URL={registry}\n"
        + auth_lines()
        + body
    )
    return path


@pytest.fixture
def apps(tmp_path: Path) -> dict[str, Path]:
    return stage_apps(tmp_path / "apps")


def test_missing_context_and_dockerfile_are_named(
    tmp_path: Path, apps: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    (apps["frontend"] / "Dockerfile").unlink()
    body = env_lines(apps).replace(str(apps["user-env"]), str(tmp_path / "nowhere"))
    output = tmp_path / "out" / "images.json"
    code, _, err = run_cli(capfd, "--env-file", str(env_file(tmp_path, body)), "--output", str(output))
    assert code == 1
    assert "frontend: Dockerfile" in err and "FRONTEND_DOCKERFILE" in err
    assert f"user-env: build context {tmp_path / 'nowhere'} is not a folder" in err and "USER_ENV_CONTEXT" in err
    assert "backend" not in err, "a good image is not reported"
    assert not output.exists() and not output.parent.exists()


def test_unknown_image_is_a_usage_error(tmp_path: Path, apps: dict[str, Path], capfd) -> None:
    code, _, err = run_cli(capfd, "--env-file", str(env_file(tmp_path, env_lines(apps))), "--images", "backend,db")
    assert code == 2
    assert "unknown image 'db'" in err and "backend,frontend,user-env" in err


def test_bad_release_tags_are_refused(tmp_path: Path, apps: dict[str, Path], capfd) -> None:
    env = str(env_file(tmp_path, env_lines(apps)))
    assert run_cli(capfd, "--env-file", env, "--tag", "v1 2")[0] == 2
    code, _, err = run_cli(capfd, "--env-file", env, "--tag", "c-0123456789ab")
    assert code == 2 and "looks like a content tag" in err


def test_force_rebuild_and_skip_build_exclude_each_other(capfd) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--force-rebuild", "--skip-build"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capfd.readouterr().err


def test_unreachable_registry_fails_clearly(tmp_path: Path, apps: dict[str, Path], capfd) -> None:
    registry = f"127.0.0.1:{free_port()}"  # nothing listens there
    output = tmp_path / "images.json"
    code, _, err = run_cli(
        capfd, "--env-file", str(env_file(tmp_path, env_lines(apps), registry)), "--output", str(output)
    )
    assert code == 1
    assert f"cannot reach registry {registry}" in err and "REGISTRY_URL" in err
    assert "backend, frontend, user-env" in err
    assert not output.exists()


def test_dry_run_touches_nothing(tmp_path: Path, apps: dict[str, Path], capfd) -> None:
    registry = f"127.0.0.1:{free_port()}"  # unreachable: a dry run must not ask it
    output = tmp_path / "images.json"
    code, out, _ = run_cli(
        capfd, "--env-file", str(env_file(tmp_path, env_lines(apps), registry)), "--output", str(output), "--dry-run"
    )
    assert code == 0
    tags = {name: tag(path) for name, path in apps.items()}
    for name in apps:
        assert f"{name}: would make sure {registry}/unit-{name} has {tags[name]}" in out
    assert not output.exists()


def test_help_imports_no_cloud_sdk() -> None:
    code = (
        "import sys\nfrom tools.build_push import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'google')])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "--force-rebuild" in proc.stdout and "--skip-build" in proc.stdout
    assert proc.stdout.strip().endswith("[]")


# -- the image list -------------------------------------------------------------------------------
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def test_load_images_gives_chart_values_shape(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(
        json.dumps(
            {
                "registry": "r:5000",
                "images": {
                    "backend": {
                        "repository": "r:5000/c-backend",
                        "tags": ["c-0123456789ab", "v1.2.3"],
                        "digest": DIGEST_A,
                    },
                    "frontend": {"repository": "r:5000/c-frontend", "tags": ["c-ba9876543210"], "digest": DIGEST_B},
                },
            }
        )
    )
    assert load_images(path) == {
        "backend": {"repository": "r:5000/c-backend", "tag": "v1.2.3", "digest": DIGEST_A},
        "frontend": {"repository": "r:5000/c-frontend", "tag": "c-ba9876543210", "digest": DIGEST_B},
    }


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist: run"),
        ("{not json", "not a readable image list"),
        ('{"registry": "r"}', "no 'images' object"),
        ('{"images": {"backend": {"repository": "r/x", "tags": ["t"], "digest": "latest"}}}', "'backend' is malformed"),
        ('{"images": {"db": {"repository": "r/x", "tags": ["t"], "digest": "' + DIGEST_A + '"}}}', "'db' is malformed"),
        ('{"images": {"backend": {"repository": "r/x", "tags": [], "digest": "' + DIGEST_A + '"}}}', "malformed"),
    ],
)
def test_load_images_refuses_bad_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "images.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ToolError, match=message):
        load_images(path)


def test_write_images_is_atomic_and_keeps_other_images(tmp_path: Path) -> None:
    from tools.build_jobs import Job

    path = tmp_path / "out" / "images.json"
    first = [Job("backend", "r:5000/c-backend", tags=["c-0"], digest=DIGEST_A)]
    first.append(Job("frontend", "r:5000/c-frontend", tags=["c-1"], digest=DIGEST_A))
    write_images(path, "r:5000", {job.name: job.record() for job in first})
    second = Job("frontend", "r:5000/c-frontend", tags=["c-2"], digest=DIGEST_B)
    data = write_images(path, "r:5000", {"frontend": second.record()})
    assert list(data["images"]) == ["backend", "frontend"]
    assert data["images"]["backend"]["tags"] == ["c-0"] and data["images"]["frontend"]["digest"] == DIGEST_B
    assert json.loads(path.read_text()) == data
    assert [p.name for p in path.parent.iterdir()] == ["images.json"], "no temporary file left behind"
    elsewhere = Job("frontend", "elsewhere:5000/c-frontend", ["c-2"], digest=DIGEST_B)
    other = write_images(path, "elsewhere:5000", {"frontend": elsewhere.record()})
    assert list(other["images"]) == ["frontend"], "entries of another registry are not carried over"


def test_release_tag_comes_from_flag_image_tag_or_a_pushed_git_tag(monkeypatch, capfd) -> None:
    from tools.build_jobs import release_tag
    from tools.settings import load_settings

    plain = load_settings(cloud="local", environ={"BASE_DOMAIN": "cmb.example.org"})
    pinned = load_settings(cloud="local", environ={"BASE_DOMAIN": "cmb.example.org", "IMAGE_TAG": "v5.0.0"})
    assert release_tag(None, plain) is None
    assert release_tag("v1.0.0", pinned) == "v1.0.0"
    monkeypatch.setenv("GITHUB_REF_TYPE", "tag")
    monkeypatch.setenv("GITHUB_REF_NAME", "v2.3.4-rc.1")
    assert release_tag(None, plain) == "v2.3.4-rc.1"
    assert release_tag(None, pinned) == "v5.0.0"
    monkeypatch.setenv("GITHUB_REF_NAME", "nightly")
    capfd.readouterr()
    assert release_tag(None, plain) is None
    assert "git tag 'nightly' is not vX.Y.Z" in capfd.readouterr().out
    monkeypatch.setenv("GITHUB_REF_TYPE", "branch")
    monkeypatch.setenv("GITHUB_REF_NAME", "v9.9.9")
    assert release_tag(None, plain) is None, "a branch named like a version is no release"
