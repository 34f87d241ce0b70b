"""A fleet: the targets one repository deploys, and the waves they roll out in.

A target names one deployment (cloud, account or project, region, cluster, namespace, domain,
environment); its settings are the env file `env/<target>.env` (else `env/<target>.env.example`),
its cloud named inside by CLOUD_PROVIDER, and what the steps write for it goes under
`out/<target>/` (its plan under `out/plan/<target>/`). `CLOUD=aws` is the target named `aws`.

The fleet file (YAML) lists the waves in order, each with its targets:

    waves:
      - name: canary
        targets: [aws-us]
      - name: regions
        targets: [aws-eu, gcp-eu]

Adding a target is adding its env file and its name to one wave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tools.settings import ConfigError, Settings, load_settings

TARGET_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
TARGET_NAME_HELP = "2-40 lowercase letters, digits and hyphens, starting with a letter (it names out/<target>/)"


@dataclass(frozen=True)
class Wave:
    name: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Fleet:
    path: Path
    waves: tuple[Wave, ...]

    @property
    def targets(self) -> tuple[str, ...]:
        """Every target, in rollout order."""
        return tuple(t for wave in self.waves for t in wave.targets)

    @property
    def env_dir(self) -> Path:
        """The env files sit in env/ beside the fleet file."""
        return self.path.parent / "env"

    def env_file(self, target: str) -> Path:
        """env/<target>.env when it exists, else the committed example (as the Makefile's ENV_FILE)."""
        real = self.env_dir / f"{target}.env"
        return real if real.exists() else self.env_dir / f"{target}.env.example"

    def settings(self, target: str) -> Settings:
        return load_settings(env_file=self.env_file(target))


def platforms_union(all_settings: list[Settings]) -> tuple[str, ...]:
    """The platforms the fleet's images are built for once: every target's IMAGE_PLATFORMS, first seen first."""
    return tuple(dict.fromkeys(p for settings in all_settings for p in settings.platforms))


def out_dir(root: Path, target: str) -> Path:
    """Where the steps write for one target: out/<target>/ (logs, images.json)."""
    return root / "out" / target


def load_fleet(path: str | Path) -> Fleet:
    """Read and check the fleet file; every problem one line, all at once."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"fleet file {p} does not exist: give FLEET=PATH of a file listing waves and targets"], 2)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where else ""
        raise ConfigError([f"fleet file {p}{line}: not valid YAML: fix it (see the example fleet.yaml)"], 2) from None
    raw_waves = data.get("waves") if isinstance(data, dict) else None
    if not isinstance(raw_waves, list) or not raw_waves:
        raise ConfigError([f"fleet file {p}: no 'waves:' list: write waves: [{{name: ..., targets: [...]}}]"], 2)
    problems: list[str] = []
    waves: list[Wave] = []
    seen: dict[str, str] = {}
    for number, raw in enumerate(raw_waves, 1):
        wave_name = str(raw.get("name") or f"wave {number}") if isinstance(raw, dict) else f"wave {number}"
        targets = raw.get("targets") if isinstance(raw, dict) else None
        if not isinstance(targets, list) or not targets:
            problems.append(f"fleet file {p}: {wave_name} has no 'targets:' list: list at least one target")
            continue
        for target in targets:
            name = str(target)
            if not TARGET_NAME.match(name):
                problems.append(f"fleet file {p}: target {name!r} in {wave_name}: use {TARGET_NAME_HELP}")
            elif name in seen:
                problems.append(f"fleet file {p}: target {name} is in {seen[name]} and {wave_name}: list it once")
            seen.setdefault(name, wave_name)
        waves.append(Wave(wave_name, tuple(str(t) for t in targets)))
    if problems:
        raise ConfigError(problems, 2)
    fleet = Fleet(p.resolve(), tuple(waves))
    missing = [t for t in fleet.targets if not fleet.env_file(t).exists()]
    if missing:
        raise ConfigError(
            [f"target {t}: no env file {fleet.env_dir / t}.env: copy an env/*.env.example to it" for t in missing], 2
        )
    return fleet
