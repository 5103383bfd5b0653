"""MkDocs hook: the field reference of docs/configs.md, generated from the config code.

`render()` builds one table per config group (field | value | meaning) from
`fedjax_sim.config.reference.field_reference` run on one base config per family (federated,
distributed, centralized); the hook puts it in place of `MARKER` in configs.md. A field whose
value differs between the families, or that only some families have, shows each family's
value. Meanings are the comments the config code writes beside each field; a field without one
shows an empty meaning.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The checkout being documented, ahead of any installed copy of the package.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MARKER = "<!-- config-reference -->"
PAGE = "configs.md"
# family -> its base config file (repository-relative): the values the tables show.
FAMILIES = {
    "federated": "configs/fedavg_shakespeare.py",
    "distributed": "configs/localsgd_digits.py",
    "centralized": "configs/centralized_shakespeare.py",
}
TOP = ""  # the group of the top-level fields


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    text = " ".join(str(text).split())
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("<", "&lt;")):
        text = text.replace(raw, escaped)
    return text


def _value(value) -> str:
    from fedjax_sim.config.reference import shown

    text = shown(value)
    home = os.path.expanduser("~")
    if isinstance(value, str) and home != "~" and value.startswith(home):
        text = shown("~" + value[len(home) :])  # not the machine that built the site
    return "`" + text.replace("|", "\\|") + "`"


def _references() -> dict[str, tuple[list, dict]]:
    from fedjax_sim.config.files import load_config
    from fedjax_sim.config.reference import field_reference

    return {
        family: field_reference(load_config(os.path.join(ROOT, path)))
        for family, path in FAMILIES.items()
    }


def render() -> str:
    """The field reference as Markdown: an introduction, then one section per group."""
    references = _references()
    groups, meanings, values, families_of = {TOP: ""}, {}, {}, {}
    for family, (fields, group_meanings) in references.items():
        for group, meaning in group_meanings.items():
            groups.setdefault(group, meaning)
            families_of.setdefault(group, []).append(family)
        families_of.setdefault(TOP, []).append(family)
        for field in fields:
            meanings.setdefault(field.name, field.meaning)
            if field.meaning and not meanings[field.name]:
                meanings[field.name] = field.meaning
            values.setdefault(field.name, {})[family] = field.value
    order = [TOP] + sorted(g for g in groups if g != TOP)
    sources = ", ".join(f"{family}: `{path}`" for family, path in FAMILIES.items())
    lines = [
        f"Values as each family's base config sets them ({sources}); where the families "
        "differ, each family's value is shown. A group the table marks with fewer families is "
        "not in the others' configs.",
        "",
    ]
    for group in order:
        names = [n for n in values if (n.rpartition(".")[0] if "." in n else TOP) == group]
        if not names:
            continue
        title = "Top-level fields" if group == TOP else f"`{group}`"
        lines += [f"### {title}", ""]
        if groups.get(group):
            lines += [_cell(groups[group]), ""]
        lines += [f"Families: {', '.join(families_of[group])}.", ""]
        lines += ["| field | value | meaning |", "|---|---|---|"]
        for name in sorted(names):
            by_family = values[name]
            distinct = {_value(v) for v in by_family.values()}
            if len(distinct) == 1 and len(by_family) == len(families_of[group]):
                value = distinct.pop()
            else:
                value = "<br>".join(f"{f}: {_value(v)}" for f, v in by_family.items())
            lines.append(f"| `{name}` | {value} | {_cell(meanings[name])} |")
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its field reference marker {MARKER}")
    return markdown.replace(MARKER, render())
