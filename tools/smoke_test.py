"""Smoke test of a deployed release: rollouts, endpoints, user storage; roll back on failure.

1. Rollout watch. The Deployments of the release (backend, frontend) must reach their new
   revision and be Ready. The tool watches Deployments, ReplicaSets, Pods and Events (one
   Kubernetes watch per kind, no polling) and fails as soon as a pod of the new revision shows
   a state that does not heal by itself: CrashLoopBackOff, ImagePullBackOff, ErrImagePull,
   InvalidImageName, CreateContainerConfigError (a missing Secret key), CreateContainerError,
   a FailedMount of a bucket volume (CSI or claim), a Deployment's ProgressDeadlineExceeded;
   Unschedulable, a failed pod creation and other FailedMounts after a short grace
   (`--grace`; a TriggeredScaleUp event lifts it). It reports the pod, the reason, the pod's
   last events and the last log lines of the failing container. `--deadline` bounds the wait.
2. Endpoints. The Ingress address (hostname or IP from its status; the ALB's DNS name on
   AWS), then HTTPS `API_URL/health` (JSON `status: healthy`) and `FRONTEND_URL/api/health`,
   TLS verified, with retries, a per-request timeout and a total deadline. `--address` sends
   the requests to another address (`ingress` = the Ingress's) with the real Host and SNI,
   for when DNS is not set yet; `--ca-bundle` trusts a private CA (a local cluster). With DNS_ZONE
   (the dns step made the records) the report also shows what the names resolve to against the
   Ingress's address, and the certificate served (issuer, names, expiry).
   Then the sign-in (tools/auth/live.py): NextAuth's provider list, the issuer's discovery document,
   and a sign-in started as a browser does must redirect to the provider with the registered
   callback (`--sign-in-via service` reaches the frontend through its Service; `--no-sign-in`).
3. User storage. A throwaway pod built from the chart's user-environment settings (the
   ConfigMap `<release>-user-environment` the backend's pod manager reads: image, annotations,
   volume mode, CSI driver and attributes; the service account from USER_POD_SA_NAME) mounts
   a user bucket (the smoke bucket, made if missing; or `--storage-bucket`), never the
   database's, writes a file, saves it again, reads it back and deletes it;
   the pod (and its PersistentVolume and claim on AWS) is deleted and each phase timed.
4. On failure the release is rolled back to its previous deployed revision (`helm rollback`,
   unless `--no-rollback`) and the rollback's own rollout is checked. The exit code is 1. The
   rollback holds the release's lock (tools/lease.py) and happens only while the revision judged
   (or the one `--revision` names: what this run's deploy made) is still the current one: another
   writer's newer revision is never undone, and the tool says what it found instead.
5. A summary on stdout and, under GitHub Actions, a Markdown table in $GITHUB_STEP_SUMMARY
   (images and digests, chart revision, each check with result and time, URLs) and `::error`
   annotations. Secret values (settings and the release's Secrets) are redacted everywhere.

Exit codes: 0 healthy, 1 unhealthy (after the rollback), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from tools import lease
from tools.auth.live import add_arguments as add_sign_in_arguments
from tools.auth.live import check_sign_in
from tools.cli import main_boundary, parser, settings_from, stage
from tools.cloud import BACKEND_SECRET, FRONTEND_SECRET, cloud_for
from tools.errors import UsageError
from tools.report import REPORTER, markdown_table
from tools.settings import SECRET_VARS, Settings
from tools.smoke import objects
from tools.smoke.cache import Cluster
from tools.smoke.endpoints import DEFAULT_ENDPOINT_DEADLINE, DEFAULT_REQUEST_TIMEOUT, check_endpoints
from tools.smoke.objects import COMPONENT_LABEL
from tools.smoke.results import Check, print_check
from tools.smoke.rollback import chart_revision, rollback
from tools.smoke.storage import DEFAULT_STORAGE_DEADLINE, check_storage
from tools.smoke.watch import DEFAULT_DEADLINE, DEFAULT_GRACE, check_rollout, release_deployments


# -- images and secrets -----------------------------------------------------------------------------------
def image_rows(
    cluster: Cluster, names: Sequence[str], expected: dict[str, dict[str, str]]
) -> tuple[list[list[str]], list[str]]:
    """Rows (component, deployed reference, running digest, built by build_push) and mismatch warnings."""
    rows, warnings = [], []
    for name in names:
        deployment = cluster.objects["deployments"].get(name) or {}
        component = objects.labels(deployment).get(COMPONENT_LABEL) or name
        containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        running = {
            c.get("name"): (c.get("imageID") or "").rpartition("@")[2]
            for pod in cluster.pods_of(deployment)
            for c in (pod.get("status") or {}).get("containerStatuses") or []
        }
        for container in containers:
            image = container.get("image") or ""
            built = expected.get(component)
            built_text = ""
            if built:
                built_text = f"{built['repository']}:{built.get('tag', '')}" + (
                    f"@{built['digest']}" if built.get("digest") else ""
                )
                digest, tag = built.get("digest"), built.get("tag")
                if not ((digest and digest in image) or (tag and image.endswith(f":{tag}"))):
                    warnings.append(f"{name} runs {image}, but build_push built {built_text}")
            rows.append([component, image, running.get(container.get("name")) or "-", built_text or "-"])
    return rows, warnings


def register_release_secrets(cluster: Cluster) -> None:
    """Redact the release's secret values too (generated by make_secrets, so not in the settings)."""
    from tools.kube_client import path

    for secret_name in (BACKEND_SECRET, FRONTEND_SECRET):
        try:
            secret = cluster.api.get(path("secrets", cluster.namespace, secret_name))
        except Exception:
            continue
        values = [v for k, v in (secret.get("stringData") or {}).items() if k in SECRET_VARS]
        for key, encoded in (secret.get("data") or {}).items():
            if key in SECRET_VARS:
                with suppress(ValueError):
                    values.append(base64.b64decode(encoded).decode("utf-8"))
        REPORTER.register_secrets(values)


