"""make status's endpoint column: the smoke test's health URLs, answers from `responses` (the network edge)."""

from __future__ import annotations

import pytest
import responses

from tests.envfiles import good_env
from tools import fleet_status
from tools.fleet_status import endpoints
from tools.settings import REPO_ROOT, load_settings

SETTINGS = load_settings(environ=good_env("local", BASE_DOMAIN="lab.example.org"))


@responses.activate
def test_healthy_endpoints_answer() -> None:
    responses.get("https://api.lab.example.org/health", json={"status": "healthy"})
    responses.get("https://lab.example.org/api/health", json={"ok": True})
    assert endpoints(SETTINGS) == ("answering", True)


@responses.activate
def test_an_unhealthy_api_is_named() -> None:
    responses.get("https://api.lab.example.org/health", status=503, body="down")
    responses.get("https://lab.example.org/api/health", json={"ok": True})
    detail, answering = endpoints(SETTINGS)
    assert not answering
    assert "https://api.lab.example.org/health" in detail and "HTTP 503" in detail


def test_env_file_is_one_targets_settings(capfd: pytest.CaptureFixture[str]) -> None:
    """status.yml passes the target's GitHub-environment settings with --env-file: the file given is the
    one read (a missing one is that target's problem), and without --target it is refused in one line."""
    fleet = str(REPO_ROOT / "fleet.yaml")
    assert fleet_status.main(["--fleet", fleet, "--env-file", "/nonexistent/status.env"]) == 2
    _, err = capfd.readouterr()
    assert err.splitlines() == ["error   --env-file is one target's settings: give --target NAME with it"]
    assert fleet_status.main(["--fleet", fleet, "--target", "aws-eu", "--env-file", "/nonexistent/status.env"]) == 1
    out, err = capfd.readouterr()
    assert "target aws-eu: env file /nonexistent/status.env does not exist" in out + err
