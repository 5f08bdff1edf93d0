"""The documentation says what the code does: every command's option table lists exactly the
options the command line accepts, and the README's links point at files that exist."""
from __future__ import annotations

import re

import pytest

from conftest import REPO
from experiments.cli import build_parser

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- options: (\w+) -->\n(\|.*\n)+")


def _tables() -> dict[str, tuple[str, set[str]]]:
    """Command -> (file, the ``--options`` named in the first column of its marked table)."""
    out = {}
    for path in DOCS:
        for m in MARKER.finditer(path.read_text()):
            rows = m.group(0).splitlines()[3:]  # marker, header, separator
            names = {name for row in rows for name in re.findall(r"`(--[a-z][a-z0-9_-]*)", row.split("|")[1])}
            assert m.group(1) not in out, f"two option tables of {m.group(1)}: {out[m.group(1)][0]}, {path.name}"
            out[m.group(1)] = (path.name, names)
    return out


def _options(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


def test_marker_finds_tables_and_their_options():
    """The table reader on a hand-made document: the options of the first column, shared rows too."""
    text = ("<!-- options: demo -->\n| option | default | meaning |\n|---|---|---|\n"
            "| `--alpha N` | 1 | uses `--beta` in its text |\n| `--gamma`, `--delta` | | shared |\n\nafter\n")
    m = MARKER.search(text)
    rows = m.group(0).splitlines()[3:]
    assert [re.findall(r"`(--[a-z][a-z0-9_-]*)", r.split("|")[1]) for r in rows] == [["--alpha"], ["--gamma", "--delta"]]


@pytest.mark.parametrize("command", ["compare", "sweep", "diff", "reconstruct", "train"])
def test_option_tables_list_exactly_the_cli_options(command):
    tables = _tables()
    assert command in tables, f"no <!-- options: {command} --> table in README.md or docs/"
    where, documented = tables[command]
    accepted = _options(command)
    assert documented == accepted, (f"{where}: missing {sorted(accepted - documented)}, "
                                    f"not accepted {sorted(documented - accepted)}")


def test_readme_and_docs_links_exist():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