# -- report ----------------------------------------------------------------------------------------------
def write_summary(
    settings: Settings,
    checks: Sequence[Check],
    revision: str,
    images: Sequence[Sequence[str]],
    addresses: Sequence[str],
    healthy: bool,
) -> None:
    failed = [c for c in checks if c.status == "failed"]
    verdict = "healthy" if healthy else "FAILED"
    REPORTER.info(f"smoke test of release {settings.release} in {settings.namespace} ({settings.cloud}): {verdict}")
    REPORTER.info(f"chart: {revision}")
    for row in images:
        REPORTER.info(f"image {row[0]}: {row[1]} (running {row[2]})")
    if failed:
        REPORTER.info(f"{len(failed)} of {len(checks)} checks failed: {', '.join(c.name for c in failed)}")
    rows = [[c.name, c.status, f"{c.seconds:.1f}s" if c.seconds is not None else "", c.detail] for c in checks]
    urls = [settings["FRONTEND_URL"], settings["API_URL"]]
    parts = [
        f"### Smoke test: release `{settings.release}` in `{settings.namespace}` ({settings.cloud}): {verdict}",
        f"**Chart**: {revision}",
        markdown_table(["check", "result", "time", "detail"], rows),
    ]
    if images:
        parts.append(markdown_table(["image", "deployed", "running digest", "built (images.json)"], images))
    url_text = ", ".join(urls) + (f" (Ingress address: {', '.join(addresses)})" if addresses else "")
    parts.append(f"**URLs**: {url_text}")
    REPORTER.summary("\n\n".join(parts))


# -- main ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.splitlines()[0], dry_run=False)
    p.add_argument("--images", metavar="PATH", help="build_push's out/images.json: compare with what runs")
    p.add_argument(
        "--deadline",
        type=_seconds,
        default=DEFAULT_DEADLINE,
        metavar="SECONDS",
        help="seconds a rollout may take (300)",
    )
    p.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="seconds a pod may stay Unschedulable (20)",
    )
    p.add_argument("--no-rollback", action="store_true", help="on failure, leave the release as it is")
    p.add_argument(
        "--revision",
        type=_revision,
        metavar="N|none",
        help="the revision this run's deploy made (helm_deploy's `revision`): roll back only that one; "
        "none: this run made none, roll nothing back",
    )
    p.add_argument(
        "--revision-file",
        metavar="PATH",
        help="read --revision from the file helm_deploy --revision-file wrote (`make deploy` hands it on)",
    )
    lease.add_arguments(p)
    p.add_argument("--no-endpoints", action="store_true", help="skip the Ingress address and the HTTPS checks")
    p.add_argument(
        "--address",
        metavar="HOST[:PORT]|ingress",
        help="send the HTTPS checks there (with the real Host and SNI): for when DNS is not set yet",
    )
    p.add_argument("--ca-bundle", metavar="PATH", help="CA certificates to trust for the HTTPS checks")
    p.add_argument(
        "--request-timeout",
        type=_seconds,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="seconds per request (10)",
    )
    p.add_argument(
        "--endpoint-deadline",
        type=_seconds,
        default=DEFAULT_ENDPOINT_DEADLINE,
        metavar="SECONDS",
        help="seconds for the Ingress address and the HTTPS checks together (180)",
    )
    add_sign_in_arguments(p)
    p.add_argument("--no-storage-check", action="store_true", help="skip the user storage check")
    p.add_argument(
        "--storage-bucket",
        metavar="NAME",
        help="bucket for the storage check (default: CLUSTER_NAME-user-smoke-ACCOUNT|PROJECT, made if missing)",
    )
    p.add_argument(
        "--storage-deadline",
        type=_seconds,
        default=DEFAULT_STORAGE_DEADLINE,
        metavar="SECONDS",
        help="seconds for the storage pod (180)",
    )
    return p


