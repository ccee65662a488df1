"""Split documents into section-sized chunks for embedding and lexical search.

A chunk is one Markdown section (split on ``#`` .. ``####`` headings outside code fences),
or a window of a long section. Each chunk's text starts with a short line naming the page
and section path, so it reads on its own and a search for the section name finds it.

Windows break only between paragraphs and code blocks, so code is never cut in half
unless one block alone is over the budget; consecutive windows repeat ~``overlap_words``
of trailing context, so a sentence that straddles a boundary is retrievable from both.
Words are whitespace-separated tokens (fence lines count), matching how budgets are judged.

Each ``name: description`` entry of a docstring's argument section is, besides, a chunk of
its own (``Page > Args > name``), after the section's windows: most questions about an API
page are about one of its arguments, and in a window that entry shares one vector with four
others (BENCHMARKS.md, "Argument entries as chunks").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.corpus.docstrings import ARGUMENT_HEAD, ARGUMENT_SECTIONS, indent_depth
from bot.corpus.documents import Chunk, Document

#: Headings deeper than this stay in the body: splitting on them makes tiny chunks.
MAX_SPLIT_LEVEL = 4

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_RULE = re.compile(r"^\s{0,3}(?:-{3,}|\*{3,}|_{3,})\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SEP = " > "
_ENTRY_MIN_WORDS = 4  # "name: Unused." says nothing a search could use


@dataclass(frozen=True)
class _Block:
    """A unit windows never split: a paragraph or a whole fenced code block."""

    text: str
    words: int
    fence: str = ""  # opening fence line for code blocks, "" for prose
    close: str = ""  # closing fence line

    @property
    def is_code(self) -> bool:
        return bool(self.fence)


def _closing(block: _Block) -> str:
    """The fence that closes a piece of ``block``."""
    if block.close:
        return block.close
    m = _FENCE_OPEN.match(block.fence)
    return m.group(1) if m else "```"


def _count(text: str) -> int:
    return len(text.split())


def _prose(text: str) -> _Block:
    return _Block(text=text, words=_count(text))


def _code(fence: str, lines: list[str], close: str) -> _Block:
    text = "\n".join([fence, *lines, *([close] if close else [])])
    return _Block(text=text, words=_count(text), fence=fence, close=close)


def _is_fence_close(line: str, fence: str) -> bool:
    # A closing fence uses the opening character, at least as many, and no info string.
    indent = len(line) - len(line.lstrip(" "))
    stripped = line.strip()
    return indent <= 3 and len(stripped) >= len(fence) and set(stripped) == {fence[0]}


# -- sections ------------------------------------------------------------------------------


def _sections(title: str, text: str) -> list[tuple[tuple[str, ...], list[str]]]:
    """(heading path, body lines) for each heading-delimited section, in order.

    Headings inside fenced code (``# comment`` lines in Python) are body text. A level-1
    heading that repeats the page title is the root of the path, not a component; one that
    differs (the site map's "Models" vs the page's "KerasNLP Models") stays, as it adds words.
    """
    sections: list[tuple[tuple[str, ...], list[str]]] = []
    stack: list[tuple[int, str]] = []
    path: tuple[str, ...] = (title,)
    body: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        if fence is not None:
            body.append(line)
            if _is_fence_close(line, fence):
                fence = None
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            fence = opening.group(1)
            body.append(line)
            continue
        m = _HEADING.match(line)
        heading = (m.group(2) or "").rstrip("#").strip() if m else ""
        if m is None or len(m.group(1)) > MAX_SPLIT_LEVEL or not heading:
            body.append(line)
            continue
        level = len(m.group(1))
        sections.append((path, body))
        body = []
        if level == 1 and _norm(heading) == _norm(title):
            stack = []  # the page's own title heading: the root of the path
        else:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        path = (title, *(h for _, h in stack))
    sections.append((path, body))
    return sections


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.casefold())


def _is_blank(lines: list[str]) -> bool:
    return all(not ln.strip() or _RULE.match(ln) for ln in lines)


def _is_heading_only(lines: list[str]) -> bool:
    """Only deeper (unsplit) heading lines: a title for what follows, not content."""
    content = [ln for ln in lines if ln.strip() and not _RULE.match(ln)]
    return bool(content) and all(_HEADING.match(ln) for ln in content)


def _blocks(lines: list[str]) -> list[_Block]:
    """Paragraphs (blank-line separated) and whole fenced code blocks."""
    blocks: list[_Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            text = "\n".join(para).strip("\n")
            if text.strip() and not _is_blank(para):
                blocks.append(_prose(text))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        opening = _FENCE_OPEN.match(line)
        if opening:
            flush()
            fence = opening.group(1)
            j = i + 1
            while j < len(lines) and not _is_fence_close(lines[j], fence):
                j += 1
            # An unclosed fence runs to the end of the section; close it so chunks stay
            # valid Markdown.
            close = lines[j] if j < len(lines) else opening.group(1)
            inner = lines[i + 1 : j]
            while j >= len(lines) and inner and not inner[-1].strip():
                inner.pop()
            blocks.append(_code(line, inner, close))
            i = j + 1
            continue
        if line.strip():
            para.append(line)
        else:
            flush()
        i += 1
    flush()
    return blocks


# -- splitting oversized blocks --------------------------------------------------------------


def _split_words(text: str, budget: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + budget]) for i in range(0, len(words), budget)]


def _pack(units: list[str], budget: int, joiner: str) -> list[str]:
    """Greedily pack units (each <= budget words) into groups of <= budget words."""
    groups: list[str] = []
    cur: list[str] = []
    cur_words = 0
    for unit in units:
        n = _count(unit)
        if cur and cur_words + n > budget:
            groups.append(joiner.join(cur))
            cur, cur_words = [], 0
        cur.append(unit)
        cur_words += n
    if cur:
        groups.append(joiner.join(cur))
    return groups


def _split_block(block: _Block, max_words: int) -> list[_Block]:
    """Last resort for a block over the budget: split by lines, then sentences, then words."""
    if block.words <= max_words:
        return [block]
    if block.is_code:
        budget = max(1, max_words - 2)  # the two fence lines count too
        inner = block.text.split("\n")[1 : -1 if block.close else None]
        units: list[str] = []
        for line in inner:
            units.extend([line] if _count(line) <= budget else _split_words(line, budget))
        return [
            _code(block.fence, g.split("\n"), _closing(block)) for g in _pack(units, budget, "\n")
        ]
    units = []
    for line in block.text.split("\n"):
        if _count(line) <= max_words:
            units.append(line)
            continue
        for sentence in _SENTENCE_END.split(line.strip()):
            units.extend(
                [sentence] if _count(sentence) <= max_words else _split_words(sentence, max_words)
            )
    return [_prose(g) for g in _pack(units, max_words, "\n")]


# -- windows -------------------------------------------------------------------------------


def _tail(block: _Block, limit: int) -> _Block | None:
    """The last ~limit words of a block as a block (code stays fenced, by whole lines)."""
    if block.is_code:
        inner = block.text.split("\n")[1 : -1 if block.close else None]
        taken: list[str] = []
        total = 2
        for line in reversed(inner):
            n = _count(line)
            if total + n > limit:
                break
            taken.insert(0, line)
            total += n
        if not any(ln.strip() for ln in taken):
            return None
        return _code(block.fence, taken, _closing(block))
    words = block.text.split()[-limit:] if limit > 0 else []
    return _prose(" ".join(words)) if words else None


def _overlap(window: list[_Block], limit: int) -> list[_Block]:
    """Trailing context of a finished window to repeat at the start of the next."""
    taken: list[_Block] = []
    total = 0
    if limit <= 0:
        return taken
    for block in reversed(window):
        if total + block.words <= limit:
            taken.insert(0, block)
            total += block.words
            continue
        remaining = limit - total
        # A sliver of a few words is noise, not context.
        if remaining >= min(10, limit):
            part = _tail(block, remaining)
            if part is not None:
                taken.insert(0, part)
        break
    return taken


def _windows(blocks: list[_Block], max_words: int, overlap_words: int) -> list[list[_Block]]:
    windows: list[list[_Block]] = []
    cur: list[_Block] = []
    cur_words = 0
    fresh = 0  # blocks in cur that are not overlap copies
    for block in blocks:
        if fresh and cur_words + block.words > max_words:
            windows.append(cur)
            cur = _overlap(cur, min(overlap_words, max_words - block.words))
            cur_words = sum(b.words for b in cur)
            fresh = 0
        cur.append(block)
        cur_words += block.words
        fresh += 1
    if fresh:
        windows.append(cur)
    return windows


def _argument_entries(body: list[str], max_words: int) -> list[tuple[str, str]]:
    """(name, text) of each indented ``name: description`` entry of a docstring section.

    A question is usually about one argument ("save only the best model" is
    ``save_best_only``), while the section's windows hold several: in one vector the entry is
    outvoted by its neighbours. As a chunk of its own its words are the chunk's words. Its
    lines keep their indentation, so the reply's excerpt still reads it as an entry; blank
    lines inside it (a bulleted list) are kept when deeper-indented text follows.
    """
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        m = ARGUMENT_HEAD.match(body[i])
        if m is None:
            i += 1
            continue
        depth = indent_depth(body[i])
        lines = [body[i]]
        i += 1
        while i < len(body):
            if body[i].strip():
                if indent_depth(body[i]) <= depth:
                    break
                lines.append(body[i])
                i += 1
                continue
            nxt = next((ln for ln in body[i:] if ln.strip()), "")
            if not nxt or indent_depth(nxt) <= depth:
                break
            lines.append("")
            i += 1
        words = 0
        kept: list[str] = []
        for line in lines:
            words += _count(line)
            if words > max_words and kept:
                break
            kept.append(line)
        fences = [k for k, line in enumerate(kept) if _FENCE_OPEN.match(line.strip())]
        if len(fences) % 2:  # the budget cut a code example: end before it, not inside it
            kept = kept[: fences[-1]]
        if _count("\n".join(kept)) - 1 >= _ENTRY_MIN_WORDS:
            entries.append((m.group("name"), "\n".join(kept).rstrip()))
    return entries


# -- public API ----------------------------------------------------------------------------


def chunk_document(doc: Document, *, max_words: int = 160, overlap_words: int = 30) -> list[Chunk]:
    """Chunks of one document, ordinals from 0, deterministic for the same input."""
    if max_words < 8:
        raise ValueError(f"max_words must be at least 8, got {max_words}")
    if not 0 <= overlap_words < max_words:
        raise ValueError(f"overlap_words must be in [0, max_words), got {overlap_words}")
    title = doc.title.strip() or doc.doc_id
    text = doc.text.replace("\r\n", "\n").replace("\r", "\n")

    # Sections with no body are skipped (their heading lives on in their subsections'
    # paths); a body made only of deeper heading lines is carried into the next section.
    merged: list[tuple[tuple[str, ...], list[str]]] = []
    carried: list[str] = []
    carried_path: tuple[str, ...] = ()
    for path, body in _sections(title, text):
        if _is_blank(body):
            continue
        if _is_heading_only(body):
            carried_path = carried_path or path
            carried.extend([*body, ""])
            continue
        merged.append((path, [*carried, *body]))
        carried, carried_path = [], ()
    if carried:
        merged.append((carried_path, carried))

    chunks: list[Chunk] = []
    for path, body in merged:
        blocks = [piece for block in _blocks(body) for piece in _split_block(block, max_words)]
        if not blocks:
            continue
        # path[0] is the title, so the section path doubles as the chunk's header line.
        section = header = _SEP.join(path)
        for window in _windows(blocks, max_words, overlap_words):
            body_text = "\n\n".join(b.text for b in window)
            chunks.append(
                Chunk(
                    doc_id=doc.doc_id,
                    ordinal=len(chunks),
                    section=section,
                    text=f"{header}\n\n{body_text}",
                )
            )
        if len(path) > 1 and path[-1].casefold() in ARGUMENT_SECTIONS:
            for name, entry in _argument_entries(body, max_words):
                chunks.append(
                    Chunk(
                        doc_id=doc.doc_id,
                        ordinal=len(chunks),
                        section=f"{section}{_SEP}{name}",
                        text=f"{header}{_SEP}{name}\n\n{entry}",
                    )
                )
    return chunks


def chunk_documents(docs: Iterable[Document], **kw: int) -> list[Chunk]:
    """Chunks of many documents, in document order."""
    return [chunk for doc in docs for chunk in chunk_document(doc, **kw)]
