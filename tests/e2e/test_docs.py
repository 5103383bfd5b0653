"""The README and the documentation site stay true: every config field is in the generated
reference (those of the base configs with a meaning), every relative link resolves, every page
is in the nav, the README stays a front page whose commands are the ones CI runs. MkDocs itself
is not run here (.ci/run builds the site with --strict)."""

import glob
import importlib.util
import os
import re
import unicodedata

import pytest
import yaml

from fedjax_sim.config.files import field_names, load_config
from fedjax_sim.config.reference import field_reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
MAIN_JOB = (
    "bash setup.sh && .venv/bin/python -m fedjax_sim --config configs/fedavg_shakespeare.py "
    "--workdir runs/fedavg_shakespeare"
)
LINK = re.compile(r"(?<!`)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def _hook(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(DOCS, "hooks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages():
    return sorted(
        os.path.relpath(path, DOCS)
        for path in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
        if not os.path.relpath(path, DOCS).startswith("hooks")
    )


def _prose(markdown):
    """``markdown`` without fenced code blocks and inline code, where links are not links."""
    markdown = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", markdown)


def _slug(heading):
    """Python-Markdown's toc slug of a heading (what MkDocs anchors are)."""
    text = re.sub(r"[`*_]", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path):
    with open(path) as f:
        text = re.sub(r"^(```|~~~).*?^\1", "", f.read(), flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


def _python_block(markdown, heading):
    section = markdown[markdown.index(heading) :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def reference():
    return _hook("config_reference").render()


@pytest.mark.parametrize(
    "path", sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs/*.py")))
)
def test_every_config_field_is_in_the_reference(reference, path):
    for spec in (path, path + ":smoke"):
        missing = [name for name in field_names(load_config(spec)) if f"`{name}`" not in reference]
        assert not missing, (spec, missing)


@pytest.mark.parametrize("path", sorted(_hook("config_reference").FAMILIES.values()))
def test_every_field_of_the_base_configs_has_a_meaning(path):
    fields, _ = field_reference(load_config(os.path.join(ROOT, path)))
    assert [field.name for field in fields if not field.meaning] == [], path


def test_the_reference_goes_into_the_configs_page():
    hook = _hook("config_reference")
    assert hook.MARKER in _read("docs/configs.md")
    for path in hook.FAMILIES.values():
        assert os.path.isfile(os.path.join(ROOT, path)), path


@pytest.mark.parametrize("page", ["README.md"] + [f"docs/{p}" for p in _pages()])
def test_relative_links_resolve(page):
    for target in LINK.findall(_prose(_read(page))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        here = os.path.join(ROOT, os.path.dirname(page))
        resolved = os.path.normpath(os.path.join(here, path) if path else os.path.join(ROOT, page))
        assert resolved.startswith(ROOT) and os.path.exists(resolved), (page, target)
        if anchor and resolved.endswith(".md"):
            assert anchor in _anchors(resolved), (page, target)


def test_every_page_is_in_the_nav():
    def entries(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from entries(value) if isinstance(value, list) else [value]

    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        config = yaml.safe_load(f)
    nav = list(entries(config["nav"]))
    assert sorted(nav) == _pages()
    assert len(nav) == len(set(nav))


def test_readme_is_a_front_page_with_both_commands():
    readme = _read("README.md")
    assert len(readme.splitlines()) < 260
    assert MAIN_JOB in readme
    assert "bash setup.sh && .venv/bin/python -m pytest" in readme


def test_readme_test_command_is_what_ci_runs():
    readme = _read("README.md")
    command = readme.split("# the tests (what CI runs, via .ci/run)\n", 1)[1].splitlines()[0]
    ci = [line.strip() for line in _read(".ci/run").splitlines()]
    for part in command.split("&&"):
        assert part.strip() in ci, (part, ci)


def test_readme_lists_every_config_and_notebook():
    readme, configs_page = _read("README.md"), _read("docs/configs.md")
    for path in glob.glob(os.path.join(ROOT, "configs/*.py")):
        name = f"`configs/{os.path.basename(path)}`"
        assert name in readme and name in configs_page, name
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        repo = yaml.safe_load(f)["repo_url"].removeprefix("https://github.com/")
    for path in glob.glob(os.path.join(ROOT, "colab/*.ipynb")):
        badge = f"colab.research.google.com/github/{repo}/blob/main/colab/{os.path.basename(path)}"
        assert badge in readme, badge


def test_readme_and_getting_started_show_the_same_python_example():
    assert _python_block(_read("README.md"), "## The Python API") == _python_block(
        _read("docs/getting-started.md"), "## The Python API"
    )


def test_links_that_leave_docs_point_into_the_repository():
    hook = _hook("repo_links")
    url = "https://github.com/o/r"
    page = "[index](../experiments/README.md#x) ![plot](../experiments/shakespeare/shakespeare.png)"
    page += (
        " [folder](../configs) [here](data.md) [web](https://a.b/c)\n```\n[code](../x.md)\n```\n"
    )
    assert hook.rewrite(page, "docs", url) == (
        f"[index]({url}/blob/main/experiments/README.md#x) "
        f"![plot]({url}/raw/main/experiments/shakespeare/shakespeare.png)"
        f" [folder]({url}/tree/main/configs) [here](data.md) [web](https://a.b/c)\n"
        "```\n[code](../x.md)\n```\n"
    )
