"""Text that is not ours, made safe to put into Markdown: it renders as exactly that text.

Used by the replies, the asks for missing information and the maintainers' digest, so user
and page text is escaped one way everywhere.
"""

from __future__ import annotations

import re

# What can start markup mid-line: backslash escapes, code spans, emphasis, links/images,
# autolinks/HTML, entity references. ``_`` between two letters or digits never emphasises
# (CommonMark), so ``val_loss`` stays as it is; ``#``, ``>``, ``|`` only matter at the start
# of a line (or in tables, which the renderer does not enable) and our text never starts one.
_MARKUP = re.compile(r"[\\`*\[\]<]|&(?=#?\w+;)|(?<![^\W_])_|_(?![^\W_])")
_CODE_SPAN = re.compile(r"`([^`\n]*[^`\s][^`\n]*)`")


def _escape(text: str) -> str:
    return _MARKUP.sub(lambda m: "\\" + m.group(0), text)


def escape_markdown(text: str) -> str:
    """Text we did not write as Markdown that renders as exactly that text (one line)."""
    return _escape(" ".join(text.split()))


def inline_markdown(text: str) -> str:
    """Like :func:`escape_markdown`, but the docs' own ``code spans`` stay code spans.

    A span is re-emitted only when it is a single-backtick span with no backtick inside, so
    its content can never close it early; everything outside the spans is escaped, and code
    span content is never parsed as Markdown (links, HTML) by any renderer.
    """
    text = " ".join(text.split())
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_escape(text[pos : m.start()]))
        out.append(f"`{m.group(1)}`")
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out)
