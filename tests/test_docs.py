"""The documentation holds together: links resolve, anchors name real headings,
the README stays short and starts with the two set-up commands, and every
docs page opens with a contents list of its sections. Pure file reading, no
network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "experiments" / "README.md"]

SETUP_COMMANDS = (
    "pip install -e '.[dev,examples]' && python run.py",
    "python -m pytest",
)
README_MAX_LINES = 230

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+).*?\1", re.DOTALL)
# [text](target) and ![alt](target); the text may wrap over lines; an optional "title"
_LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lowercased, every
    character but letters, digits, spaces, '-' and '_' dropped, each space
    made '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def prose_lines(text: str) -> list[str]:
    """The lines of a markdown file outside fenced code blocks (code inside a
    fence becomes an empty line, so line numbers stay)."""
    out, fence = [], None
    for line in text.splitlines():
        stripped = line.lstrip()
        m = _FENCE.match(stripped)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if stripped.startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return out


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside code blocks."""
    found = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if m:
            found.append((len(m.group(1)), m.group(2)))
    return found


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the file's headings (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, text in headings(path):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every markdown link and image outside code."""
    text = "\n".join(prose_lines(path.read_text(encoding="utf-8")))
    # blank out inline code, keeping newlines so line numbers stay right
    text = _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in _LINK.finditer(text)]


def is_external(target: str) -> bool:
    return re.match(r"^(https?:|mailto:)", target) is not None


# --- the slug rule, pinned by hand-computed answers ---------------------------------


@pytest.mark.parametrize(
    "heading, expected",
    [
        ("Results: records, table, W&B", "results-records-table-wb"),
        ("Tasks as data, and task subsets", "tasks-as-data-and-task-subsets"),
        (
            "Beyond clean models: adversarial training, transfer, transferability",
            "beyond-clean-models-adversarial-training-transfer-transferability",
        ),
        ("Where this differs from the authors' code (on purpose)", "where-this-differs-from-the-authors-code-on-purpose"),
        ("Table 7 and Figure 5 (quick, seeds 0-2): Single-x", "table-7-and-figure-5-quick-seeds-0-2-single-x"),
        ("`model=custom` and [your net](x.md)", "modelcustom-and-your-net"),
    ],
)
def test_slug_known_answers(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# T\n\n## Run\n\n```\n## not a heading\n```\n\n## Run\n", encoding="utf-8")
    assert anchors(page) == {"t", "run", "run-1"}


def test_link_parser_skips_code_and_reads_wrapped_text(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "See [a\nwrapped link](a.md#x) and ![img](b.png).\n"
        "`losses[task](output)` is code.\n\n```\n[no](c.md)\n```\n",
        encoding="utf-8",
    )
    assert links(page) == [(1, "a.md#x"), (2, "b.png")]


# --- (a) every relative link and anchor resolves ------------------------------------


def _broken_links(page: Path) -> list[str]:
    problems = []
    for line, target in links(page):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = page if not file_part else (page.parent / file_part).resolve()
        where = f"{page.relative_to(ROOT)}:{line}: {target}"
        if not dest.exists():
            problems.append(f"{where} (no file {file_part})")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where} (an anchor into a file that is not markdown)")
            elif anchor not in anchors(dest):
                problems.append(f"{where} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert page.exists()
    assert _broken_links(page) == []


def test_pages_have_links_to_check():
    """The checker reads the links it should: the README's map reaches every docs page."""
    targets = {t.partition("#")[0] for _, t in links(README)}
    for doc in DOCS:
        assert f"docs/{doc.name}" in targets, f"README's map of the docs misses {doc.name}"


# --- (b) the README stays short and starts with the set-up --------------------------


def test_readme_is_short_and_has_the_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for command in SETUP_COMMANDS:
        assert command in text
    # the set-up is the first section after the intro
    level2 = [h for level, h in headings(README) if level == 2]
    assert level2[0] == "Set up on a fresh machine"


# --- (c) every docs page opens with a contents list of its sections -----------------


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_docs_page_has_title_and_contents(page):
    lines = prose_lines(page.read_text(encoding="utf-8"))
    first = next(line for line in lines if line.strip())
    assert first.startswith("# "), f"{page.name} does not start with a title"
    sections = [slug(text) for level, text in headings(page) if level == 2]
    assert sections, f"{page.name} has no ## sections"
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    contents = set()
    for line in lines[:first_section]:
        m = re.match(r"^\s*[-*]\s+\[[^\]]+\]\(#([^)]+)\)", line)
        if m:
            contents.add(m.group(1))
    missing = [s for s in sections if s not in contents]
    assert missing == [], f"{page.name}'s contents list misses {missing}"
