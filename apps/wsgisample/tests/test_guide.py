"""Every snippet of docs/convert-wsgi-to-asgi.md is copied from a file of the repository.

A snippet names its file in its first line (``# apps/wsgisample/wsgisample/asgi.py``); its
other lines must appear in that file, in order and together (indentation aside).
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "docs" / "convert-wsgi-to-asgi.md"
BLOCK = re.compile(r"^```\w+\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets():
    for body in BLOCK.findall(GUIDE.read_text()):
        first, *rest = body.splitlines()
        if first.startswith("# ") and "/" in first:
            yield pytest.param(first[2:].strip(), rest, id=f"{first[2:].strip()}:{rest[0]}")


def stripped(lines):
    return [line.strip() for line in lines]


def test_the_guide_shows_snippets_of_both_sample_projects():
    files = {param.values[0] for param in snippets()}
    assert any(name.startswith("apps/wsgisample/") for name in files)
    assert any(name.startswith("apps/chatdemo/") for name in files)
    assert len(list(snippets())) >= 8


@pytest.mark.parametrize(("name", "lines"), list(snippets()))
def test_snippet_is_copied_from_the_file_it_names(name, lines):
    source = stripped((REPO / name).read_text().splitlines())
    wanted = stripped(lines)
    starts = range(len(source) - len(wanted) + 1)
    assert any(source[i : i + len(wanted)] == wanted for i in starts), (
        f"the snippet from {name} in {GUIDE.name} no longer matches the file"
    )
