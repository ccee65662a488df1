"""More kinds of synthetic questions the corpus gives for free, to judge rankings on.

``reranker_training.mine_queries`` takes the questions the pages themselves ask or answer
elsewhere (a sentence that links or names the page that shows how; the FAQ's question
headings). Those mostly point at API pages. A real question is as often answered by a guide
or an example, so three more families measure how a ranking treats those:

- ``section``: a guide's or example's section heading ("Freezing layers: understanding the
  trainable attribute") asks for that page;
- ``intro``: the one-line description under a guide's or example's title ("Complete guide to
  transfer learning & fine-tuning in Keras.") asks for that page;
- ``summary``: an API symbol's summary line ("Stop training when a monitored metric has stopped
  improving.") asks for that symbol's page (inherited methods are left out: their summary,
  "Returns the config of the object.", belongs to dozens of pages).

In all three the answer is the page the text comes from, so (unlike a link sentence) the
source stays among the candidates; ``fold`` therefore splits by the answer page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.corpus.documents import Document, content_hash
from index_builder.reranker_training import TrainingQuery, _plain

FAMILIES: tuple[str, ...] = ("link", "section", "intro", "summary")

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
_HEADING = re.compile(r"^#{2,3}\s+(.+?)\s*$", re.M)
# Headings every tutorial has: they name a step, not something a person would ask about.
_GENERIC = re.compile(
    r"^(set ?up|introduction|intro|imports?|conclusions?|wrapping up|summary|overview|"
    r"references?|acknowledge?ments?|next steps|prerequisites|requirements|further reading|"
    r"relevant chapters|what.s next|final thoughts|results?|inference|"
    r"(train|build|evaluate|compile)(ing)? the model|(prepare|load)(ing)? the data(set)?)$",
    re.I,
)


def _tutorial(d: Document) -> bool:
    return d.doc_id.startswith(("guides/", "examples/"))


def section_queries(documents: Sequence[Document], *, min_words: int = 3) -> list[TrainingQuery]:
    """Each specific ``##``/``###`` heading of a guide or example asks for its page."""
    out: list[TrainingQuery] = []
    for d in documents:
        if not _tutorial(d):
            continue
        for m in _HEADING.finditer(_FENCE.sub("\n", d.text)):
            heading = _plain(m.group(1)).strip(" :")
            if len(heading.split()) >= min_words and not _GENERIC.match(heading):
                out.append(TrainingQuery(heading, (d.doc_id,), "", "section"))
    return out


def intro_queries(documents: Sequence[Document]) -> list[TrainingQuery]:
    """The description line right under a guide's or example's ``#`` title."""
    out: list[TrainingQuery] = []
    for d in documents:
        if not _tutorial(d):
            continue
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", d.text) if p.strip()]
        if len(paragraphs) < 2 or not paragraphs[0].startswith("# "):
            continue
        line = paragraphs[1]
        if line.startswith(("#", "`", "*", "|", "-", "!")):
            continue  # a code cell, a list or a table, not a description
        text = _plain(line)
        if 4 <= len(text.split()) <= 40:
            out.append(TrainingQuery(text, (d.doc_id,), "", "intro"))
    return out


def summary_queries(documents: Sequence[Document], *, limit: int = 300) -> list[TrainingQuery]:
    """The first docstring paragraph of an API symbol that is not a class member.

    Members are skipped because inherited ones share their summary with every subclass. At
    most ``limit`` queries, spread evenly over the (sorted) symbols.
    """
    api = {d.doc_id for d in documents if d.kind == "api"}
    out: list[TrainingQuery] = []
    for d in documents:
        if d.kind != "api" or d.source == "site-map" or d.doc_id.rsplit(".", 1)[0] in api:
            continue
        paragraphs = [
            p.strip()
            for p in re.split(r"\n\s*\n", _FENCE.sub("\n", d.text))
            if p.strip() and not p.strip().startswith("#")
        ]
        if not paragraphs:
            continue
        text = _plain(paragraphs[0])
        if 5 <= len(text.split()) <= 40:
            out.append(TrainingQuery(text, (d.doc_id,), "", "summary"))
    if len(out) > limit:
        step = len(out) / limit
        out = [out[int(i * step)] for i in range(limit)]
    return out


def fold(query: TrainingQuery, folds: int = 5) -> int:
    """A stable fold by the page the text comes from (the answer page when that is the same),
    so a page's sentences never sit on both sides of a split. Fold 0 of 5 is the build's
    held-out fifth (``reranker_training._held_out``)."""
    key = query.source or query.relevant[0]
    return int(content_hash("reranker-split", key)[:8], 16) % folds
