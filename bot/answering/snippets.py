"""The code example a reply carries: the shortest snippet of the top page that fits the question.

Pages hold their answers as code more often than as prose (``EarlyStopping(monitor=...,
patience=3)``), so a reply shows one short example under the link it comes from. Candidates
are the page's code blocks as the index stores them (``index_builder``):

* fenced blocks (guides' and examples' code cells, docstring examples in API pages);
* doctest blocks (``>>>`` lines, fenced as ``python`` by ``docstring_to_markdown``): the
  prompts are dropped, and so are the output lines between them;
* indented code under a docstring's ``Example:``/``Examples:``/``Usage:`` heading.

A block must be self-contained Python (it parses once shell lines such as ``!pip install``
are gone), must not be the API page's own signature, and must share terms with the question
(see :func:`fits`); program output (fences without a language that hold no statement) never
qualifies. Top-level lines that only show a value (``output.shape`` in a doctest) go with
their output, and an import alone is no example. A block over ``MAX_LINES`` is cut to the
run of whole top-level statements that fits the question best, so a cut never falls inside a
bracket or a ``def``.

Everything here is pure; extraction is cached per chunk text (the index's chunk strings
are long-lived), so a page's blocks are parsed once per process, not once per question.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from bot.retrieval.text import lexical_tokens

MAX_LINES = 15

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`\n]*$")
_PYTHON_LANGS = frozenset({"python", "py", "python3", "pycon", "ipython", "ipython3"})
_EXAMPLE_SECTION = re.compile(r"\b(examples?|usage)\b", re.I)
_PROMPT = re.compile(r"^(>>>|\.\.\.)(?: |$)")
_SHELL_LINE = re.compile(r"^\s*[!%]")
# Words nearly every Keras snippet holds: sharing one of them says nothing about the question.
_GENERIC = frozenset(
    lexical_tokens(
        "keras tf tensorflow np numpy import print model models layer layers self none true def "
        "false return x y data input inputs output outputs shape"
    )
)
# Statements that do something: output such as ``array([1, 2])`` or ``{'loss': 0.3}`` is an
# expression and must not pass for code when a fence has no language to say which it is.
_ACTION = (
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.With,
)


@dataclass(frozen=True)
class Snippet:
    """A code example for the reply: plain code (no prompts, no fence), at most MAX_LINES."""

    code: str
    language: str = "python"
    trimmed: bool = False  # cut from a longer block

    @property
    def line_count(self) -> int:
        return len(self.code.splitlines())


@dataclass(frozen=True)
class _Terms:
    code: frozenset[str]  # question-comparable terms of the code itself
    comments: frozenset[str]  # ... and those only its comments hold (they count half)

    def overlap(self, wanted: frozenset[str]) -> float:
        return len(wanted & self.code) + 0.5 * len(wanted & self.comments)


@dataclass(frozen=True)
class _Block:
    code: str  # normalised: dedented, prompts/output/shell lines gone
    need_action: bool  # from a fence without a language: must do something to be code
    terms: _Terms
    chunk: int = 0  # position of the chunk it came from in the caller's list


@dataclass(frozen=True)
class _Statement:
    first: int  # 0-based line, including the comment lines right above it
    last: int
    terms: _Terms
    is_import: bool = False


@dataclass(frozen=True)
class _Parsed:
    code: str  # the block without the statements that only show a value
    statements: tuple[_Statement, ...]
    terms: _Terms


_TRAILING_COMMENT = re.compile(r"\s+#\s.*$")


def _terms(code: str) -> _Terms:
    """Terms of the code and of its comments (a ``#`` after code counts only as ``  # ``,
    so a ``#`` inside a string literal is not mistaken for one)."""
    code_lines: list[str] = []
    comments: list[str] = []
    for line in code.splitlines():
        if line.lstrip().startswith("#"):
            comments.append(line)
            continue
        m = _TRAILING_COMMENT.search(line)
        code_lines.append(line[: m.start()] if m else line)
        if m:
            comments.append(m.group(0))
    code_terms = frozenset(lexical_tokens("\n".join(code_lines)))
    return _Terms(code_terms, frozenset(lexical_tokens("\n".join(comments))) - code_terms)


def _clean(lines: list[str]) -> list[str]:
    """Drop blank lines at both ends and runs of blank lines inside."""
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1].strip()):
            out.append(line.rstrip())
    while out and not out[-1].strip():
        out.pop()
    return out


def normalise(code: str) -> str:
    """Code as a reader would paste it: dedented, no ``>>>``/``...`` prompts, no doctest
    output, no notebook shell lines (``!pip``, ``%matplotlib``)."""
    lines = textwrap.dedent(code.expandtabs(4)).splitlines()
    if any(line.lstrip().startswith(">>>") for line in lines):
        base = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.lstrip().startswith(">>>"))
        kept = []
        for line in lines:
            body = line[base:] if not line[:base].strip() else line.lstrip()
            m = _PROMPT.match(body)
            if m:  # a prompt line; anything else between prompts is the program's output
                kept.append(body[m.end() :])
        lines = kept
    return "\n".join(_clean([ln for ln in lines if not _SHELL_LINE.match(ln)]))


