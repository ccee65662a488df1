"""Retrieval quality on a labelled question file (``supportbot eval``).

Definitions (binary relevance; ``relevant`` = the labelled doc ids of a question):

* Recall@k — share of answerable questions with at least one relevant doc in the top k
  (a.k.a. success@k: the bot's reply cites a right page).
* MRR@10 — mean of 1/rank of the first relevant doc within the top 10 (0 if none).
* nDCG@10 — DCG of the top 10 over the ideal DCG for that question's relevant set.
* unanswerable_below_threshold — share of questions labelled not answerable from the docs
  whose confidence stays under the reply threshold (the bot stays quiet).
* replied / reply_precision — share of answerable questions whose confidence reaches the
  threshold (the bot would reply in the room), and among those the share whose top source
  is relevant: the two sides of choosing a threshold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError


@dataclass(frozen=True)
class LabelledQuestion:
    id: str
    question: str
    relevant: tuple[str, ...]
    answerable: bool


def read_jsonl_objects(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line; a bad file or line stops with one clear line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{lineno}: not {what} ({exc})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{lineno}: not {what} (not a JSON object)")
        yield lineno, obj


def load_questions(path: Path) -> list[LabelledQuestion]:
    """Parse a questions JSONL file; a malformed line stops with its line number and reason."""
    out: list[LabelledQuestion] = []
    for lineno, obj in read_jsonl_objects(path, "a question object"):
        try:
            raw_relevant = obj.get("relevant", [])
            if not isinstance(raw_relevant, list):
                raise TypeError("'relevant' must be a list of doc ids")
            relevant = tuple(str(r) for r in raw_relevant)
            out.append(
                LabelledQuestion(
                    id=str(obj.get("id", f"line-{lineno}")),
                    question=str(obj["question"]),
                    relevant=relevant,
                    answerable=bool(obj.get("answerable_from_docs", bool(relevant))),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}:{lineno}: not a question object ({exc})") from None
    return out


def first_hit_rank(ranked: Sequence[str], relevant: Sequence[str]) -> int | None:
    wanted = set(relevant)
    for rank, doc_id in enumerate(ranked, start=1):
        if doc_id in wanted:
            return rank
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose first hit is within the top ``k`` (success@k)."""
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """MRR over first-hit ranks already cut at the cutoff (``None``: no hit, counts 0)."""
    return sum(1.0 / r for r in ranks if r is not None) / len(ranks) if ranks else 0.0


def ndcg_at(ranked: Sequence[str], relevant: Sequence[str], k: int = 10) -> float:
    wanted = set(relevant)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in wanted)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), k)))
    return dcg / ideal


@dataclass
class EvalReport:
    mode: str
    n: int
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float
    n_unanswerable: int
    unanswerable_below_threshold: float | None
    replied: float = 0.0
    reply_precision: float | None = None
    per_question: list[dict[str, Any]] = field(default_factory=list)

    def curve(self) -> list[CurvePoint]:
        """What the bot would do at each reply threshold on these questions."""
        return coverage_curve(
            [(q["confidence"], q["rank"], not q.get("unanswerable")) for q in self.per_question]
        )

    def confidence_auc(self) -> float | None:
        """AUC of "the top page is right" over every question (an unanswerable one counts as
        a wrong top page)."""
        from bot.retrieval.confidence import auc

        return auc(
            [q["confidence"] for q in self.per_question],
            [q["rank"] == 1 for q in self.per_question],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n": self.n,
            "recall@1": round(self.recall_at_1, 4),
            "recall@5": round(self.recall_at_5, 4),
            "recall@10": round(self.recall_at_10, 4),
            "mrr@10": round(self.mrr_at_10, 4),
            "ndcg@10": round(self.ndcg_at_10, 4),
            "n_unanswerable": self.n_unanswerable,
            "unanswerable_below_threshold": (
                None
                if self.unanswerable_below_threshold is None
                else round(self.unanswerable_below_threshold, 4)
            ),
            "replied": round(self.replied, 4),
            "reply_precision": (
                None if self.reply_precision is None else round(self.reply_precision, 4)
            ),
        }


