"""build_push against the real test bed: a private Docker engine and registry on loopback, moto for ECR.

The images are the stand-ins of tests/fixtures/apps (FROM scratch + busybox: nothing pulled).
`DOCKER` points at a wrapper that logs every docker command line (and DOCKER_CONFIG) before
running the real client, so a test can see what was built and pushed, and that no secret was
ever on a command line.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.envfiles import auth_lines
from tests.fixtures.apps import HEALTH, NAMES, env_lines, stage_apps
from tests.testbed import free_port
from tests.waiting import eventually
from tools.build_push import main
from tools.content_tag import content_tag
from tools.images import load_images

pytestmark = pytest.mark.testbed
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


# -- the registry, asked directly (not through tools.registry) ---------------------------------------
def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def catalog(registry: str) -> list[str]:
    return http_json(f"http://{registry}/v2/_catalog?n=1000")["repositories"]


def registry_tags(registry: str, name: str) -> list[str]:
    return sorted(http_json(f"http://{registry}/v2/{name}/tags/list")["tags"] or [])


def registry_digest(registry: str, name: str, tag: str) -> str | None:
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{tag}", method="HEAD")
    request.add_header("Accept", MANIFEST_ACCEPT)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


# -- a project: staged apps, env file, output, docker log ---------------------------------------------
@dataclass
class Project:
    root: Path
    registry: str
    cluster: str
    contexts: dict[str, Path]
    env_file: Path
    output: Path
    log: Path
    capfd: pytest.CaptureFixture[str]

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capfd.readouterr()
        code = main(["--env-file", str(self.env_file), "--output", str(self.output), *args])
        out, err = self.capfd.readouterr()
        return code, out, err

    def name(self, image: str) -> str:
        return f"{self.cluster}-{image}"

    def repository(self, image: str) -> str:
        return f"{self.registry}/{self.name(image)}"

    def tag(self, image: str) -> str:
        return content_tag(self.contexts[image], self.contexts[image] / "Dockerfile")

    def images(self) -> dict:
        return json.loads(self.output.read_text())

    def calls(self) -> list[tuple[str, list[str]]]:
        """Every docker command so far: (DOCKER_CONFIG, argv without the binary)."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [(cfg, json.loads(argv)) for cfg, _, argv in (line.partition("|") for line in lines)]