def _shows_a_value(stmt: ast.stmt) -> bool:
    """``output.shape``, ``x``, ``history.history['loss']``: a doctest or notebook prints the
    value; with its output gone the line says nothing. Calls stay (``keras.ops.sum(x)``)."""
    return isinstance(stmt, ast.Expr) and not isinstance(stmt.value, ast.Call | ast.Await)


@lru_cache(maxsize=4096)
def _parse(code: str, need_action: bool) -> _Parsed | None:
    """The block without value-only lines, and its top-level statements, each with the
    comment lines right above it; None when the code does not parse, holds nothing but
    values, or (``need_action``) only evaluates expressions."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if need_action and not any(
        isinstance(node, _ACTION)
        or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute))
        for node in ast.walk(tree)
    ):
        return None
    lines = code.splitlines()
    shown = [stmt for stmt in tree.body if _shows_a_value(stmt)]
    if shown:
        drop = {i for stmt in shown for i in range(stmt.lineno - 1, stmt.end_lineno or stmt.lineno)}
        code = "\n".join(_clean([line for i, line in enumerate(lines) if i not in drop]))
        return _parse(code, need_action) if code and len(shown) < len(tree.body) else None
    out: list[_Statement] = []
    for stmt in tree.body:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))]) - 1
        last = (stmt.end_lineno or stmt.lineno) - 1
        floor = out[-1].last + 1 if out else 0
        while first > floor and lines[first - 1].lstrip().startswith("#"):
            first -= 1
        terms = _terms("\n".join(lines[first : last + 1]))
        out.append(_Statement(first, last, terms, isinstance(stmt, ast.Import | ast.ImportFrom)))
    code_terms = frozenset().union(*(st.terms.code for st in out))
    comments = frozenset().union(*(st.terms.comments for st in out)) - code_terms
    return _Parsed(code, tuple(out), _Terms(code_terms, comments))


def _fenced(lines: list[str]) -> Iterable[tuple[str, str]]:
    """(language, code) of each fenced block; an unclosed fence runs to the end."""
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines):
            close = lines[j].strip()
            if len(close) >= len(fence) and set(close) == {fence[0]}:
                break
            j += 1
        yield lang, "\n".join(lines[i + 1 : j])
        i = j + 1


def _indented(lines: list[str]) -> Iterable[str]:
    """Indented (4+ spaces) code blocks outside fences, for docstring example sections."""
    block: list[str] = []
    in_fence = False
    for line in [*lines, "<end>"]:  # a last unindented line ends the last block
        if _FENCE_OPEN.match(line) and not block:
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line)
            continue
        if any(ln.strip() for ln in block):
            yield "\n".join(block)
        block = []


@lru_cache(maxsize=4096)
def _blocks_of(chunk_text: str) -> tuple[_Block, ...]:
    """Candidate blocks of one chunk (``header line`` + blank + Markdown body), not yet
    parsed: most never share a term with the question, and parsing is the costly part."""
    header, _, body = chunk_text.partition("\n")
    lines = body.split("\n")
    raw: list[tuple[str, bool]] = []  # (code, needs an action statement to count as code)
    for lang, code in _fenced(lines):
        if lang in _PYTHON_LANGS:
            raw.append((code, False))
        elif not lang:
            # keras.io fences program output without a language; docstrings sometimes fence
            # code that way: only doctests and code that does something pass.
            raw.append((code, ">>>" not in code))
    last_section = header.rsplit(" > ", 1)[-1] if " > " in header else ""
    if _EXAMPLE_SECTION.search(last_section):
        raw.extend((code, True) for code in _indented(lines))
    return tuple(
        _Block(code=text, need_action=need_action, terms=_terms(text))
        for code, need_action in raw
        if (text := normalise(code))
    )


def _is_signature(parsed: _Parsed, symbol: str | None) -> bool:
    """The API page's own signature line (``keras.X(arg=default, ...)``) is not an example."""
    if not symbol or len(parsed.statements) != 1:
        return False
    head = parsed.code.lstrip()
    return head == symbol or head.startswith(f"{symbol}(")


def _symbol_pattern(symbol: str | None) -> re.Pattern[str] | None:
    name = symbol.rsplit(".", 1)[-1] if symbol else ""
    return re.compile(rf"(?<![\w]){re.escape(name)}(?!\w)") if name else None


def fits(overlap: float, uses_symbol: bool) -> bool:
    """Two question terms in the code (a term only in comments counts half), or one in code
    that uses the page's own symbol."""
    return overlap >= 2 or (overlap >= 1 and uses_symbol)


