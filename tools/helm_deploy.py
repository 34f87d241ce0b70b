"""Preflight, database bucket, then install or upgrade the release with the images pinned by digest.

Before anything changes: the security rules, the images file and every image's digest in the
registry, the credentials' rights in the namespace, that each image has a variant for every CPU
architecture the nodes run (`--no-platform-check` skips it), the Secrets from make_secrets, the
cluster's prerequisites (CSI driver, ingress class, the database's StorageClass; on AWS the
IRSA trust policies), and that no older chart's database file waits on the bucket unmigrated. Each
missing prerequisite is one line, and the deploy stops before touching the release.
Then the database bucket (created private and encrypted, never deleted or emptied); then, holding
the release's lock (tools/lease.py: one writer per release; a second deploy waits), a release left
pending by an interrupted deploy is rolled back to its last deployed revision, and the release is
installed or upgraded through pyhelm3, unless nothing would change: when the deployed revision equals
the new render and values and no live object drifted (tools/unchanged.py), no revision is made and
the output `revision` is `none`; drifted objects are named and the upgrade repairs them. A failed
upgrade is rolled back to the last deployed revision (only when the failed revision is the one this
run made) and the tool exits 1 with the reason.
SIGTERM/SIGINT stop helm, release the lock and say what the next run does (exit 143/130).
`--dry-run` shows the difference to the deployed release (secret values hidden) and changes nothing.

Helm flags a cluster needs (e.g. `--helm-flag=--skip-schema-validation`) go to every
install/upgrade. Exit 0 ok, 1 failure, 2 usage. The release part (recovery, install or upgrade,
rollback, the dry run's diff) is tools/helm_release.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools import cli, lease
from tools.auth.preflight import check as auth_preflight
from tools.chart_values import deploy_values, merge
from tools.errors import ToolError, UsageError
from tools.helm_release import Deployer, Options, duration_seconds, helm_client
from tools.images import DEFAULT_OUTPUT, load_images
from tools.report import REPORTER, markdown_table
from tools.settings import IMAGES, REPO_ROOT, Settings


# -- inputs ------------------------------------------------------------------------------------
def every_image(path: Path) -> dict[str, dict[str, str]]:
    """build_push's output as chart image values, {name: {repository, tag, digest}}, for every image."""
    images = load_images(path)
    missing = [name for name in IMAGES if name not in images]
    if missing:
        raise ToolError(f"images file {path} has no {', '.join(missing)}: run build_push for every image")
    return images


