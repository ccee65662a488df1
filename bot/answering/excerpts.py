"""The one line under each source: the passage of its page that speaks to the question.

A passage is a sentence of the page's prose, or one documented argument of an API page
("dropout: Float between 0 and 1. Fraction of the units to drop ..."), kept whole so the
line says what the argument does. The passage sharing the most terms with the question
wins, the chunk search matched read first (it wins ties). A question that writes a
documented argument as code ("what does `from_logits` do?", "LSTM(64, dropout=0.2)",
"restore_best_weights") gets that argument's entry, from anywhere on the page when its
chunks are given: the matched chunk of an API page is often its signature or its call
arguments, while the argument the question is about sits in another chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.corpus.docstrings import ARGUMENT_HEAD, indent_depth
from bot.retrieval.text import lexical_tokens

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\[(])")
_FENCE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
# Link targets may hold one level of parentheses (Wikipedia-style URLs).
_MD_LINK = re.compile(r"\[([^\]]*)\]\((?:[^()]|\([^()]*\))*\)")
EXCERPT_CHARS = 200
_CODE_GAP = "\x02"  # where ``_parse`` took a code block out: a sentence ends there
# ... and a heading: a Markdown one, or a line that is bold from end to end (the guides'
# "**Example: setting `trainable` to `False`**" over a code cell).
_BREAKS = re.compile(rf"{_CODE_GAP}|^ {{0,3}}#+ .*$|^ {{0,3}}\*\*[^*\n]+\*\*[ \t]*$", re.M)
_MIN_SENTENCE = 20  # shorter fragments ("Default: 0.") say nothing alone


@dataclass(frozen=True)
class _Passage:
    text: str
    argument: str | None = None  # the documented argument's name, for an argument entry
    cut: bool = False  # an argument entry the chunk ends inside (the next chunk goes on)


# The end of a chunk's first paragraph when the chunker carried an argument entry's head over
# from the chunk before (flattened onto one line): "... restore_best_weights: Whether to".
# The head is cut mid-sentence (no closing full stop): a whole sentence there is prose.
_CARRIED_HEAD = re.compile(r"(?:^|(?<=[.!?`]) )(?P<name>[A-Za-z_]\w*): (?P<head>[^:]*[^:.!?])$")


def _arguments(lines: list[str]) -> tuple[list[_Passage], list[str]]:
    """The argument entries among ``lines``, and the lines left (the prose)."""
    entries: list[_Passage] = []
    rest: list[str] = []
    i = 0
    while i < len(lines):
        m = ARGUMENT_HEAD.match(lines[i])
        if m is None:
            rest.append(lines[i])
            i += 1
            continue
        depth = indent_depth(lines[i])
        body = [lines[i].strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and indent_depth(lines[i]) > depth:
            body.append(lines[i].strip())
            i += 1
        cut = not any(line.strip() for line in lines[i:])
        # One line each, so a list inside the entry still reads as one (``_flat``).
        entries.append(_Passage("\n".join(body), m.group("name"), cut=cut))
    return entries, rest


def _carried_over(paragraphs: list[str]) -> tuple[_Passage | None, list[str]]:
    """An entry whose head the chunker carried over from the chunk before: the first
    paragraph ends with "name: head" and the next one is the entry's indented rest."""
    if len(paragraphs) < 2 or not paragraphs[1][:1].isspace():
        return None, paragraphs
    m = _CARRIED_HEAD.search(paragraphs[0].strip())
    if m is None:
        return None, paragraphs
    tail: list[str] = []
    lines = paragraphs[1].split("\n")
    depth = indent_depth(lines[0])
    while lines and (not lines[0].strip() or indent_depth(lines[0]) >= depth):
        tail.append(lines.pop(0).strip())
    entry = _Passage(" ".join([m.group(0).strip(), *tail]).strip(), m.group("name"))
    first = paragraphs[0].strip()[: m.start()]
    return entry, [first, "\n".join(lines), *paragraphs[2:]]


