"""Every config field with its value and its meaning, read from the code that defines it.

A field's meaning is the comment the config code writes beside it (on its line, or the lines
right above it) and its group's meaning the comment above the group's definition (or the
docstring of the function that returns it), so the documentation site's field reference and
``python -m fedjax_sim fields`` are generated from the defaults themselves and cannot drift
from them. Groups are matched to their definitions by their set of field names.
"""

from __future__ import annotations

import ast
import glob
import io
import json
import os
import tokenize
from typing import NamedTuple

import ml_collections

CONFIG_SOURCES = ("defaults.py", "registry.py", "registry/*.py")


class Field(NamedTuple):
    name: str  # dotted: "client.learning_rate"
    value: object
    meaning: str


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}


def _comment_at(line: int, comments: dict[int, str], lines: list[str]) -> str:
    """The comment on ``line`` (after code) or the run of comment-only lines right above it."""
    if line in comments and not lines[line - 1].lstrip().startswith("#"):
        return comments[line]
    above, row = [], line - 1
    while row in comments and lines[row - 1].lstrip().startswith("#"):
        above.insert(0, comments[row])
        row -= 1
    return " ".join(above)


def _attribute_path(node) -> list[str] | None:
    """``config.a.b`` -> ["a", "b"]; ``config["a"]`` -> ["a"]; None for other targets."""
    parts = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
        elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            parts.insert(0, node.slice.value)
        else:
            return None
        node = node.value
    return parts if isinstance(node, ast.Name) and node.id == "config" and parts else None


class _Meanings(NamedTuple):
    by_path: dict  # "seed" / "model" -> meaning (assignments to config.<path>)
    groups: list  # (frozenset of keys, group meaning, {key: meaning}) per dict literal


def _read_source(path: str, found: _Meanings) -> None:
    with open(path) as f:
        source = f.read()
    comments, lines = _comments(source), source.splitlines()
    tree = ast.parse(source)
    statement_of = {}
    for statement in ast.walk(tree):
        if isinstance(statement, ast.stmt):
            for child in ast.walk(statement):
                statement_of.setdefault(id(child), statement) if child is not statement else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                path = _attribute_path(target)
                meaning = _comment_at(node.lineno, comments, lines)
                if path and meaning:
                    found.by_path.setdefault(".".join(path), meaning)
        if (
            isinstance(node, ast.Dict)
            and node.keys
            and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys)
        ):
            keys = {k.value: _comment_at(k.lineno, comments, lines) for k in node.keys}
            statement = statement_of.get(id(node))
            group = _comment_at(statement.lineno, comments, lines) if statement else ""
            if not group and isinstance(statement, ast.Return):
                group = _docstring_of(tree, node)
            found.groups.append((frozenset(keys), group, keys))


def _docstring_of(tree, node) -> str:
    """The first sentence of the docstring of the function whose body holds ``node``."""
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and any(n is node for n in ast.walk(function)):
            doc = ast.get_docstring(function) or ""
            return doc.split("\n\n")[0].replace("\n", " ")
    return ""


def _meanings() -> _Meanings:
    found = _Meanings({}, [])
    folder = os.path.dirname(os.path.abspath(__file__))
    for pattern in CONFIG_SOURCES:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            _read_source(path, found)
    return found


def field_reference(config: ml_collections.ConfigDict) -> tuple[list[Field], dict[str, str]]:
    """Every value field of ``config`` in order, with its meaning, and each group's meaning.

    Returns:
      ``(fields, groups)``: the fields (dotted names, their values in ``config``, their
      meanings, "" where the code gives none) and ``{group: meaning}``.
    """
    found = _meanings()
    fields, groups = [], {}

    def visit(node, prefix):
        entry = _group_entry(found, node) if prefix else None
        for key, value in node.items():
            name = prefix + key
            if isinstance(value, ml_collections.ConfigDict):
                inner = _group_entry(found, value)
                groups[name] = found.by_path.get(name) or (inner[1] if inner else "")
                visit(value, name + ".")
                continue
            meaning = found.by_path.get(name, "")
            if not meaning and entry:
                meaning = entry[2].get(key, "")
            fields.append(Field(name, value, meaning))

    visit(config, "")
    return fields, groups


def _group_entry(found: _Meanings, group: ml_collections.ConfigDict):
    keys = frozenset(group.keys())
    exact = [g for g in found.groups if g[0] == keys]
    return exact[0] if exact else None


def shown(value) -> str:
    """A field's value as the command line would take it (JSON, None for unset)."""
    return "None" if value is None else json.dumps(value)