def load_values(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    if os.path.isdir(path):
        raise UsageError(f"--values {path} is a directory: give a YAML file of chart values")
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise UsageError(f"--values {path}: {exc.strerror}: give a readable YAML file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--values {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UsageError(f"--values {path} must be a YAML mapping of chart values (like --set a.b=c)")
    return values


# -- registry ------------------------------------------------------------------------------------
def missing_images(images: dict[str, dict[str, str]], cloud: Any) -> list[str]:
    """Images whose digest their registry does not have (HEAD of the manifest by digest)."""
    from tools.registry import image_registries

    missing = []
    with image_registries(cloud) as registry_for:
        for name, image in images.items():
            if registry_for(image["repository"]).digest(image["repository"], image["digest"]) is None:
                reference = f"{image['repository']}@{image['digest']}"
                missing.append(f"image {name} {reference} is not in the registry: run build_push (make build)")
    return missing


# -- preflight -----------------------------------------------------------------------------------
def preflight(cloud: Any, api: Any, settings: Settings, rendered: list[dict[str, Any]]) -> list[str]:
    """Everything the deploy needs from the cluster and the account, as one line per missing piece.

    What a namespace-scoped identity may not read (cluster-scoped objects) is a warning, not a
    refusal: such an identity deploys the chart fine when a cluster admin set the cluster up.
    """
    from tools import database, kube_ops
    from tools.cloud import BACKEND_SECRET, FRONTEND_SECRET
    from tools.escalation import escalation_problems
    from tools.kube_rights import deploy_rights

    namespace = settings.namespace
    rights = deploy_rights(rendered)
    refused = kube_ops.denied(api, namespace, rights)
    if refused:  # nothing else matters until this is fixed
        extra = ", plus a ClusterRole for the cluster-scoped kinds" if any(r.cluster_scoped for r in rights) else ""
        raise ToolError(
            f"these credentials may not {', '.join(refused)} in namespace {namespace}: ask a cluster admin to "
            f"grant what `make rbac CLOUD={settings.cloud}` prints (`admin` in the namespace{extra})"
            + cloud.access_hint(namespace)
        )
    problems = escalation_problems(api, namespace, rendered, cloud.access_hint(namespace))
    for secret in (BACKEND_SECRET, FRONTEND_SECRET):
        if kube_ops.read_secret(api, namespace, secret) is None:
            problems.append(f"Secret {namespace}/{secret} does not exist: run make_secrets first (make secrets)")
    missing, unchecked = cloud.prerequisites(api)
    for line in unchecked:
        REPORTER.warning(line, title="helm_deploy preflight")
    legacy = database.legacy_problem(database.backup_state(cloud), settings.cloud)
    return problems + missing + ([legacy] if legacy else []) + auth_preflight(settings)


# -- main ----------------------------------------------------------------------------------------
@cli.main_boundary
@cli.stage("before changing the release", "the release was not changed: run it again")
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument("--images", default=DEFAULT_OUTPUT, metavar="PATH", help="build_push's output")
    parser.add_argument(
        "--revision-file",
        metavar="PATH",
        help="also write the `revision` output (N, or none) there: `make deploy` hands it to smoke",
    )
    parser.add_argument("--values", metavar="FILE", help="YAML chart values over the computed ones (like --set)")
    parser.add_argument("--chart", default=str(REPO_ROOT / "helm"), metavar="DIR", help="the chart (default: helm/)")
    parser.add_argument("--timeout", default="10m", help="helm's --timeout for the upgrade and rollbacks (10m)")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="do not wait for the workloads to become ready (smoke_test checks the rollout)",
    )
    lease.add_arguments(parser)
    parser.add_argument(
        "--helm-flag",
        dest="helm_flags",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for helm upgrade/install, repeatable: --helm-flag=--skip-schema-validation",
    )
    parser.add_argument(
        "--no-platform-check",
        dest="platform_check",
        action="store_false",
        help="deploy even when an image has no variant for a CPU architecture of the nodes (smoke_test will tell)",
    )
    args = parser.parse_args(argv)
    duration_seconds(args.timeout)  # every argument is checked before the first network call
    overrides = load_values(args.values)
    if not (Path(args.chart) / "Chart.yaml").is_file():
        raise UsageError(f"--chart {args.chart} has no Chart.yaml: give the chart's folder (default helm/)")
    options = Options(Path(args.chart), args.timeout, args.wait, args.dry_run, args.helm_flags)
    settings = cli.settings_from(args)
    from tools.config_rules import require_valid

    require_valid(settings, "helm_deploy")
    from tools import kube_ops
    from tools.cloud import cloud_for
    from tools.helm import render
    from tools.unchanged import unchanged_revision

    cloud = cloud_for(settings)
    images = every_image(Path(args.images))
    missing = missing_images(images, cloud)
    if missing:
        for line in missing:
            REPORTER.error(line, title="helm_deploy")
        raise ToolError(f"{len(missing)} image(s) not deployable: nothing was changed")
    values = merge(deploy_values(cloud, images), overrides)
    rendered = [o for o in render(settings.release, settings.namespace, values, options.chart) if o]
    with cloud.cluster_access() as kubeconfig:
        api = kube_ops.api_client(kubeconfig)
        with REPORTER.action(f"preflight of {settings.cloud} cluster, namespace {settings.namespace}") as action:
            problems = preflight(cloud, api, settings, rendered)
            if args.platform_check:
                from tools.node_platforms import platform_problems

                problems += platform_problems(images, cloud, api)
            else:
                REPORTER.warning("--no-platform-check: the images' CPU platforms were not compared with the nodes'")
            action.set("ok" if not problems else "warn", f"{len(problems)} missing" if problems else "")
        if problems:
            for line in problems:
                REPORTER.error(line, title="helm_deploy preflight")
            raise ToolError(f"{len(problems)} prerequisite(s) missing: nothing was changed")
        with REPORTER.action("database bucket") as action:
            action.set("ok", cloud.ensure_database_bucket(dry_run=args.dry_run))
        if args.dry_run:
            revision = _run(Deployer(helm_client(kubeconfig, options), settings, options).run(values, rendered))
        else:
            lock = lease.ReleaseLock(
                api,
                settings.namespace,
                settings.release,
                "helm_deploy",
                wait=args.lock_wait,
                duration=args.lock_duration,
            )
            with lock:
                same, options.repair = unchanged_revision(api, settings, values, rendered, options.chart)
                if same is not None:
                    hand_on(args.revision_file, "none")
                    return unchanged_report(settings, same, images)
                revision = _run(
                    Deployer(helm_client(kubeconfig, options), settings, options, lock).run(values, rendered)
                )
    if revision is None:
        hand_on(args.revision_file, "none")
        REPORTER.info("dry run: nothing was changed")
        return 0
    rows = [(name, f"{image['repository']}@{image['digest']}") for name, image in images.items()]
    REPORTER.summary(
        f"### helm_deploy\nRelease `{settings.release}` in `{settings.namespace}`: revision {revision.revision} "
        f"{revision.status.value}\n\n" + markdown_table(["Image", "Reference"], rows)
    )
    REPORTER.output("revision", str(revision.revision))
    hand_on(args.revision_file, str(revision.revision))
    REPORTER.ok(f"release {settings.release} revision {revision.revision} {revision.status.value}")
    return 0


def hand_on(path: str | None, revision: str) -> None:
    """The revision this run made (or none) for smoke's rollback rule, where `make deploy` reads it: under
    GitHub Actions the step output carries it; a make chain has no outputs between its steps."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(revision + "\n")


def unchanged_report(settings: Settings, revision: int, images: dict[str, dict[str, str]]) -> int:
    """No new revision: the job summary says so, and the step output `revision` is `none` (smoke rolls nothing back)."""
    rows = [(name, f"{image['repository']}@{image['digest']}") for name, image in images.items()]
    REPORTER.summary(
        f"### helm_deploy\nRelease `{settings.release}` in `{settings.namespace}`: unchanged at revision {revision}, "
        "no new revision\n\n" + markdown_table(["Image", "Reference"], rows)
    )
    REPORTER.output("revision", "none")
    return 0


def _run(coroutine: Any) -> Any:
    """Run the release steps; a helm error that escaped the steps' own handling is still one line."""
    from tools.helm import run_async

    return run_async(coroutine)


if __name__ == "__main__":
    sys.exit(main())