_CODE = re.compile(r"`[^`\n]*`")
# **bold**, *italic*, ***both***: the markers go, the words stay. Not "**kwargs" (no closing
# marker) nor "2 * x" (spaces inside the markers).
_EMPHASIS = re.compile(r"(?<![\w*])(\*{1,3})(?=[^\s*])(.+?)(?<=[^\s*])\1(?![\w*])")
_BULLET = re.compile(r"^[ \t]*\*[ \t]+(?=\S)", re.M)  # a list item's "* ", at a line's start
# ... or after a sentence, where the chunker's overlap flattened a list onto one line ("... if
# the layer need them. * `get_config(self)`: ..."); arithmetic never follows a full stop.
_FLAT_BULLET = re.compile(r"(?<=[.:;!?]) \* (?=[`A-Z])")


def _plain(text: str) -> str:
    """Markdown emphasis as a reader sees it: the excerpt is one line of text in which only
    code spans are markup (the reply escapes the rest, so "**Note**" would show its
    asterisks). Code spans are left as they are."""
    spans: list[str] = []

    def hide(m: re.Match[str]) -> str:
        spans.append(m.group())
        return f"\x00{len(spans) - 1}\x00"

    text = _EMPHASIS.sub(r"\2", _CODE.sub(hide, text))
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], text)


def _flat(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text.replace(_CODE_GAP, " "))
    text = re.sub(r"^#+\s*", "", text, flags=re.M)
    text = _BULLET.sub("• ", text)  # before the lines are joined: "2 * x" is no list
    return _plain(_FLAT_BULLET.sub(" • ", re.sub(r"\s+", " ", text).strip()))


def _sentences(text: str) -> list[_Passage]:
    # Where a code block stood, a sentence ends: "You can use an `EarlyStopping` callback:"
    # introduced the code, and the text after it is another thought ("Find out more in ...").
    # A heading ends one too, and is no sentence itself: it titles what follows.
    found = [
        s.strip()
        for part in _BREAKS.split(text)
        for s in _SENTENCE.split(_flat(part))
        if len(s.strip()) > _MIN_SENTENCE
    ]
    if not found:  # nothing but headings (and code): a heading speaks for the chunk
        found = [_flat(m.group()) for m in _BREAKS.finditer(text) if m.group() != _CODE_GAP]
    return [_Passage(s) for s in found if s]


def _parse(chunk_text: str) -> tuple[str, list[_Passage]]:
    """(the indented lines the chunk starts with: the rest of an entry the chunk before may
    have cut; the chunk's passages after them)."""
    body = chunk_text.split("\n", 1)[1] if "\n" in chunk_text else chunk_text
    body = _FENCE_BLOCK.sub(f"\n{_CODE_GAP}\n", body)
    carried, paragraphs = _carried_over(re.split(r"\n[ \t]*\n", body.strip("\n")))
    lead: list[str] = []
    lines = "\n\n".join(paragraphs).split("\n")
    if carried is None and lines and lines[0][:1].isspace() and not ARGUMENT_HEAD.match(lines[0]):
        depth = indent_depth(lines[0])
        while lines and lines[0].strip() and indent_depth(lines[0]) >= depth:
            lead.append(lines.pop(0).strip())
    entries, rest = _arguments(lines)
    if carried is not None:
        entries.insert(0, carried)
    found = [_Passage(_flat(e.text), e.argument, e.cut) for e in entries]
    # A chunk with no sentence of its own (a returns line: "A model instance.") has no
    # passage, so the page's intro speaks for it.
    return "\n".join(lead), [*found, *_sentences("\n".join(rest))]


def passages(chunk_text: str) -> list[_Passage]:
    """A chunk's passages in reading order: argument entries whole, the prose by sentence.
    The chunk's first line (its title / breadcrumb) and code blocks are not passages."""
    lead, found = _parse(chunk_text)
    return [*_sentences(lead), *found]


