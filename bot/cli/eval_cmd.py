"""``supportbot eval`` (retrieval quality on labelled questions, fitting the confidence
model) and ``eval-duplicates`` (past-answer retrieval on duplicate questions)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.cli.loaders import load_retriever, settings_from_args
from bot.cli.output import print_table

if TYPE_CHECKING:
    from bot.settings import Settings


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate the questions file in one mode (or all) and print the metrics."""
    from bot.evaluation.questions import evaluate, load_questions

    settings = settings_from_args(args)
    questions = load_questions(args.file)
    retriever = load_retriever(settings)
    if args.fit_confidence:
        return _fit_confidence(args, questions, retriever)
    modes = ("hybrid", "dense", "lexical") if args.mode == "all" else (args.mode,)
    reports = []
    for mode in modes:

        def ask(q: str, mode: Any = mode) -> tuple[list[str], float]:
            result = retriever.search(q, mode=mode, k=10)
            return [h.doc_id for h in result.hits], result.confidence

        reports.append(
            evaluate(
                questions,
                ask,
                mode=mode,
                threshold=settings.reply_threshold,
                canonical=retriever.index.canonical_id,
            )
        )
    if args.json:
        payload: Any = (
            [r.to_json() for r in reports] if args.mode == "all" else reports[0].to_json()
        )
        print(json.dumps(payload, indent=2))
    else:
        _print_eval_tables(reports, retriever, len(questions), settings)
    if args.per_question:
        for r in reports:
            for item in r.per_question:
                print(json.dumps({"mode": r.mode, **item}), file=sys.stderr)
    return 0


def _print_eval_tables(
    reports: Sequence[Any], retriever: Any, questions: int, settings: Settings
) -> None:
    """The metrics table, then hybrid mode's coverage curve over reply thresholds."""
    from bot.evaluation.questions import choose_threshold, iter_curve, iter_table, rule_line

    rows = list(iter_table(reports))
    print_table(rows)
    print(
        f"index {retriever.index.version}; {questions} questions; "
        f"reply threshold {settings.reply_threshold}"
    )
    for r in reports:
        if r.mode != "hybrid":
            continue  # the bot answers in hybrid mode: its curve is the one to choose by
        print(_confidence_line(retriever, r))
        print(f"\n{r.mode}: what the bot would do at each reply threshold")
        curve = r.curve()
        print_table(list(iter_curve(curve)))
        print(rule_line(choose_threshold(curve)))


def _confidence_line(retriever: Any, report: Any) -> str:
    from bot.retrieval.confidence import model_origin

    origin = model_origin(retriever.params.confidence_model, retriever.index.confidence)
    score = report.confidence_auc()
    return f"confidence: {origin}; AUC of 'the top page is right' on this file {score or 0:.3f}"


def _fit_confidence(args: argparse.Namespace, questions: Sequence[Any], retriever: Any) -> int:
    from bot.evaluation.questions import fit_confidence_cv, iter_curve, rule_line

    fit = fit_confidence_cv(
        questions,
        lambda q: retriever.search(q, k=10),
        canonical=retriever.index.canonical_id,
        folds=args.folds,
        seed=args.seed,
    )
    if args.save_confidence:
        args.save_confidence.write_text(
            json.dumps(fit.model.to_json(), indent=1) + "\n", encoding="utf-8"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": fit.model.to_json(),
                    "cross_validated": {
                        "folds": fit.folds,
                        "seed": fit.seed,
                        "auc": fit.auc,
                        "curve": [p.to_json() for p in fit.curve],
                        "chosen": fit.chosen.to_json() if fit.chosen else None,
                    },
                },
                indent=2,
            )
        )
        return 0
    print(
        f"cross-validated ({fit.folds} folds, seed {fit.seed}): every confidence below comes "
        f"from a model that did not see that question; AUC {fit.auc or 0:.3f}"
    )
    print_table(list(iter_curve(fit.curve)))
    print(rule_line(fit.chosen))
    if args.save_confidence:
        print(f"model fitted on all {len(questions)} questions written to {args.save_confidence}")
    return 0


def cmd_eval_duplicates(args: argparse.Namespace) -> int:
    """Evaluate past-answer retrieval on a fresh pool of threads built from the file."""
    from bot.errors import ConfigError
    from bot.evaluation.duplicates import (
        load_distractors,
        load_duplicates,
        pool_threads,
        run_duplicates_eval,
        table_rows,
    )
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.search import MODES

    settings = settings_from_args(args)
    pairs = load_duplicates(args.file)
    if not pairs:
        raise ConfigError(f"{args.file}: no duplicates to evaluate")
    distractors = load_distractors(args.distractors) if args.distractors else []
    encoder = Encoder(
        settings.embedding_model, device=settings.device, batch_size=settings.embed_batch_size
    )
    modes = MODES if args.mode == "all" else (args.mode,)
    reports = run_duplicates_eval(
        pairs,
        distractors,
        encoder,
        modes,
        chunk_max_words=settings.chunk_max_words,
        chunk_overlap_words=settings.chunk_overlap_words,
    )
    if args.json:
        payload: Any = (
            [r.to_json() for r in reports] if args.mode == "all" else reports[0].to_json()
        )
        print(json.dumps(payload, indent=2))
    else:
        rows = table_rows(reports)
        print_table(rows)
        originals = len({p.original_url for p in pairs})
        pool = len(pool_threads(pairs, distractors))
        print(
            f"{len(pairs)} queries; pool of {pool} threads ({originals} originals, "
            f"{pool - originals} distractors); model {settings.embedding_model}"
        )
    if args.per_question:
        for r in reports:
            for item in r.per_query:
                print(json.dumps({"mode": r.mode, **item}), file=sys.stderr)
    return 0
