"""The ```python blocks of README.md and docs/**/*.md run, so the docs cannot rot.

The blocks of one file run in order in one namespace (a page reads top to
bottom like a script), in a temporary working folder. A block preceded by the
line `<!-- skip-test -->` is not run: keep that for blocks that need what a
test cannot have (several devices, a user's files), and say why in the page.
"""

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIP_MARKER = "<!-- skip-test -->"
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def _pages():
    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
    return [page for page in pages if page.is_file()]


def python_blocks(text):
    """Returns `(line, code, skipped)` for every ```python block of `text`."""
    blocks = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].strip() == SKIP_MARKER
        indent = len(match.group("indent"))
        code = "\n".join(line[indent:] for line in match.group("code").splitlines())
        blocks.append((text.count("\n", 0, match.start()) + 1, code, skipped))
    return blocks


# Pages whose blocks need what a test cannot provide and do not yet carry the
# skip marker; each entry says why. Remove an entry once its page is marked.
NOT_RUNNABLE = {
    "docs/distributed.md": "its first block loads a user's trained.keras and needs several devices",
}

PAGES = [page for page in _pages() if any(not s for *_, s in python_blocks(page.read_text()))]


def test_block_extraction():
    text = "a\n```python\nx = 1\n```\n<!-- skip-test -->\n```python\nraise SystemExit\n```\n"
    assert python_blocks(text) == [(2, "x = 1", False), (6, "raise SystemExit", True)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_runs(page, tmp_path, monkeypatch):
    reason = NOT_RUNNABLE.get(str(page.relative_to(ROOT)))
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code, skipped in python_blocks(page.read_text()):
        if skipped:
            continue
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001  report which block failed
            raise AssertionError(f"{page.relative_to(ROOT)}, block at line {line} failed: {error!r}") from error