def _score(overlap: float, uses_symbol: bool, lines: int, best_chunk: bool) -> float:
    # Question terms first, then the page's symbol, then the chunk search matched; among
    # equals the shorter example wins.
    return overlap + 1.0 * uses_symbol + 0.5 * best_chunk - 0.02 * lines


def _window(
    parsed: _Parsed, wanted: frozenset[str], symbol: re.Pattern[str] | None, max_lines: int
) -> tuple[str, float, bool] | None:
    """The best run of whole top-level statements of at most ``max_lines`` lines, not all
    imports: (code, overlap, uses symbol), or None when no run is short enough and fits."""
    lines = parsed.code.splitlines()
    statements = parsed.statements
    best: tuple[tuple[float, int], str, float, bool] | None = None
    for i, head in enumerate(statements):
        code_terms: frozenset[str] = frozenset()
        comment_terms: frozenset[str] = frozenset()
        imports_only = True
        for tail in statements[i:]:
            if tail.last - head.first + 1 > max_lines:
                break
            code_terms |= tail.terms.code
            comment_terms |= tail.terms.comments
            imports_only = imports_only and tail.is_import
            overlap = _Terms(code_terms, comment_terms - code_terms).overlap(wanted)
            if not overlap or imports_only:
                continue
            text = "\n".join(_clean(lines[head.first : tail.last + 1]))
            uses = bool(symbol and symbol.search(text))
            key = (_score(overlap, uses, len(text.splitlines()), False), -head.first)
            if best is None or key > best[0]:
                best = (key, text, overlap, uses)
    return None if best is None else best[1:]


def _without_fragments(blocks: dict[str, _Block]) -> list[_Block]:
    """Drop blocks that end another block: consecutive chunks repeat the last lines of a code
    block as context, and such a tail may start inside a function body. The whole block's
    own windows cover what the tail shows. (Compared with whitespace squashed: a tail from
    inside a body was dedented on its own.)"""
    squashed = {code: " ".join(code.split()) for code in blocks}
    by_last: dict[str, list[str]] = {}
    for code in blocks:
        by_last.setdefault(code.rsplit("\n", 1)[-1].strip(), []).append(code)
    return [
        block
        for code, block in blocks.items()
        if not any(
            other != code and squashed[other].endswith(squashed[code])
            for other in by_last[code.rsplit("\n", 1)[-1].strip()]
        )
    ]


def best_snippet(
    texts: str | Sequence[str],
    question: str,
    *,
    symbol: str | None = None,
    max_lines: int = MAX_LINES,
) -> Snippet | None:
    """The shortest code example in ``texts`` that fits ``question``, or None.

    ``texts`` are one page's chunk texts, the chunk that matched the question first (a lone
    string is one chunk). ``symbol`` is the page's API name for API pages: its signature
    block is skipped, and code that uses it fits with one shared question term.
    """
    chunks = [texts] if isinstance(texts, str) else list(texts)
    wanted = frozenset(lexical_tokens(question)) - _GENERIC
    if not wanted:
        return None
    pattern = _symbol_pattern(symbol)
    seen: dict[str, _Block] = {}
    for n, text in enumerate(chunks):
        for block in _blocks_of(text):
            if block.code not in seen:
                seen[block.code] = _Block(block.code, block.need_action, block.terms, chunk=n)
    best: tuple[float, Snippet] | None = None
    for block in _without_fragments(seen):
        if block.terms.overlap(wanted) < 1:
            continue  # cheap test first: no part of this block can fit
        parsed = _parse(block.code, block.need_action)
        if parsed is None or _is_signature(parsed, symbol):
            continue
        if all(st.is_import for st in parsed.statements):
            continue  # an import line alone shows nothing of how to do it
        trimmed = len(parsed.code.splitlines()) > max_lines
        if trimmed:
            found = _window(parsed, wanted, pattern, max_lines)
            if found is None:
                continue
            code, overlap, uses = found
        else:
            code, overlap = parsed.code, parsed.terms.overlap(wanted)
            uses = bool(pattern and pattern.search(code))
        if not fits(overlap, uses):
            continue
        score = _score(overlap, uses, len(code.splitlines()), block.chunk == 0)
        if best is None or score > best[0]:
            best = (score, Snippet(code=code, trimmed=trimmed))
    return None if best is None else best[1]


def fenced(code: str, *, language: str = "python", indent: str = "") -> str:
    """``code`` as a fenced Markdown block no line of it can close (the fence is longer than
    any backtick run in the code), every line prefixed with ``indent`` (list-item content)."""
    runs = [len(r) for r in re.findall(r"`+", code)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    body = [f"{indent}{line}" if line.strip() else "" for line in code.splitlines()]
    return "\n".join([f"{indent}{fence}{language}", *body, f"{indent}{fence}"])
