"""The README's "Layout" section is the newcomer's map: it names every module of tools/ and nothing that is gone."""

from __future__ import annotations

import re

from tools.settings import REPO_ROOT

PACKAGES = ("cloud", "smoke", "auth")  # tools' subpackages, named in the section as `tools/<package>/`


def layout_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n(.*?)^## ", readme, re.S | re.M)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


def named_modules(section: str) -> set[str]:
    """`x.py` names, each under the subpackage of the paragraph or table row that names it (else tools/)."""
    names: set[str] = set()
    for block in re.split(r"\n\s*\n", section):
        package = next((p for p in PACKAGES if f"(`tools/{p}/`)" in block), "")
        for name in re.findall(r"`([a-z0-9_]+\.py)`", block):
            names.add(f"{package}/{name}" if package else name)
    return names


def tools_modules() -> set[str]:
    tools = REPO_ROOT / "tools"
    return {str(p.relative_to(tools)) for p in tools.rglob("*.py") if p.name != "__init__.py"}


def test_every_module_of_tools_is_named_and_every_named_module_exists() -> None:
    named, present = named_modules(layout_section()), tools_modules()
    assert len(present) > 50 and len(named) > 50  # the walk found the tree and the section
    assert not present - named, f"modules the README's Layout section does not name: {sorted(present - named)}"
    assert not named - present, (
        f"modules the README's Layout section names that do not exist: {sorted(named - present)}"
    )


def test_every_folder_named_exists() -> None:
    folders = re.findall(r"^\| `([.\w/-]+/)` \|", layout_section(), re.M)
    assert len(folders) >= 8
    missing = [f for f in folders if not (REPO_ROOT / f).is_dir()]
    assert not missing, f"folders the Layout section names that do not exist: {missing}"


def test_the_walk_tells_a_subpackage_module_from_a_top_level_one() -> None:
    section = "Top: `plan.py`.\n\n**Smoke** (`tools/smoke/`): `watch.py`, `plan.py`.\n"
    assert named_modules(section) == {"plan.py", "smoke/watch.py", "smoke/plan.py"}