def evaluate(
    questions: Sequence[LabelledQuestion],
    ask: Callable[[str], tuple[list[str], float]],
    *,
    mode: str,
    threshold: float,
    canonical: Callable[[str], str] = lambda doc_id: doc_id,
) -> EvalReport:
    """``ask(question) -> (ranked doc ids, confidence)``; metrics as defined in the module doc.

    ``canonical`` maps a labelled id to the index's id for the same document: an API symbol
    exported under several names (``keras.optimizers.Optimizer`` and ``keras.Optimizer``) is
    one document, and a hit on it counts whichever of its names the label used.
    """
    ranks: list[int | None] = []
    ndcgs: list[float] = []
    quiet = 0
    unanswerable = 0
    replied_ranks: list[int | None] = []
    rows: list[dict[str, Any]] = []
    for q in questions:
        ranked, conf = ask(q.question)
        if q.answerable and q.relevant:
            relevant = tuple(dict.fromkeys(canonical(r) for r in q.relevant))
            rank = first_hit_rank(ranked[:10], relevant)
            ranks.append(rank)
            ndcgs.append(ndcg_at(ranked, relevant, 10))
            if conf >= threshold:
                replied_ranks.append(rank)
            rows.append({"id": q.id, "rank": rank, "confidence": conf, "top": ranked[:3]})
        else:
            unanswerable += 1
            quiet += conf < threshold
            rows.append(
                {
                    "id": q.id,
                    "rank": None,
                    "confidence": conf,
                    "top": ranked[:3],
                    "unanswerable": True,
                }
            )
    n = len(ranks)
    return EvalReport(
        mode=mode,
        n=n,
        recall_at_1=recall_at(ranks, 1),
        recall_at_5=recall_at(ranks, 5),
        recall_at_10=recall_at(ranks, 10),
        mrr_at_10=mean_reciprocal_rank(ranks),
        ndcg_at_10=sum(ndcgs) / n if n else 0.0,
        n_unanswerable=unanswerable,
        unanswerable_below_threshold=quiet / unanswerable if unanswerable else None,
        replied=len(replied_ranks) / n if n else 0.0,
        reply_precision=(
            sum(1 for r in replied_ranks if r == 1) / len(replied_ranks) if replied_ranks else None
        ),
        per_question=rows,
    )


@dataclass(frozen=True)
class CurvePoint:
    """What the bot would do at one reply threshold (see ``coverage_curve``)."""

    threshold: float
    replied: float  # share of answerable questions with confidence >= threshold
    top1_precision: float | None  # among those, share whose top page is right
    top3_precision: float | None  # ... whose top three pages hold a right one
    unanswerable_quiet: float | None  # share of unanswerable questions under the threshold

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "threshold": round(self.threshold, 4),
            "replied": r(self.replied),
            "top1_precision": r(self.top1_precision),
            "top3_precision": r(self.top3_precision),
            "unanswerable_quiet": r(self.unanswerable_quiet),
        }


DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def coverage_curve(
    rows: Sequence[tuple[float, int | None, bool]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> list[CurvePoint]:
    """Coverage against precision per threshold, from (confidence, first-hit rank, answerable).

    The operator's view of choosing ``SUPPORTBOT_REPLY_THRESHOLD``: how many answerable
    questions get a confident reply, how often its top (or top three) pages are right, and
    how many unanswerable questions stay under the threshold.
    """
    answerable = [(c, r) for c, r, a in rows if a]
    unanswerable = [c for c, _, a in rows if not a]
    points = []
    for t in thresholds:
        replied = [r for c, r in answerable if c >= t]
        points.append(
            CurvePoint(
                threshold=t,
                replied=len(replied) / len(answerable) if answerable else 0.0,
                top1_precision=(
                    sum(1 for r in replied if r == 1) / len(replied) if replied else None
                ),
                top3_precision=(
                    sum(1 for r in replied if r is not None and r <= 3) / len(replied)
                    if replied
                    else None
                ),
                unanswerable_quiet=(
                    sum(1 for c in unanswerable if c < t) / len(unanswerable)
                    if unanswerable
                    else None
                ),
            )
        )
    return points


def choose_threshold(
    curve: Sequence[CurvePoint], *, min_precision: float = 0.9, min_quiet: float = 0.8
) -> CurvePoint | None:
    """The point that replies most while keeping both bars; None when no threshold does."""
    ok = [
        p
        for p in curve
        if p.replied > 0
        and (p.top1_precision or 0.0) >= min_precision
        and (p.unanswerable_quiet is None or p.unanswerable_quiet >= min_quiet)
    ]
    return max(ok, key=lambda p: (p.replied, -p.threshold)) if ok else None


def rule_line(chosen: CurvePoint | None) -> str:
    """The threshold ``choose_threshold`` picked, in one line for the operator."""
    if chosen is None:
        return (
            "no threshold keeps top-1 precision >= 0.90 and unanswerable quiet >= 0.80 on "
            "these questions"
        )
    return (
        f"threshold {chosen.threshold:.2f} keeps top-1 precision >= 0.90 and unanswerable "
        f"quiet >= 0.80 while replying to {chosen.replied:.0%} of answerable questions"
    )


def iter_curve(curve: Sequence[CurvePoint]) -> Iterator[list[str]]:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    yield ["threshold", "replied", "top-1 right", "top-3 right", "unans. quiet"]
    for p in curve:
        yield [
            f"{p.threshold:.2f}",
            pct(p.replied),
            pct(p.top1_precision),
            pct(p.top3_precision),
            pct(p.unanswerable_quiet),
        ]


def iter_table(reports: Sequence[EvalReport]) -> Iterator[list[str]]:
    yield [
        "mode",
        "n",
        "R@1",
        "R@5",
        "R@10",
        "MRR@10",
        "nDCG@10",
        "unans. quiet",
        "replied",
        "reply P@1",
    ]
    for r in reports:
        quiet = (
            "-"
            if r.unanswerable_below_threshold is None
            else f"{r.unanswerable_below_threshold:.2f}"
        )
        yield [
            r.mode,
            str(r.n),
            f"{r.recall_at_1:.3f}",
            f"{r.recall_at_5:.3f}",
            f"{r.recall_at_10:.3f}",
            f"{r.mrr_at_10:.3f}",
            f"{r.ndcg_at_10:.3f}",
            quiet,
            f"{r.replied:.2f}",
            "-" if r.reply_precision is None else f"{r.reply_precision:.2f}",
        ]


@dataclass
class ConfidenceFit:
    """A confidence model fitted on a question file, and its cross-validated curve."""

    model: Any  # bot.retrieval.confidence.ConfidenceModel, fitted on every question
    curve: list[CurvePoint]  # from out-of-fold confidences only
    chosen: CurvePoint | None  # the threshold that keeps the bars (see choose_threshold)
    auc: float | None  # cross-validated AUC of "the top page is right"
    folds: int
    seed: int


def fit_confidence_cv(
    questions: Sequence[LabelledQuestion],
    search: Callable[[str], Any],
    *,
    canonical: Callable[[str], str] = lambda doc_id: doc_id,
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
) -> ConfidenceFit:
    """Fit the reranked-answer confidence on labelled questions, reporting only held-out scores.

    ``search(question) -> SearchResult``. The label is "the top page is right"
    (unanswerable questions: never). Each question's reported confidence is the mean over
    ``repeats`` shuffles of a ``folds``-fold split of the score given by a model fitted on the
    other folds (seeds ``seed`` .. ``seed + repeats - 1``); the model returned is fitted on all
    of them, for use on new questions.
    """
    import numpy as np

    from bot.retrieval.confidence import confidence_features, cross_validated, fit_confidence

    features, labels, ranks, answerable = [], [], [], []
    for q in questions:
        result = search(q.question)
        ranked = [h.doc_id for h in result.hits]
        rank = None
        if q.answerable and q.relevant:
            rank = first_hit_rank(ranked[:10], tuple(canonical(r) for r in q.relevant))
        features.append(confidence_features(result.hits))
        labels.append(rank == 1)
        ranks.append(rank)
        answerable.append(bool(q.answerable and q.relevant))
    x, y = np.asarray(features), np.asarray(labels)
    held = np.mean(
        [cross_validated(x, y, folds=folds, seed=seed + r) for r in range(repeats)], axis=0
    )
    curve = coverage_curve(list(zip(held.tolist(), ranks, answerable, strict=True)))
    model = fit_confidence(x, y)
    return ConfidenceFit(
        model=model,
        curve=curve,
        chosen=choose_threshold(curve),
        auc=_auc(held.tolist(), labels),
        folds=folds,
        seed=seed,
    )


def _auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Probability that a right top page scores above a wrong one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))
