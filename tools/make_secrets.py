"""Create or update the Kubernetes Secrets of CMBCluster from the settings, keeping generated keys.

Reads what exists first. SECRET_KEY, NEXTAUTH_SECRET and FILE_ENCRYPTION_KEY that the settings
leave unset are generated once (cryptographically strong) and then kept; an existing value
changes only when the settings give a different one (reported as updated) or with
`--rotate NAME`. FILE_ENCRYPTION_KEY never changes without `--rotate FILE_ENCRYPTION_KEY
--i-understand-data-loss`: files encrypted with the old key become unreadable.
Prints key names and what happened to them, never values. A run that changes nothing writes
nothing. Exit 0 ok, 1 failure or refusal, 2 usage.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tools import cli, config_rules, kube_ops, lease
from tools.cloud import BACKEND_SECRET, FRONTEND_SECRET, cloud_for
from tools.errors import ToolError, UsageError
from tools.kube_client import KubeApi
from tools.report import REPORTER, markdown_table
from tools.settings import SECRET_VARS, Settings

GENERATED = ("SECRET_KEY", "NEXTAUTH_SECRET", "FILE_ENCRYPTION_KEY")
ENCRYPTION_KEY = "FILE_ENCRYPTION_KEY"
PROVIDER_SECRETS = {"google": "GOOGLE_CLIENT_SECRET", "cognito": "COGNITO_CLIENT_SECRET"}
SWITCHES = (
    "DEV_MODE",
    "DEBUG",
    "TLS_ENABLED",
    "RATE_LIMIT_ENABLED",
    "ENABLE_SECURITY_HEADERS",
    "CSP_ENABLED",
    "JWT_ALGORITHM",
    "TOKEN_EXPIRE_HOURS",
)
LABELS = {"app.kubernetes.io/part-of": "cmbcluster", "app.kubernetes.io/managed-by": "cmbcluster-deploy"}
DATA_LOSS_FLAG = "--i-understand-data-loss"


@dataclass(frozen=True)
class Change:
    secret: str
    key: str
    action: str  # created | kept | updated | rotated | left (present but no longer configured)
    source: str = ""  # generated | settings | "" (kept as is)


def wanted_keys(settings: Settings) -> dict[str, list[str]]:
    """The keys each Secret holds for these settings (CMBCLUSTER_FACTS: secrets)."""
    providers = [PROVIDER_SECRETS[p] for p in settings.auth_providers()]
    return {
        BACKEND_SECRET: ["SECRET_KEY", ENCRYPTION_KEY, *providers, *SWITCHES],
        FRONTEND_SECRET: ["NEXTAUTH_SECRET", *providers],
    }


def generate(name: str) -> str:
    """A new strong value, registered as a secret before anything can print it."""
    # A Fernet key (urlsafe base64 of 32 random bytes), else 64 characters (384 bits).
    value = base64.urlsafe_b64encode(os.urandom(32)).decode() if name == ENCRYPTION_KEY else secrets.token_urlsafe(48)
    REPORTER.register_secrets([value])
    return value


def plan_secrets(
    settings: Settings,
    live: dict[str, dict[str, str] | None],
    rotate: frozenset[str] = frozenset(),
    confirm_data_loss: bool = False,
) -> tuple[dict[str, dict[str, str]], list[Change]]:
    """Decide every key's value. Returns the keys to write per Secret, and what happens to each key.

    One value per name, shared by every Secret that holds it. Raises before anything is
    written when a change needs a confirmation that was not given.
    """
    targets: dict[str, tuple[str, str] | None] = {}  # name -> (value, source)
    writes: dict[str, dict[str, str]] = {}
    changes: list[Change] = []
    for secret, keys in wanted_keys(settings).items():
        current = live.get(secret) or {}
        writes[secret] = {}
        for key in keys:
            if key not in targets:
                targets[key] = _target(settings, key, _live_value(live, key), rotate, confirm_data_loss)
            target = targets[key]
            if target is None:  # not configured and not in the cluster: validation reports it
                continue
            value, source = target
            have = current.get(key)
            if have == value:
                changes.append(Change(secret, key, "kept"))
                continue
            action = "created" if have is None else "rotated" if key in rotate else "updated"
            writes[secret][key] = value
            changes.append(Change(secret, key, action, source))
        changes += [Change(secret, key, "left") for key in sorted(set(current) - set(keys))]
    return writes, changes


def _live_value(live: dict[str, dict[str, str] | None], key: str) -> str | None:
    """The value a key has in the cluster (the first Secret holding it)."""
    for data in live.values():
        if data and data.get(key):
            return data[key]
    return None


def _target(
    settings: Settings, key: str, current: str | None, rotate: frozenset[str], confirm_data_loss: bool
) -> tuple[str, str] | None:
    """The value `key` must have, and where it comes from (generated | settings | "" for the live one)."""
    given = settings.values.get(key) or None
    if key in rotate:
        if key == ENCRYPTION_KEY and not confirm_data_loss:
            raise UsageError(
                f"--rotate {ENCRYPTION_KEY} makes every file encrypted with the current key unreadable: "
                f"add {DATA_LOSS_FLAG} if that is really what you want"
            )
        if given and given == current:
            raise UsageError(
                f"--rotate {key}: the settings give {key} its current value, so nothing would change: "
                f"set a new value there, or unset {key} to have a new one generated"
            )
        return (given, "settings") if given else (generate(key), "generated")
    if given is None:
        if current is not None:
            return current, ""
        return (generate(key), "generated") if key in GENERATED else None
    if key == ENCRYPTION_KEY and current is not None and given != current:
        raise ToolError(
            f"{ENCRYPTION_KEY} in the settings differs from the one in the cluster, and a new key makes every "
            f"stored file unreadable: remove it from the settings to keep the current key, or run with "
            f"--rotate {ENCRYPTION_KEY} {DATA_LOSS_FLAG} to replace it"
        )
    return given, "settings"


def read_live(api: KubeApi, namespace: str) -> dict[str, dict[str, str] | None]:
    live = {}
    for name in (BACKEND_SECRET, FRONTEND_SECRET):
        data = kube_ops.read_secret(api, namespace, name)
        if data:
            REPORTER.register_secrets(v for k, v in data.items() if k in SECRET_VARS)
        live[name] = data
    return live


def apply(
    api: KubeApi, namespace: str, live: dict[str, dict[str, str] | None], writes: dict[str, dict[str, str]]
) -> None:
    for secret, values in writes.items():
        if not values:
            continue
        if live.get(secret) is None:
            kube_ops.create_secret(api, namespace, secret, values, LABELS)
        else:
            kube_ops.patch_secret(api, namespace, secret, values)


def report(changes: list[Change], live: dict[str, dict[str, str] | None], dry_run: bool) -> None:
    would = {"created": "would create", "updated": "would update", "rotated": "would rotate"}
    for change in changes:
        if change.key == ENCRYPTION_KEY and change.action == "created" and live.get(change.secret) is not None:
            REPORTER.warning(
                f"{change.secret} exists without {ENCRYPTION_KEY}: a new key is generated; files encrypted "
                "with a lost key cannot be read"
            )
        if change.action == "left":
            REPORTER.line("skip", f"{change.secret} {change.key}: left as is (no longer configured)")
            continue
        verb = would.get(change.action, change.action) if dry_run else change.action
        detail = f" ({change.source})" if change.source else ""
        status = "ok" if change.action == "kept" or not dry_run else "info"
        REPORTER.line(status, f"{change.secret} {change.key}: {verb}{detail}")
    rows = [(c.secret, c.key, c.action + (" (dry run)" if dry_run and c.action != "kept" else "")) for c in changes]
    REPORTER.summary("### make_secrets\n" + markdown_table(["Secret", "Key", "Result"], rows))


@cli.main_boundary
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--rotate",
        action="append",
        default=[],
        choices=GENERATED,
        metavar="NAME",
        help=f"replace a kept key with a new value (one of {', '.join(GENERATED)}; repeatable)",
    )
    parser.add_argument(
        DATA_LOSS_FLAG,
        dest="confirm_data_loss",
        action="store_true",
        help=f"confirm --rotate {ENCRYPTION_KEY}: files encrypted with the old key become unreadable",
    )
    lease.add_arguments(parser)
    args = parser.parse_args(argv)
    settings = cli.settings_from(args)
    config_rules.require_valid(settings, "make_secrets")

    namespace = settings.namespace
    with cloud_for(settings).cluster_access() as kubeconfig:
        api = kube_ops.api_client(kubeconfig)
        live = read_live(api, namespace)
        writes, changes = plan_secrets(settings, live, frozenset(args.rotate), args.confirm_data_loss)
        if any(writes.values()) and all(data is None for data in live.values()):
            # No Secret exists yet: the namespace may be missing too. (A Secret cannot exist
            # in a missing namespace, so when one does, the namespace is not asked about.)
            settled, state = kube_ops.ensure_namespace(api, namespace, dry_run=args.dry_run)
            REPORTER.line("ok" if settled else "warn", f"namespace {namespace}: {state}")
        if args.dry_run:
            report(changes, live, args.dry_run)
            REPORTER.info("dry run: nothing was written")
            return 0
        if any(writes.values()):  # writers hold the release's lock; a run with nothing to write takes none
            lock = lease.ReleaseLock(
                api, namespace, settings.release, "make_secrets", wait=args.lock_wait, duration=args.lock_duration
            )
            with lock:
                live = read_live(api, namespace)  # again under the lock: another writer may have just written
                writes, changes = plan_secrets(settings, live, frozenset(args.rotate), args.confirm_data_loss)
                report(changes, live, args.dry_run)
                apply(api, namespace, live, writes)
        else:
            report(changes, live, args.dry_run)
    counts = {a: sum(c.action == a for c in changes) for a in ("created", "updated", "rotated", "kept")}
    written = sum(bool(v) for v in writes.values())
    REPORTER.ok(
        f"secrets in namespace {namespace}: "
        + ", ".join(f"{n} {a}" for a, n in counts.items())
        + (f"; {written} Secret(s) written" if written else "; nothing to write")
    )
    if any(live.get(s) is not None and v for s, v in writes.items()):
        REPORTER.info(
            f"running pods keep the old values until they restart: kubectl rollout restart deployment -n {namespace}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
