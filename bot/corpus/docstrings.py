"""How an API page's argument list is written (the docstrings' Google style, as the API
source renders it): shared by the chunker, which makes each entry a chunk of its own, and the
reply's excerpt, which reads an entry whole."""

from __future__ import annotations

import re

#: Docstring sections whose entries are arguments (section headings, case-folded).
ARGUMENT_SECTIONS = frozenset({"args", "arguments", "call arguments"})
#: An argument entry's first line: an indented "name: text"; its description goes on in the
#: lines indented deeper than the name.
ARGUMENT_HEAD = re.compile(r"^(?P<indent>[ \t]{2,})(?P<name>[A-Za-z_]\w*):[ \t]+\S")


def indent_depth(line: str) -> int:
    """The columns of whitespace a line starts with (tabs expanded)."""
    return len(line.expandtabs()) - len(line.expandtabs().lstrip())
