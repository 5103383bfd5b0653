"""MkDocs hook: links from docs/ to files outside it become links into the repository.

The pages link to the code, configs and experiment results with relative paths
(``../experiments/README.md``, ``../../configs/fedavg_shakespeare.py``), which resolve when the
Markdown is read on the repository host or in a checkout (tests/e2e/test_docs.py checks that each
one exists). MkDocs cannot serve those files, so this hook rewrites each such link to
``{repo_url}/blob/main/<path>`` (``tree/`` for a folder, ``raw/`` for an image), with
``repo_url`` from mkdocs.yml: the one place the site states the repository's address.
"""

from __future__ import annotations

import os
import posixpath
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRANCH = "main"
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")

# An inline link or image: [text](target "title") / ![alt](target); group 1 is "!" for images.
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
FENCE = re.compile(r"^(```|~~~)")


def repository_path(target: str, page_dir: str) -> str | None:
    """The repository-relative path of a relative link ``target`` written in ``page_dir``
    (a folder under docs/, repository-relative) when it leaves docs/; None otherwise."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return None
    path = target.split("#", 1)[0]
    if not path:
        return None
    resolved = posixpath.normpath(posixpath.join(page_dir, path))
    if resolved == "docs" or resolved.startswith("docs/") or resolved.startswith(".."):
        return None
    return resolved


def rewrite(markdown: str, page_dir: str, repo_url: str) -> str:
    """``markdown`` with every link that leaves docs/ pointed at ``repo_url``; fenced code
    blocks are left as they are."""
    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        if not fenced:
            line = LINK.sub(lambda m: _link(m, page_dir, repo_url), line)
        out.append(line)
    return "".join(out)


def _link(match: re.Match, page_dir: str, repo_url: str) -> str:
    bang, text, target, title = match.groups()
    path = repository_path(target, page_dir)
    if path is None:
        return match.group(0)
    fragment = "#" + target.split("#", 1)[1] if "#" in target else ""
    if bang or path.lower().endswith(IMAGE_SUFFIXES):
        kind = "raw"
    elif os.path.isdir(os.path.join(ROOT, path)):
        kind = "tree"
    else:
        kind = "blob"
    return f"{bang}[{text}]({repo_url.rstrip('/')}/{kind}/{BRANCH}/{path}{fragment}{title})"


def on_page_markdown(markdown, page, config, files):
    page_dir = posixpath.join("docs", posixpath.dirname(page.file.src_uri))
    return rewrite(markdown, page_dir, config["repo_url"])