def handed_revision(path: str | None) -> int | None:
    """The revision helm_deploy wrote to --revision-file (0: it made none), or None without a file."""
    if not path:
        return None
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        fix = "run helm_deploy with --revision-file first"
        raise UsageError(f"--revision-file {path}: {exc.strerror}: {fix}") from None
    try:
        return _revision(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--revision-file {path}: {exc}") from None


def _revision(text: str) -> int:
    if text.lower() in ("none", ""):
        return 0
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a revision: give a number from 1, or none")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds: use e.g. 300")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


@main_boundary
@stage("during the smoke test's checks", "nothing was changed: run it again")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ca_bundle and not os.path.isfile(args.ca_bundle):
        raise UsageError(f"--ca-bundle {args.ca_bundle} is not a file")
    if args.revision is None:
        args.revision = handed_revision(args.revision_file)
    settings = settings_from(args)
    from tools.config_rules import example_file_problem

    example = example_file_problem(settings)
    if example:  # it may roll a release back: not from an example file
        raise UsageError(f"{example}; smoke_test does not run on an example file")
    cloud = cloud_for(settings)
    with cloud.cluster_access() as kubeconfig:
        return smoke_test(settings, kubeconfig, args)


def smoke_test(settings: Settings, kubeconfig: str, args: argparse.Namespace) -> int:
    from tools.kube_ops import api_client as kube_client

    expected = _load_images(args.images)
    kinds = ["deployments", "replicasets", "pods", "events"] + ([] if args.no_endpoints else ["ingresses"])
    checks: list[Check] = []
    addresses: list[str] = []
    with (
        kube_client(kubeconfig) as api_client,
        Cluster(api_client, settings.namespace, kinds) as cluster,
    ):
        register_release_secrets(cluster)
        revision, judged = chart_revision(settings, kubeconfig)  # after the watches open: they are what is timed
        names = release_deployments(cluster, settings.release)
        checks += check_rollout(cluster, names, args.deadline, args.grace, "rollout")
        if args.no_endpoints:
            checks.append(Check("endpoints", "skipped", None, "--no-endpoints"))
        elif _healthy(checks):
            endpoint_checks, addresses = check_endpoints(cluster, settings, args)
            checks += endpoint_checks
        else:
            checks.append(Check("endpoints", "skipped", None, "not run: the rollout failed"))
        checks += check_sign_in(cluster, settings, args, _healthy(checks))
        if args.no_storage_check:
            checks.append(Check("user storage", "skipped", None, "--no-storage-check"))
        elif _healthy(checks):
            checks.append(check_storage(cluster, settings, args))
            print_check(checks[-1])
        else:
            checks.append(Check("user storage", "skipped", None, "not run: an earlier check failed"))
        healthy = _healthy(checks)
        images, warnings = image_rows(cluster, names, expected)
        for warning in warnings:
            REPORTER.warning(warning, title="images")
            checks.append(Check("images", "warning", None, warning))
        if not healthy and args.no_rollback:
            checks.append(Check("rollback", "skipped", None, "--no-rollback: the release is left as it is"))
        elif not healthy:
            ours = judged if args.revision is None else (args.revision or None)
            lock = lease.ReleaseLock(
                api_client, settings.namespace, settings.release, "smoke_test rollback",
                wait=args.lock_wait, duration=args.lock_duration,
            )  # fmt: skip
            check, target = rollback(settings, kubeconfig, ours, lock)
            print_check(check)
            checks.append(check)
            if target is not None:
                cluster.refresh_deployments(names)
                checks += check_rollout(cluster, names, args.deadline, args.grace, "rollback rollout")
                revision += f"; rolled back to revision {target}"
                images, _ = image_rows(cluster, names, expected)  # what runs now
    write_summary(settings, checks, revision, images, addresses, healthy)
    return 0 if healthy else 1


def _healthy(checks: Sequence[Check]) -> bool:
    return all(c.status in ("ok", "skipped", "warning") for c in checks)


def _load_images(path: str | None) -> dict[str, dict[str, str]]:
    if not path:
        return {}
    from tools.images import load_images

    return load_images(path)


if __name__ == "__main__":
    raise SystemExit(main())
