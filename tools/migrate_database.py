"""Move a database that an older chart kept on its bucket into the Litestream replica, once.

Charts before the Litestream backup mounted the database bucket at /app/data, which Mountpoint
for S3 cannot rewrite and GCS FUSE cannot lock. This command, run once before deploying the new
chart: stops the old backend (the only writer), on EKS deletes the old bucket-backed claim and
volume (the bucket stays), checks the file with SQLite, replicates it with Litestream, restores
the replica into a scratch file and compares every table's rows. The file on the bucket is left
where it is. Then `make helm-deploy` installs the new chart, whose restore container puts the
database on the new volume. Safe to re-run: with a replica in place it changes nothing.
`--backend-stopped` skips the cluster (you stopped the backend yourself, or it is gone).
Exit 0 ok, 1 failure or refusal, 2 usage.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

from tools import cli, database, kube_ops, lease
from tools.cloud import cloud_for
from tools.config_rules import require_valid
from tools.report import REPORTER


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--backend-stopped",
        action="store_true",
        help="do not touch the cluster: the old backend is already stopped (or uninstalled)",
    )
    lease.add_arguments(parser)
    args = parser.parse_args(argv)
    settings = cli.settings_from(args)

    require_valid(settings, "migrate_database")
    cloud = cloud_for(settings)
    with REPORTER.action("database backup") as action:
        state = database.backup_state(cloud)
        if not state.replica:
            action.set("ok", f"nothing to migrate: {settings.cloud} has no database bucket")
            return 0
        if not state.needs_migration:
            found = "a replica is in place" if state.has_replica else "no database file on the bucket"
            action.set("ok", f"nothing to migrate: {found} ({state.replica})")
            return 0
        action.set("warn", f"{state.legacy} has no replica yet: migrating")
    database.litestream()  # before anything changes
    if not args.backend_stopped:
        with cloud.cluster_access() as kubeconfig, kube_ops.api_client(kubeconfig) as api:
            lock = lease.ReleaseLock(
                api, settings.namespace, settings.release, "migrate_database", wait=args.lock_wait,
                duration=args.lock_duration,
            )  # fmt: skip
            with lock if not args.dry_run else contextlib.nullcontext():
                with REPORTER.action("stop the old backend") as action:
                    action.set("ok", database.stop_backend(api, settings.namespace, settings.release, args.dry_run))
                with REPORTER.action("old bucket-backed database claim") as action:
                    done = database.release_bucket_claim(
                        api, settings.namespace, settings.release, cloud.csi_driver, args.dry_run
                    )
                    action.set("ok", done)
    with REPORTER.action("replicate the database") as action:
        action.set("ok", database.replicate_legacy(cloud, state, args.dry_run))
    if args.dry_run:
        REPORTER.info("dry run: nothing was changed")
        return 0
    REPORTER.summary(f"### migrate_database\n`{state.legacy}` replicated to `{state.replica}` and verified.")
    REPORTER.ok(
        f"next: make helm-deploy CLOUD={settings.cloud} (the restore container fills the new volume); "
        f"{state.legacy} is left in place: delete it once the deploy is healthy"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
