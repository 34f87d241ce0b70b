"""A whole fleet checked at once (the fleet_validate step's and fleet_deploy's check): every target's
settings, then what two targets must never share (a bucket name, a host name, a cluster and namespace).
No cloud access.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tools.cloud import check_bucket_name, cloud_for
from tools.fleet import Fleet, platforms_union
from tools.report import REPORTER
from tools.settings import ConfigError, Settings

# Where bucket names must be unique: S3 bucket names are global across all accounts and regions
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html), GCS bucket names
# across all projects (https://cloud.google.com/storage/docs/buckets#naming); a local cluster has none.
BUCKET_NAMESPACE = {"aws": "S3", "gcp": "GCS"}


@dataclass(frozen=True)
class Claims:
    """What one target owns and no other target may: bucket names, host names, its cluster slot."""

    buckets: tuple[tuple[str, str], ...]  # (namespace, name); a user bucket prefix ends in "-*"
    hosts: tuple[str, ...]
    slot: tuple[str, ...]  # the cluster and namespace
    registry: str

    @property
    def slot_text(self) -> str:
        return "/".join(part or "(current context)" for part in self.slot)


def claims(settings: Settings) -> Claims:
    cloud = cloud_for(settings)
    space = BUCKET_NAMESPACE.get(settings.cloud)
    buckets = (
        ((space, cloud.database_bucket), (space, cloud.smoke_bucket), (space, f"{cloud.user_bucket_prefix}-*"))
        if space
        else ()
    )
    base = settings["BASE_DOMAIN"]
    hosts = {base, f"api.{base}", f"*.{base}"}
    hosts |= {urlsplit(settings[name]).hostname or "" for name in ("FRONTEND_URL", "API_URL")} - {""}
    if settings.cloud == "aws":
        cluster: tuple[str, ...] = ("aws", settings["AWS_ACCOUNT_ID"], settings["AWS_REGION"], settings.cluster_name)
    elif settings.cloud == "gcp":
        cluster = ("gcp", settings["PROJECT_ID"], settings["GKE_LOCATION"], settings.cluster_name)
    else:
        cluster = ("local", settings["KUBE_CONTEXT"])
    return Claims(tuple(buckets), tuple(sorted(hosts)), (*cluster, settings.namespace), cloud.registry())


def host_overlap(one: str, other: str) -> bool:
    """True when a request for one host could reach the other: equal, or a wildcard covering it
    (a DNS wildcard matches exactly one label: https://www.rfc-editor.org/rfc/rfc4592#section-2.1.1)."""
    if one == other:
        return True
    for wild, host in ((one, other), (other, one)):
        if wild.startswith("*.") and not host.startswith("*.") and host.partition(".")[2] == wild[2:]:
            return True
    return False


def collisions(all_claims: dict[str, Claims]) -> list[str]:
    """Every pair of targets that claim the same thing, one line each."""
    problems: list[str] = []
    names = list(all_claims)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ca, cb = all_claims[a], all_claims[b]
            for bucket in sorted(set(ca.buckets) & set(cb.buckets)):
                problems.append(
                    f"targets {a} and {b} both use {bucket[0]} bucket {bucket[1]} ({bucket[0]} names are global): "
                    "give one a CLUSTER_NAME of its own"
                )
            hosts = sorted({h if h == g else f"{h} and {g}" for h in ca.hosts for g in cb.hosts if host_overlap(h, g)})
            if hosts:
                problems.append(
                    f"targets {a} and {b} both answer on {', '.join(hosts)}: give each a BASE_DOMAIN of its own"
                )
            if ca.slot == cb.slot:
                problems.append(
                    f"targets {a} and {b} are both on {ca.slot_text}: give one a NAMESPACE (or cluster) of its own"
                )
    return problems


def validate(fleet: Fleet) -> list[str]:
    """Check every target, report one line each, and return every problem (empty: the fleet is good)."""
    problems: list[str] = []
    found: dict[str, Claims] = {}
    loaded: list[Settings] = []
    build_registry = ""
    for target in fleet.targets:
        start = time.monotonic()
        try:
            settings = fleet.settings(target)
        except ConfigError as exc:
            for problem in exc.problems:
                problems.append(f"target {target}: {problem}")
                REPORTER.line("error", f"target {target}: {problem}", time.monotonic() - start)
            continue
        mine = claims(settings)
        loaded.append(settings)
        bad = [p for p in (check_bucket_name(name) for _, name in mine.buckets if not name.endswith("*")) if p]
        build_registry = build_registry or mine.registry
        shipped = "built here" if mine.registry == build_registry else f"copied by digest from {build_registry}"
        detail = (
            f"target {target}: {settings.cloud} {settings.environment}, {mine.slot_text}, "
            f"https://{settings['BASE_DOMAIN']}, registry {mine.registry} ({shipped})"
        )
        for problem in bad:
            problems.append(f"target {target}: {problem}: shorten or change CLUSTER_NAME")
        REPORTER.line(
            "error" if bad else "ok", detail + (f": {'; '.join(bad)}" if bad else ""), time.monotonic() - start
        )
        found[target] = mine
    if loaded:
        REPORTER.line(
            "ok", f"images: built once for {','.join(platforms_union(loaded))} (every target's IMAGE_PLATFORMS)"
        )
    start = time.monotonic()
    clashes = collisions(found)
    for clash in clashes:
        REPORTER.line("error", clash, time.monotonic() - start)
    if not clashes:
        REPORTER.line("ok", f"collisions: none among {len(found)} target(s) (buckets, hosts, cluster+namespace)")
    return problems + clashes
