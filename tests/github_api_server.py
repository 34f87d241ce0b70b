"""GitHub's REST API, the part the fail-closed gate reads, as GitHub documents it: the network edge of
tools/github_gate.py for tests that run it as a process (the act end to end test, which points
GITHUB_API_URL here). The environments hold what `make github-setup` creates (tools/github_setup.py),
stored as GitHub returns them:

- GET /repos/{owner}/{repo}: https://docs.github.com/en/rest/repos/repos#get-a-repository (visibility)
- GET .../environments/{name}: https://docs.github.com/en/rest/deployments/environments#get-an-environment
  (404 when missing; reviewers and prevent_self_review as one `required_reviewers` protection rule)
- GET .../environments/{name}/deployment-branch-policies:
  https://docs.github.com/en/rest/deployments/branch-policies#list-deployment-branch-policies
- GET .../rulesets (summaries) and .../rulesets/{id} (conditions and rules):
  https://docs.github.com/en/rest/repos/rules
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools import github_setup
from tools.github_environments import Protection


def environment_as_github_returns_it(name: str, put_body: dict[str, Any]) -> dict[str, Any]:
    """What GET .../environments/{name} answers after a PUT with `put_body`."""
    rules: list[dict[str, Any]] = []
    if put_body.get("reviewers"):
        reviewers = [{"type": r["type"], "reviewer": {"id": r["id"]}} for r in put_body["reviewers"]]
        rules.append(
            {
                "id": 3755,
                "type": "required_reviewers",
                "prevent_self_review": bool(put_body.get("prevent_self_review")),
                "reviewers": reviewers,
            }
        )
    if put_body.get("deployment_branch_policy"):
        rules.append({"id": 3756, "type": "branch_policy"})
    return {
        "id": 161088068,
        "name": name,
        "protection_rules": rules,
        "deployment_branch_policy": put_body.get("deployment_branch_policy"),
    }


def ruleset_as_github_returns_it(ruleset_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """What GET .../rulesets/{id} answers after a POST with `body`."""
    return {"id": ruleset_id, "source_type": "Repository", "source": "OWNER/REPO", **body}


def summary(ruleset: dict[str, Any]) -> dict[str, Any]:
    """A ruleset as GET .../rulesets lists it: no conditions, no rules."""
    return {k: ruleset[k] for k in ("id", "name", "target", "source_type", "source", "enforcement")}


TAG_RULESET = ruleset_as_github_returns_it(42, github_setup.tag_ruleset_body())


def as_set_up(targets: list[Protection], reviewers: list[dict[str, object]]) -> dict[str, Any]:
    """The environments `make github-setup` creates for `targets`, by name: (environment, its policies)."""
    stored = {}
    for want in targets:
        body = github_setup.environment_body(want, reviewers if want.reviewers_required else [])
        policies = [{"id": 360 + i, **github_setup.policy_body(ref)} for i, ref in enumerate(want.refs)]
        stored[want.name] = (environment_as_github_returns_it(want.name, body), policies)
    return stored


@contextmanager
def github_api(
    token: str,
    environments: dict[str, Any],
    visibility: str = "public",
    rulesets: tuple[dict[str, Any], ...] = (TAG_RULESET,),
) -> Iterator[str]:
    """Serve the environments and rulesets on 127.0.0.1 for any repository; yields the API URL. A request without
    `Authorization: Bearer TOKEN` gets 401, as GitHub answers a bad token."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self._send(401, {"message": "Bad credentials"})
            path = self.path.split("?", 1)[0]
            if re.fullmatch(r"/repos/[^/]+/[^/]+", path):
                return self._send(200, {"private": visibility != "public", "visibility": visibility})
            if re.fullmatch(r"/repos/[^/]+/[^/]+/rulesets", path):
                return self._send(200, [summary(r) for r in rulesets])
            match = re.fullmatch(r"/repos/[^/]+/[^/]+/rulesets/(\d+)", path)
            if match:
                found = [r for r in rulesets if str(r["id"]) == match.group(1)]
                return self._send(200, found[0]) if found else self._send(404, {"message": "Not Found"})
            match = re.fullmatch(r"/repos/[^/]+/[^/]+/environments/([^/]+)(/deployment-branch-policies)?", path)
            if not match or match.group(1) not in environments:
                return self._send(404, {"message": "Not Found"})
            environment, policies = environments[match.group(1)]
            if match.group(2):
                return self._send(200, {"total_count": len(policies), "branch_policies": policies})
            return self._send(200, environment)

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
