"""DNS records the toolkit owns, whatever the DNS service: ownership beside each record, and the change set.

Like ExternalDNS, each record the toolkit makes has a TXT record beside it saying who made it
(`heritage=cmbcluster-deploy,cmbcluster-deploy/owner=CLUSTER/NAMESPACE/RELEASE,...`). The TXT
sits at a prefixed name (`_cmbcluster-owner.NAME`; `_cmbcluster-owner-wildcard.REST` for
`*.REST`), since a CNAME may have no other record at its own name. A record is changed only
when its owner TXT names this release; any other record in the way is a conflict, reported
before anything is changed. A record already exactly as wanted is left alone, whoever made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HERITAGE = "cmbcluster-deploy"
OWNER_PREFIX = "_cmbcluster-owner"
# Types that may not share a name with an address record (A/ALIAS) or a CNAME.
_IN_THE_WAY = {"A": ("A", "CNAME"), "AAAA": ("AAAA", "CNAME"), "CNAME": ("A", "AAAA", "CNAME", "TXT", "MX")}


@dataclass(frozen=True)
class Record:
    """One record set. Names are lowercase without the trailing dot; `alias` is Route53's (zone id, DNS name)."""

    name: str
    type: str
    values: tuple[str, ...] = ()
    alias: tuple[str, str] | None = None
    ttl: int = 300

    def shown(self) -> str:
        if self.alias:
            return f"{self.type} {self.name} -> ALIAS {self.alias[1]} (zone {self.alias[0]})"
        return f"{self.type} {self.name} -> {', '.join(self.values)}"

    def same(self, other: Record | None) -> bool:
        """Equal as DNS sees it (the TTL of an alias means nothing)."""
        if other is None or (self.name, self.type, self.alias) != (other.name, other.type, other.alias):
            return False
        return self.alias is not None or (sorted(self.values), self.ttl) == (sorted(other.values), other.ttl)


@dataclass(frozen=True)
class Change:
    action: str  # create | update
    record: Record
    before: Record | None = None

    def shown(self) -> str:
        was = f" (was {self.before.shown().split(' -> ', 1)[1]})" if self.before else ""
        return f"{self.action} {self.record.shown()}{was}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    in_place: list[Record] = field(default_factory=list)  # wanted and already there


def normal(name: str) -> str:
    """A name as the toolkit compares them: lowercase, no trailing dot, Route53's \\052 as *."""
    return name.replace("\\052", "*").rstrip(".").lower()


def owner_name(name: str) -> str:
    if name.startswith("*."):
        return f"{OWNER_PREFIX}-wildcard.{name[2:]}"
    return f"{OWNER_PREFIX}.{name}"


def owner_text(owner: str, resource: str) -> str:
    return f"heritage={HERITAGE},{HERITAGE}/owner={owner},{HERITAGE}/resource={resource}"


def parse_owner(text: str) -> dict[str, str]:
    """The key=value pairs of an ownership TXT (quotes stripped); {} when it is not one."""
    pairs = dict(part.partition("=")[::2] for part in text.strip('"').split(",") if "=" in part)
    return pairs if pairs.get("heritage") else {}


def plan_changes(wanted: list[Record], current: dict[str, dict[str, Record]], owner: str, resource: str) -> Plan:
    """What to change so that every `wanted` record exists and is owned by `owner`.

    `current` maps each name (the wanted names and their owner names) to its record sets by type.
    """
    result = Plan()
    text = owner_text(owner, resource)
    for record in wanted:
        here = current.get(record.name, {})
        tag_name = owner_name(record.name)
        tag = current.get(tag_name, {})
        mark = Record(tag_name, "TXT", (text,))
        existing = here.get(record.type)
        if record.same(existing):
            result.in_place.append(record)
            continue
        if tag:
            found = parse_owner(" ".join(tag["TXT"].values)) if "TXT" in tag else {}
            if found.get("heritage") != HERITAGE or found.get(f"{HERITAGE}/owner") != owner:
                whose = found.get(f"{HERITAGE}/owner") or found.get("heritage") or f"a {'/'.join(tag)} record"
                result.conflicts.append(
                    f"{record.name}: its ownership record {tag_name} names {whose}, not {owner}: "
                    "it belongs to someone else; remove it or use another BASE_DOMAIN"
                )
                continue
            others = [t for t in _IN_THE_WAY[record.type] if t in here and t != record.type]
            if others:
                result.conflicts.append(
                    f"{record.name}: has a {'/'.join(others)} record that is not this release's: "
                    "remove it or use another BASE_DOMAIN"
                )
                continue
            result.changes.append(Change("update" if existing else "create", record, existing))
            if not mark.same(tag.get("TXT")):
                result.changes.append(Change("update", mark, tag.get("TXT")))
            continue
        blocking = [t for t in _IN_THE_WAY[record.type] if t in here]
        if blocking:
            shown = here[blocking[0]].shown()
            result.conflicts.append(
                f"{record.name}: {shown} exists and is not this release's (no ownership record {tag_name}): "
                "remove it or use another BASE_DOMAIN"
            )
            continue
        result.changes += [Change("create", record), Change("create", mark)]
    return result
