"""make status's endpoint column: the smoke test's health URLs, answers from `responses` (the network edge)."""

from __future__ import annotations

import responses

from tests.envfiles import good_env
from tools.fleet_status import endpoints
from tools.settings import load_settings

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