@pytest.fixture
def project(tmp_path: Path, docker_host: str, registry: str, bed_env: dict[str, str], monkeypatch, capfd) -> Project:
    log = tmp_path / "docker.log"
    wrapper = tmp_path / "docker-wrapper"
    # Logs DOCKER_CONFIG and the argv as JSON (python quotes it reliably), then runs the real client.
    wrapper.write_text(
        "#!/bin/sh\n"
        f'printf "%s|" "${{DOCKER_CONFIG:-}}" >> {log}\n'
        f"{sys.executable} -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {log}\n"
        'exec docker "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("DOCKER", str(wrapper))
    cluster = f"t{uuid.uuid4().hex[:10]}"
    contexts = stage_apps(tmp_path / "apps")
    env_file = tmp_path / "local.env"
    env_file.write_text(
        f"CLOUD_PROVIDER=local\nCLUSTER_NAME={cluster}\nBASE_DOMAIN=cmb.example.org\nREGISTRY_URL={registry}\n"
        + auth_lines()
        + env_lines(contexts)
    )
    return Project(tmp_path, registry, cluster, contexts, env_file, tmp_path / "out" / "images.json", log, capfd)


def builds(project: Project, since: int = 0) -> list[str]:
    """The images built since call number `since` (by their context folder)."""
    names = {str(path): name for name, path in project.contexts.items()}
    return [names[argv[-1]] for _, argv in project.calls()[since:] if argv[0] == "build"]


def pushes(project: Project, since: int = 0) -> list[str]:
    return [argv[-1] for _, argv in project.calls()[since:] if argv[0] == "push"]


# -- local registry ------------------------------------------------------------------------------
def test_cold_run_builds_pushes_and_records(project: Project) -> None:
    code, out, err = project.run()
    assert code == 0, err
    data = project.images()
    assert data["registry"] == project.registry
    assert list(data["images"]) == list(NAMES)
    for image in NAMES:
        entry, tag = data["images"][image], project.tag(image)
        assert entry["repository"] == project.repository(image)
        assert entry["tags"] == [tag]
        assert entry["digest"] == registry_digest(project.registry, project.name(image), tag)
        assert registry_tags(project.registry, project.name(image)) == [tag]
        assert f"{image}: building {project.repository(image)}:{tag}" in out
        assert f"ok      {image}: built and pushed {project.repository(image)}:{tag}" in out
    assert {project.name(i) for i in NAMES} <= set(catalog(project.registry))
    assert builds(project) == list(NAMES)
    assert pushes(project) == [f"{project.repository(i)}:{project.tag(i)}" for i in NAMES]
    assert load_images(project.output) == {
        i: {"repository": project.repository(i), "tag": project.tag(i), "digest": data["images"][i]["digest"]}
        for i in NAMES
    }


def test_unchanged_run_builds_nothing(project: Project) -> None:
    assert project.run()[0] == 0
    first, calls = project.images(), len(project.calls())
    code, out, _ = project.run()
    assert code == 0
    assert project.calls()[calls:] == [], "nothing changed: docker is not even started"
    assert project.images() == first
    for image in NAMES:
        assert f"skipped {image}: cached, not built: {project.repository(image)}:{project.tag(image)}" in out


def test_a_changed_file_rebuilds_only_that_image(project: Project) -> None:
    assert project.run()[0] == 0
    first, calls = project.images(), len(project.calls())
    old_tag = project.tag("frontend")
    (project.contexts["frontend"] / "www" / "index.html").write_text("<p>a new frontend</p>\n")
    (project.contexts["backend"] / "debug.log").write_text("ignored by .dockerignore\n")
    (project.contexts["user-env"] / "NOTES.md").write_text("ignored by .dockerignore\n")
    code, _, err = project.run()
    assert code == 0, err
    assert builds(project, calls) == ["frontend"]
    second = project.images()["images"]
    assert second["backend"] == first["images"]["backend"]
    assert second["user-env"] == first["images"]["user-env"]
    assert second["frontend"]["tags"] == [project.tag("frontend")] != [old_tag]
    assert second["frontend"]["digest"] != first["images"]["frontend"]["digest"]
    assert registry_tags(project.registry, project.name("frontend")) == sorted([old_tag, project.tag("frontend")])


def test_stand_ins_answer_their_health_checks(project: Project, docker_host: str) -> None:
    assert project.run()[0] == 0
    for image, entry in project.images()["images"].items():
        port = free_port()
        reference = f"{entry['repository']}@{entry['digest']}"  # pinned by digest, as helm_deploy does
        container = subprocess.run(
            ["docker", "run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}", reference],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        try:
            url = f"http://127.0.0.1:{port}{HEALTH[image]}"
            body = eventually(lambda url=url: http_json(url), f"{image} answering {HEALTH[image]}", 10)
            assert body["status"] == ("healthy" if image == "backend" else "ok")
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def test_release_tag_is_added_without_rebuilding(project: Project) -> None:
    assert project.run()[0] == 0
    calls = len(project.calls())
    code, out, _ = project.run("--tag", "v1.2.3")
    assert code == 0
    assert project.calls()[calls:] == [], "the release tag is added through the registry API"
    for image in NAMES:
        tag, name = project.tag(image), project.name(image)
        assert registry_digest(project.registry, name, "v1.2.3") == registry_digest(project.registry, name, tag)
        assert project.images()["images"][image]["tags"] == [tag, "v1.2.3"]
        assert load_images(project.output)[image]["tag"] == "v1.2.3"
        assert f"{project.repository(image)}:{tag},v1.2.3" in out


def test_a_pinned_release_records_its_commit_and_never_moves_to_other_content(project: Project) -> None:
    """Re-running a release pinned to an application commit builds the same content (nothing moves),
    or, when the sources differ, refuses in one line before the release tag moves."""
    sha, other = "a" * 40, "b" * 40
    code, _, err = project.run("--tag", "v2.0.0", "--app-sha", sha)
    assert code == 0, err
    first = project.images()
    assert first["app_sha"] == sha
    code, _, err = project.run("--tag", "v2.0.0", "--app-sha", sha)  # the re-run: same content
    assert code == 0, err
    assert project.images() == first
    (project.contexts["frontend"] / "www" / "index.html").write_text("<p>code from elsewhere</p>\n")
    code, _, err = project.run("--tag", "v2.0.0", "--app-sha", other)
    assert code == 1
    assert ":v2.0.0 already names another image" in err and "other sources than application commit bbbbbbbbbbbb" in err
    assert "Traceback" not in err
    name = project.name("frontend")
    assert registry_digest(project.registry, name, "v2.0.0") == first["images"]["frontend"]["digest"]
    code, _, err = project.run("--app-sha", "main")
    assert code == 2 and "full 40-character commit SHA" in err


def test_new_build_with_release_tag_pushes_both(project: Project) -> None:
    code, _, err = project.run("--images", "backend", "--tag", "v0.9.0")
    assert code == 0, err
    tag = project.tag("backend")
    assert pushes(project) == [f"{project.repository('backend')}:{t}" for t in (tag, "v0.9.0")]
    assert registry_tags(project.registry, project.name("backend")) == sorted([tag, "v0.9.0"])
    assert list(project.images()["images"]) == ["backend"]


def test_skip_build_uses_existing_images_or_fails_clearly(project: Project) -> None:
    code, _, err = project.run("--skip-build")
    assert code == 1
    assert f"backend: {project.repository('backend')}:{project.tag('backend')} is not in the registry" in err
    assert not project.output.exists() and builds(project) == []
    assert project.run()[0] == 0
    calls = len(project.calls())
    code, out, _ = project.run("--skip-build")
    assert code == 0 and builds(project, calls) == []
    assert "skipped backend: existing, not built" in out
    code, _, err = project.run("--skip-build", "--tag", "v9.9.9")
    assert code == 1 and f"{project.repository('backend')}:v9.9.9 is not in the registry" in err


def test_skip_build_with_a_release_tag_needs_no_source(project: Project) -> None:
    assert project.run("--tag", "v2.0.0")[0] == 0
    digests = {i: e["digest"] for i, e in project.images()["images"].items()}
    project.output.unlink()
    env = project.env_file.read_text()
    for path in project.contexts.values():
        env = env.replace(str(path), str(project.root / "gone"))
    project.env_file.write_text(env)
    code, _, err = project.run("--skip-build", "--tag", "v2.0.0")
    assert code == 0, err
    assert {i: e["digest"] for i, e in project.images()["images"].items()} == digests
    assert all(e["tags"] == ["v2.0.0"] for e in project.images()["images"].values())


def test_force_rebuild_builds_every_image(project: Project) -> None:
    assert project.run()[0] == 0
    calls = len(project.calls())
    code, out, _ = project.run("--force-rebuild")
    assert code == 0
    assert builds(project, calls) == list(NAMES)
    assert out.count("built and pushed") == 3


def test_failed_build_names_the_image_and_records_nothing(project: Project) -> None:
    assert project.run()[0] == 0
    before = project.output.read_text()
    calls = len(project.calls())
    dockerfile = project.contexts["backend"] / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "COPY no-such-file /nowhere\n")
    (project.contexts["frontend"] / "www" / "index.html").write_text("changed too\n")
    code, _, err = project.run()
    assert code == 1
    assert "backend: docker build failed" in err
    assert "no-such-file" in err, "the end of the build log is shown"
    assert builds(project, calls) == ["backend"], "the run stops at the first failure"
    assert project.output.read_text() == before, "the image list of the last good run is untouched"
    assert sorted(p.name for p in project.output.parent.iterdir()) == ["images.json"]


def test_github_actions_tag_outputs_and_summary(project: Project, monkeypatch) -> None:
    github_output, summary = project.root / "github_output", project.root / "summary.md"
    for key, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(github_output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_REF_TYPE": "tag",
        "GITHUB_REF_NAME": "v3.1.4",
    }.items():
        monkeypatch.setenv(key, value)
    code, out, err = project.run()
    assert code == 0, err
    assert "Step 1/" in out and "FROM scratch" in out, "build logs are streamed in CI"
    data = project.images()
    assert all(entry["tags"][-1] == "v3.1.4" for entry in data["images"].values())
    outputs = dict(line.split("=", 1) for line in github_output.read_text().splitlines())
    assert json.loads(outputs["images"]) == data
    rows = [line for line in summary.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == 3
    for row, image in zip(rows, NAMES, strict=True):
        assert f"`{image}`" in row and data["images"][image]["digest"] in row and "v3.1.4" in row


# -- AWS: ECR API on moto, images in the local registry -------------------------------------------
def test_aws_creates_ecr_repositories_and_logs_in_through_stdin(project: Project, moto_url: str) -> None:
    import boto3

    env = project.env_file.read_text().replace("CLOUD_PROVIDER=local\n", "CLOUD_PROVIDER=aws\n")
    env += "AWS_ACCOUNT_ID=123456789012\nAWS_REGION=us-east-1\n"
    project.env_file.write_text(env)
    ecr = boto3.client("ecr", region_name="us-east-1")
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS" and len(password) > 8

    code, out, err = project.run()
    assert code == 0, err
    repositories = ecr.describe_repositories(repositoryNames=[project.name(i) for i in NAMES])["repositories"]
    assert len(repositories) == 3
    for repo in repositories:
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    assert f"created repository {project.name('backend')}" in out

    logins = [(cfg, argv) for cfg, argv in project.calls() if argv[0] == "login"]
    assert len(logins) == 1
    config, argv = logins[0]
    assert argv == ["login", "--username", "AWS", "--password-stdin", project.registry]
    assert config and not Path(config).exists(), "the temporary DOCKER_CONFIG is removed"
    assert all(cfg == config for cfg, argv in project.calls() if argv[0] in ("build", "push"))
    everything = out + err + project.log.read_text() + project.output.read_text()
    assert password not in everything and token not in everything

    # ECR tags are immutable: an existing content tag is never pushed again.
    calls = len(project.calls())
    code, _, err = project.run("--force-rebuild")
    assert code == 1 and "immutable" in err and "--tag" in err
    assert builds(project, calls) == []
    code, _, err = project.run("--force-rebuild", "--tag", "v2.0.0", "--images", "backend")
    assert code == 0, err
    assert pushes(project, calls) == [f"{project.repository('backend')}:v2.0.0"]
    assert project.images()["images"]["backend"]["tags"] == ["v2.0.0"]


# -- GCP: Artifact Registry login with a google-auth token, images in the local registry -------------
def test_gcp_logs_in_with_an_oauth_access_token(project: Project, monkeypatch) -> None:
    import responses

    credentials = project.root / "adc.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "123-abc.apps.googleusercontent.com",
                "client_secret": "client-secret-value",
                "refresh_token": "refresh-token-value",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    env = project.env_file.read_text().replace("CLOUD_PROVIDER=local\n", "CLOUD_PROVIDER=gcp\n")
    env = env.replace(f"REGISTRY_URL={project.registry}\n", f"REGISTRY_URL={project.registry}/cmb-project/images\n")
    project.env_file.write_text(env + "PROJECT_ID=cmb-project\nREGION=us-central1\nLETSENCRYPT_EMAIL=ops@example.org\n")
    access_token = "ya29.a0-test-access-token-" + uuid.uuid4().hex

    with responses.RequestsMock() as google:
        token_call = google.post(
            "https://oauth2.googleapis.com/token",
            json={"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"},
        )
        code, out, err = project.run("--images", "backend")
    assert code == 0, err
    assert token_call.call_count == 1
    assert b"grant_type=refresh_token" in token_call.calls[0].request.body
    logins = [argv for _, argv in project.calls() if argv[0] == "login"]
    assert logins == [["login", "--username", "oauth2accesstoken", "--password-stdin", project.registry]]
    assert f"cmb-project/images/{project.cluster}-backend" in catalog(project.registry)
    entry = project.images()["images"]["backend"]
    assert entry["repository"] == f"{project.registry}/cmb-project/images/{project.cluster}-backend"
    everything = out + err + project.log.read_text() + project.output.read_text()
    assert access_token not in everything and "refresh-token-value" not in everything


def test_gcp_without_credentials_fails_before_building(project: Project, monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(project.root / "missing.json"))
    monkeypatch.setenv("HOME", str(project.root))  # no gcloud default credentials either
    env = project.env_file.read_text().replace("CLOUD_PROVIDER=local\n", "CLOUD_PROVIDER=gcp\n")
    project.env_file.write_text(env + "PROJECT_ID=cmb-project\nREGION=us-central1\nLETSENCRYPT_EMAIL=ops@example.org\n")
    code, _, err = project.run()
    assert code == 1
    assert "no Google credentials" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err
    assert builds(project) == [] and not project.output.exists()


def test_failed_push_names_the_image_and_records_nothing(project: Project, monkeypatch, tmp_path: Path) -> None:
    # The registry refusing a push is hard to provoke for real: a docker wrapper refuses it instead.
    refusing = tmp_path / "docker-refusing-push"
    refusing.write_text(
        '#!/bin/sh\nif [ "$1" = push ]; then echo "denied: requested access to the resource is denied" >&2; '
        'exit 1; fi\nexec docker "$@"\n'
    )
    refusing.chmod(0o755)
    monkeypatch.setenv("DOCKER", str(refusing))
    code, _, err = project.run()
    assert code == 1
    assert f"backend: docker push {project.tag('backend')} failed" in err and "denied" in err
    assert not project.output.exists()


def test_unreachable_docker_engine_is_one_clear_error(project: Project, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project.root}/no-docker.sock")
    code, _, err = project.run("--images", "user-env")
    assert code == 1
    assert f"user-env: cannot reach the Docker engine at unix://{project.root}/no-docker.sock" in err
    assert "start Docker or set DOCKER_HOST" in err
    assert not project.output.exists()
