"""Write the deploy configuration from GitHub variables (JSON in DEPLOY_VARS) as a dotenv file.

Only the toolkit's own variables (tools.settings.VARS) are written; the others (RELEASE_CLOUDS,
AWS_DEPLOY_ROLE_ARN, ...) belong to the workflows. Secret variables are refused here: they must
come from `secrets.*`, which never reach a file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from tools.settings import VARS_BY_NAME


def quote(value: str) -> str:
    """A single-quoted dotenv value (python-dotenv unescapes only \\\\ and \\' inside)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(variables: dict[str, object]) -> tuple[str, list[str]]:
    lines, refused = [], []
    for name in sorted(variables):
        var = VARS_BY_NAME.get(name)
        if var is None:
            continue
        if var.secret:
            refused.append(name)
            continue
        value = str(variables[name])
        if "\n" in value or "\r" in value:
            refused.append(name)
            continue
        lines.append(f"{name}={quote(value)}\n")
    return "".join(lines), refused


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: vars_to_env.py OUTPUT", file=sys.stderr)
        return 2
    try:
        variables = json.loads(os.environ.get("DEPLOY_VARS") or "{}")
    except ValueError as exc:
        print(f"::error::DEPLOY_VARS is not JSON: {exc}", file=sys.stderr)
        return 2
    text, refused = render(variables)
    out = Path(argv[0])
    out.write_text(text, encoding="utf-8")
    out.chmod(0o600)
    for name in refused:
        print(
            f"::error title=configuration::variable {name} cannot be used: "
            + ("store it as a secret, not a variable" if VARS_BY_NAME[name].secret else "it spans several lines")
        )
    names = [line.split("=", 1)[0] for line in text.splitlines()]
    print(f"configuration from variables: {', '.join(names) or '(none)'} -> {out}")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