def stitched_passages(page: Sequence[str], at: int) -> list[_Passage]:
    """The passages of ``page[at]`` (a page's chunks in order), an argument entry the chunk
    ends inside completed with the indented lines the next chunk of the same section (the
    same first line) starts with."""
    found = passages(page[at])
    cut = [i for i, p in enumerate(found) if p.cut]
    after = page[at + 1] if at + 1 < len(page) else ""
    same_section = after.split("\n", 1)[0] == page[at].split("\n", 1)[0]
    if cut and same_section and (rest := _parse(after)[0]):
        entry = found[cut[-1]]
        found[cut[-1]] = _Passage(f"{entry.text} {_flat(rest)}", entry.argument)
    return found


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_KEYWORD_ARG = re.compile(r"\b([A-Za-z_]\w*)\s*=(?!=)")


def named_in_code(question: str) -> dict[str, int]:
    """The argument names a question writes as code, each with where it first appears:
    snake_case identifiers (``restore_best_weights``), names in backticks, and ``name=``
    keyword arguments. Plain words ("precision", "tensor", "x") match too many argument
    names to say which one the question is about; an exception class ("ValueError") is not
    an argument."""
    words = list(_IDENTIFIER.finditer(question))
    found = [(m.start(), m.group()) for m in words if "_" in m.group().strip("_")]
    for span in _CODE_SPAN.finditer(question):
        found += [(span.start(1) + m.start(), m.group()) for m in _IDENTIFIER.finditer(span[1])]
    found += [(m.start(1), m.group(1)) for m in _KEYWORD_ARG.finditer(question)]
    first: dict[str, int] = {}
    for at, word in sorted(found):
        if len(word) > 1 and word == word.lower():
            first.setdefault(word, at)
    return first


# A passage whose first word is a plain lower-case word: the sentence splitter only splits
# before a capital, a backtick or a bracket, so this is a paragraph that begins mid-sentence.
# A lower-case identifier ("tf.data pipelines ...", "x_train is ...") starts sentences too.
_TAIL = re.compile(r"[a-z]+[\s,;:)]")


def _is_fragment(p: _Passage) -> bool:
    """The tail of a sentence that began in the chunk before (a window starts mid-sentence:
    "general implementation.", "email or instant message notifications ... - Etc.")."""
    return p.argument is None and _TAIL.match(p.text) is not None


def best_excerpt(
    chunk_text: str,
    question: str,
    *,
    page: Sequence[str] = (),
    intro: str = "",
    limit: int = EXCERPT_CHARS,
) -> str:
    """The passage of ``chunk_text`` that shares the most terms with ``question``, as one
    line of at most ``limit`` characters. ``page``: all the page's chunks in order; the
    entries of the arguments the question writes as code compete from all of them (read
    whole across chunk boundaries). ``intro``: the page's first chunk, whose best passage
    stands in when ``chunk_text`` has no prose (only code)."""
    wanted = set(lexical_tokens(question))
    named = named_in_code(question)

    def is_named(p: _Passage) -> bool:
        return p.argument is not None and p.argument in named

    def score(p: _Passage) -> tuple[bool, int, bool, int, bool]:
        # Of several named arguments, the one the question names first: its title's.
        where = -named[p.argument] if p.argument in named else 0
        shared = len(wanted & set(lexical_tokens(p.text)))
        return is_named(p), where, not _is_fragment(p), shared, not p.cut

    def best_of(found: Iterable[_Passage]) -> _Passage | None:
        # max() keeps the first of equals: the earlier passage wins a tie.
        return max(found, key=score, default=None)

    # Only a question that names an argument makes the rest of the page worth reading.
    at = page.index(chunk_text) if named and chunk_text in page else -1
    own = stitched_passages(page, at) if at >= 0 else passages(chunk_text)
    elsewhere: list[_Passage] = []
    if named and page:
        # Only the chunks that hold a named argument's entry ("name:") are parsed.
        holding = [i for i, t in enumerate(page) if i != at and any(f"{n}:" in t for n in named)]
        elsewhere = [p for i in holding for p in stitched_passages(page, i) if is_named(p)]
    best = best_of([*own, *elsewhere]) or best_of(passages(intro))
    if best is None:
        return ""
    text = best.text
    if best.argument and text.startswith(f"{best.argument}:"):
        text = f"`{best.argument}`{text[len(best.argument) :]}"  # the name as the docs show it
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
