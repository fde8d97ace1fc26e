"""The documentation is one connected, citable web of pages.

* ``docs/index.md`` links every page under ``docs/``;
* every relative link in a docs page points to an existing file, and a ``#anchor`` into one of the
  pages listed in ``ANCHOR_CHECKED`` names an existing heading;
* every ``docs/….md`` path cited in a docstring or comment under ``nequip_np/`` exists, and a cited
  ``#anchor`` is the GitHub slug of one of its headings;
* every other repository file the package cites — ``tools/…``, ``tests/…``, ``benchmarks/…``,
  ``examples/…``, ``notebooks/…`` paths, a path broken across two lines at a ``/``, and a bare
  ``NAME.md`` (looked up at the root and under ``docs/``) — exists.

The checkers return lists of problems; the last tests plant faults in a temporary tree to show that
each checker can fail.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: pages whose anchors are checked when another page links into them with ``page.md#anchor``
ANCHOR_CHECKED = {
    "index.md",
    "conventions.md",
    "model.md",
    "paper_differences.md",
    "pitfalls.md",
    "derivations/operations.md",
    "derivations/forces_and_stress.md",
    "derivations/training_gradients.md",
}

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_CITATION = re.compile(r"docs/[A-Za-z0-9_./-]*?\.md(?:#[A-Za-z0-9_-]+)?")
_REPO_PATH = re.compile(r"(?<![\w./-])(?:docs|tools|tests|benchmarks|examples|notebooks)/[A-Za-z0-9_./-]*[A-Za-z0-9_]")
_BARE_MD = re.compile(r"(?<![\w./-])([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.md)(?![\w.])")
_BROKEN_AT_SLASH = re.compile(r"/\n[ \t#]*")  # "docs/derivations/\n    page.md" → one path


# ------------------------------------------------------------------------------------- helpers
def strip_code(text: str) -> str:
    """Remove fenced blocks and inline code spans (links inside them are examples, not links)."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = unicodedata.normalize("NFC", text).strip().lower()
    keep = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in " -_" or cat[0] in ("L", "N") or cat == "Mn":
            keep.append(ch)
    return "".join(keep).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """All heading anchors of a markdown page, with GitHub's -1, -2 … suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        s = slug(title)
        if s in seen:
            seen[s] += 1
            out.add(f"{s}-{seen[s]}")
        else:
            seen[s] = 0
            out.add(s)
    for explicit in re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", path.read_text(encoding="utf-8")):
        out.add(explicit)
    return out


def links(path: Path) -> list[str]:
    text = strip_code(path.read_text(encoding="utf-8"))
    return _LINK.findall(text) + _IMAGE.findall(text)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target))


def pages(docs: Path) -> list[Path]:
    return sorted(docs.rglob("*.md"))


def unlinked_pages(docs: Path) -> list[str]:
    """Pages under ``docs`` that ``docs/index.md`` does not link to."""
    index = docs / "index.md"
    if not index.exists():
        return ["index.md (missing)"]
    linked = set()
    for target in links(index):
        if is_external(target) or target.startswith("#"):
            continue
        linked.add((index.parent / target.split("#")[0]).resolve())
    return [str(p.relative_to(docs)) for p in pages(docs) if p != index and p.resolve() not in linked]


def broken_links(docs: Path, checked=ANCHOR_CHECKED) -> list[str]:
    """Relative links of every docs page whose file (or, for checked pages, anchor) is missing."""
    problems = []
    for page in pages(docs):
        for target in links(page):
            if is_external(target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page.resolve()
            where = f"{page.relative_to(docs)} → {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
                continue
            try:
                rel = dest.relative_to(docs.resolve()).as_posix()
            except ValueError:
                rel = None
            if anchor and dest.suffix == ".md" and (rel in checked or dest == page.resolve()):
                if anchor not in anchors(dest):
                    problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def bad_source_citations(package: Path, root: Path) -> list[str]:
    """``docs/….md[#anchor]`` strings in the package source naming a missing page or heading."""
    problems = []
    for src in sorted(package.rglob("*.py")):
        for cited in sorted(set(_CITATION.findall(src.read_text(encoding="utf-8")))):
            file_part, _, anchor = cited.partition("#")
            dest = root / file_part
            where = f"{src.relative_to(root)}: {cited}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and anchor not in anchors(dest):
                problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def _is_module_path(dotted: str, root: Path) -> bool:
    first = dotted.split(".")[0]
    if not first.isidentifier():
        return False
    return (root / first / "__init__.py").exists() or importlib.util.find_spec(first) is not None


def bad_repository_paths(package: Path, root: Path) -> list[str]:
    """Repository files cited in the package source (see the module docstring) that do not exist."""
    problems = []
    for src in sorted(package.rglob("*.py")):
        text = _BROKEN_AT_SLASH.sub("/", src.read_text(encoding="utf-8"))
        where = src.relative_to(root)
        for cited in sorted(set(_REPO_PATH.findall(text))):
            if not (root / cited).exists():
                problems.append(f"{where}: {cited}: no such file or folder")
        for name in sorted(set(_BARE_MD.findall(text))):
            if _is_module_path(name[:-3], root):
                continue  # nequip_np.md, ase.md.verlet: a module, not a page
            if not any((base / name).exists() for base in (root, root / "docs", root / "docs" / "derivations")):
                problems.append(f"{where}: {name}: no such page at the root or under docs/")
    return problems


# --------------------------------------------------------------------------- the real docs tree
def test_index_links_every_docs_page():
    assert unlinked_pages(DOCS) == []


def test_every_relative_link_in_docs_resolves():
    assert broken_links(DOCS) == []


def test_docs_paths_cited_in_the_package_exist():
    cited = [
        c for src in (ROOT / "nequip_np").rglob("*.py") for c in _CITATION.findall(src.read_text(encoding="utf-8"))
    ]
    assert any("#" in c for c in cited), "the source cites no anchor; the anchor check would be vacuous"
    assert bad_source_citations(ROOT / "nequip_np", ROOT) == []


def test_repository_files_cited_in_the_package_exist():
    text = "".join(src.read_text(encoding="utf-8") for src in (ROOT / "nequip_np").rglob("*.py"))
    assert _REPO_PATH.search(text), "the source cites no repository path; the check would be vacuous"
    assert bad_repository_paths(ROOT / "nequip_np", ROOT) == []


# ------------------------------------------------------------------------- the checkers can fail
@pytest.mark.parametrize(
    "heading, expected",
    [
        ("Edge embedding", "edge-embedding"),
        ("1. The neighbour list", "1-the-neighbour-list"),
        ("Tensor-product convolution (`tp_conv`)", "tensor-product-convolution-tp_conv"),
        ("Loss and its parameter gradient", "loss-and-its-parameter-gradient"),
        ("Forces, virial & stress", "forces-virial--stress"),
    ],
)
def test_slug_is_github_style(heading, expected):
    assert slug(heading) == expected


def _tree(tmp_path: Path, index: str, pages_: dict[str, str]) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    (docs / "derivations").mkdir(parents=True)
    (docs / "index.md").write_text(index, encoding="utf-8")
    for name, text in pages_.items():
        (docs / name).write_text(text, encoding="utf-8")
    return tmp_path, docs


def test_checkers_detect_planted_faults(tmp_path):
    root, docs = _tree(
        tmp_path,
        "# Index\n[a](a.md) [b](b.md) `[c](c.md)`\n",
        {
            "a.md": "# A\n## Edge embedding\n[ok](derivations/d.md#sec) [bad](derivations/d.md#nope)\n",
            "b.md": "# B\n[missing](missing.md) [self](#b) [selfbad](#zzz) [web](https://example.org/x.md)\n",
            "c.md": "# C only linked inside inline code\n",
            "derivations/d.md": "# D\n## Sec\n[up](../a.md#edge-embedding)\n```\n[not a link](nowhere.md)\n```\n",
        },
    )
    assert unlinked_pages(docs) == ["c.md", "derivations/d.md"]
    problems = broken_links(docs, checked={"a.md", "b.md", "derivations/d.md"})
    assert problems == [
        "a.md → derivations/d.md#nope: no heading with anchor #nope",
        "b.md → missing.md: no such file",
        "b.md → #zzz: no heading with anchor #zzz",
    ]
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text('"""See docs/a.md#edge-embedding, docs/a.md#nope and docs/gone.md."""\n')
    assert bad_source_citations(pkg, root) == [
        "pkg/m.py: docs/a.md#nope: no heading with anchor #nope",
        "pkg/m.py: docs/gone.md: no such file",
    ]
    (pkg / "n.py").write_text(
        '"""Made by ``tools/make_it.py`` (docs/derivations/\nd.md, docs/derivations/\n'
        'gone.md); see README.md, a.md, missing_page.md; pkg.md and pkg.sub.md are modules."""\n'
    )
    (pkg / "__init__.py").write_text("")
    (root / "README.md").write_text("# Read me\n")
    assert bad_repository_paths(pkg, root) == [
        "pkg/m.py: docs/gone.md: no such file or folder",
        "pkg/n.py: docs/derivations/gone.md: no such file or folder",
        "pkg/n.py: tools/make_it.py: no such file or folder",
        "pkg/n.py: missing_page.md: no such page at the root or under docs/",
    ]
