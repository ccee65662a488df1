"""Text normalisation shared by index time and query time.

The lexical index and the query must tokenise identically, so both call
:func:`lexical_tokens`. Code identifiers are kept whole *and* split into words
(``EarlyStopping`` -> ``earlystopping early stopping``), because users write either form.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)*")
_CAMEL_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|[A-Z]+|\d+")

# A compact English stop list plus words that carry no signal in a Keras support room.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "my",
        "me",
        "we",
        "our",
        "can",
        "could",
        "should",
        "do",
        "does",
        "did",
        "not",
        "no",
        "yes",
        "am",
        "been",
        "being",
        "get",
        "got",
        "using",
        "use",
        "used",
        "just",
        "also",
        "any",
        "some",
        "very",
        "than",
        "too",
        "only",
        "other",
        "about",
        "after",
        "before",
        "here",
        "out",
        "up",
        "down",
        "over",
        "under",
        "again",
        "further",
        "once",
        "all",
        "both",
        "each",
        "few",
        "more",
        "most",
        "own",
        "same",
        "s",
        "t",
        "don",
        "now",
        "want",
        "trying",
        "tried",
        "try",
        "please",
        "thanks",
        "thank",
        "hi",
        "hello",
        "help",
        "anyone",
        "someone",
        "way",
    ]
)

_MAX_QUERY_CHARS = 4000


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def split_identifier(token: str) -> list[str]:
    """Words of an identifier: ``image_dataset_from_directory``, ``EarlyStopping`` -> parts."""
    parts: list[str] = []
    for piece in token.split("_"):
        if piece:
            parts.extend(_CAMEL_PARTS.findall(piece))
    return parts


def raw_words(text: str) -> list[str]:
    """Lower-cased words with identifiers expanded, before stop-word removal and stemming."""
    words: list[str] = []
    for token in _TOKEN.findall(text):
        lower = token.lower().strip("_")
        if not lower:
            continue
        words.append(lower)
        parts = split_identifier(token)
        if len(parts) > 1:
            words.extend(p.lower() for p in parts)
    return words


def lexical_tokens(text: str) -> list[str]:
    """Tokens for BM25: expanded identifiers, no stop words, Snowball-stemmed."""
    kept = [w for w in raw_words(text) if len(w) > 1 and w not in STOPWORDS]
    return list(_stemmer().stemWords(kept))


# --- query cleanup ---------------------------------------------------------------------------
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
# Horizontal whitespace only: `\s` would also eat newlines and backtrack quadratically on
# a message made of blank lines.
_TRACE_FRAME = re.compile(r'^[ \t]*File "[^"\n]*", line \d+.*$', re.M)
_TRACE_HEAD = re.compile(r"^[ \t]*Traceback \(most recent call last\):[ \t]*$", re.M)
_CARETS = re.compile(r"^[ \t]*[\^~]{3,}[ \t]*$", re.M)
_PROGRESS = re.compile(r"^.*(?:━|(?<!\d)\d+/\d+ \[=*>?\.*\]).*$", re.M)
_URL = re.compile(r"https?://\S+")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]{0,200}>")


def clean_query(text: str) -> tuple[str, str]:
    """Split a chat message into (prose, code).

    Tracebacks keep only their final ``SomeError: message`` line; fenced and indented code goes
    to ``code`` (scanned for API symbols, lightly weighted); URLs and HTML tags are dropped.
    """
    text = text.replace("\r\n", "\n")[: _MAX_QUERY_CHARS * 4]
    code_parts = [m.group(1) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("\n", text)
    prose = _TRACE_HEAD.sub("", prose)
    frames = _TRACE_FRAME.findall(prose)
    prose = _TRACE_FRAME.sub("", prose)
    prose = _CARETS.sub("", prose)
    prose = _PROGRESS.sub("", prose)
    prose = _URL.sub(" ", prose)
    prose = _HTML_TAG.sub(" ", prose)
    # Lines indented by 4+ spaces after a traceback frame are the quoted source lines.
    lines = []
    for line in prose.split("\n"):
        if line.startswith(("    ", "\t")) and frames:
            code_parts.append(line)
            continue
        lines.append(line)
    prose = re.sub(r"[ \t]+", " ", "\n".join(lines))
    prose = re.sub(r"\n{2,}", "\n", prose).strip()
    code = "\n".join(code_parts).strip()
    return prose[:_MAX_QUERY_CHARS], code[:_MAX_QUERY_CHARS]


def title_line(prose: str, code: str) -> str:
    """The first line of a question that has more below it (an issue's title, a message's
    opening line over its details or code), from ``clean_query``'s parts; empty when the
    question is that one line."""
    first, _, rest = prose.strip().partition("\n")
    return first.strip() if rest.strip() or code else ""
