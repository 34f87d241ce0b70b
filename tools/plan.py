"""Everything that needs no cloud access: validate, compute image tags, render the chart.

Writes out/plan/<cloud>/values.yaml and manifests.yaml and prints a short summary. Findings
are reported but do not stop the render (a deploy refuses on them); plan fails only when it
cannot read the configuration or render the chart.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools import cli, config_rules, helm
from tools.cloud import Cloud, cloud_for
from tools.content_tag import content_tag
from tools.report import REPORTER, markdown_table
from tools.settings import REPO_ROOT, Settings


def image_tags(cloud: Cloud) -> dict[str, dict[str, str]]:
    """Each image's repository and the tag build_push would give it (content tag when the context exists)."""
    settings = cloud.settings
    images: dict[str, dict[str, str]] = {}
    for image in cloud.images():
        tag = content_tag_or_none(settings, image.name)
        images[image.name] = {"repository": image.repository, "tag": tag or settings["IMAGE_TAG"] or "latest"}
    return images


def content_tag_or_none(settings: Settings, image: str) -> str | None:
    if not Path(settings.context(image)).is_dir() or not Path(settings.dockerfile(image)).is_file():
        return None
    return content_tag(Path(settings.context(image)), Path(settings.dockerfile(image)), settings.platforms)


def write_plan(out_dir: Path, values: dict[str, Any], manifests: list[dict[str, Any]]) -> Path:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    # JSON is YAML that keeps strings quoted: an account id like 012345678901 must not become a number.
    (out_dir / "values.yaml").write_text(
        "# chart values computed by tools.plan\n" + json.dumps(values, indent=2) + "\n"
    )
    path = out_dir / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return path


def summary_rows(settings: Settings, cloud: Cloud, images: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    rows = [
        ("cloud", f"{settings.cloud} ({settings.environment})"),
        ("release", f"{settings.release} in namespace {settings.namespace}"),
        ("database", f"PVC {settings['DATABASE_SIZE']} ({settings['DATABASE_STORAGE_CLASS'] or 'default class'})"),
        ("database backup", cloud.database_replica or "(none on local)"),
        ("user buckets", f"{cloud.user_bucket_prefix}-*" if settings.cloud != "local" else "(none on local)"),
        ("frontend", settings["FRONTEND_URL"]),
        ("API", settings["API_URL"]),
        ("auth", config_rules.chosen_providers_note(settings).removeprefix("auth provider: ")),
    ]
    rows += [(f"image {name}", f"{img['repository']}:{img['tag']}") for name, img in images.items()]
    rows.append(("image platforms", ",".join(settings.platforms)))
    return rows


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0], dry_run=False)
    parser.add_argument("--out", default=None, help="output folder (default: out/plan/<cloud>)")
    args = parser.parse_args(argv)
    settings = cli.settings_from(args)
    cloud = cloud_for(settings)

    start = time.monotonic()
    findings = config_rules.check(settings)
    config_rules.report(findings, verbose=False, title="plan")
    errors = config_rules.errors(findings)
    REPORTER.line("error" if errors else "ok", f"validate: {len(errors)} error(s)", time.monotonic() - start)

    with REPORTER.action("image tags") as result:
        images = image_tags(cloud)
        result.detail = ", ".join(f"{n}={i['tag']}" for n, i in images.items())
        result.detail += f" for {','.join(settings.platforms)}"
        missing = [n for n in images if not Path(settings.context(n)).is_dir()]
        if missing:
            result.set("warn", result.detail + f" (no build context for {', '.join(missing)}: see *_CONTEXT)")

    with REPORTER.action("render chart") as result:
        values = cloud.chart_values(images)
        manifests = helm.render(settings.release, settings.namespace, values)
        out_dir = Path(args.out) if args.out else REPO_ROOT / "out" / "plan" / settings.cloud
        path = write_plan(out_dir, values, manifests)
        result.detail = f"{len(manifests)} objects -> {path}"

    rows = summary_rows(settings, cloud, images)
    rows.append(("validation", f"{len(errors)} error(s), {len(findings) - len(errors)} other finding(s)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        REPORTER.info(f"{key:<{width}}  {value}")
    REPORTER.summary(f"### Plan for {settings.cloud}\n\n" + markdown_table(["", ""], rows))
    if errors:
        REPORTER.warning(f"{len(errors)} validation error(s): a deploy would refuse; see above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
