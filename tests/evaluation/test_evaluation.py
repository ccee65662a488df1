"""Retrieval metrics against hand-computed values, and the questions file parser."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.evaluation.questions import (
    CurvePoint,
    EvalReport,
    LabelledQuestion,
    evaluate,
    first_hit_rank,
    iter_table,
    load_questions,
    ndcg_at,
)


def q(qid: str, relevant: tuple[str, ...], *, answerable: bool | None = None) -> LabelledQuestion:
    return LabelledQuestion(
        id=qid,
        question=f"question {qid}",
        relevant=relevant,
        answerable=bool(relevant) if answerable is None else answerable,
    )


def filler(n: int, prefix: str = "x") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def asker(
    answers: dict[str, tuple[list[str], float]],
) -> Callable[[str], tuple[list[str], float]]:
    calls: list[str] = []

    def ask(question: str) -> tuple[list[str], float]:
        calls.append(question)
        return answers[question.removeprefix("question ")]

    ask.calls = calls  # type: ignore[attr-defined]
    return ask


# --- ranking helpers -------------------------------------------------------------------------


def test_first_hit_rank() -> None:
    assert first_hit_rank(["a", "b", "c"], ["c", "b"]) == 2
    assert first_hit_rank(["a", "b"], ["z"]) is None
    assert first_hit_rank([], ["a"]) is None
    assert first_hit_rank(["a"], []) is None


def test_ndcg_by_hand() -> None:
    assert ndcg_at(["a", "b"], ["a"]) == 1.0
    assert ndcg_at(["x", "a"], ["a"]) == pytest.approx(1 / math.log2(3))
    # Two relevant documents at ranks 2 and 4; ideal has them at 1 and 2.
    got = ndcg_at(["x", "a", "y", "b"], ["a", "b"])
    assert got == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    # Three relevant, only one retrieved first.
    assert ndcg_at(["a", "x"], ["a", "b", "c"]) == pytest.approx(
        1 / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    )
    assert ndcg_at(["a", "b"], []) == 0.0
    assert ndcg_at([], ["a"]) == 0.0


def test_ndcg_only_counts_the_top_k() -> None:
    ranked = [*filler(10), "a"]
    assert ndcg_at(ranked, ["a"], 10) == 0.0
    assert ndcg_at(ranked, ["a"], 11) == pytest.approx(1 / math.log2(12))
    # More relevant documents than k: the ideal is capped at k.
    assert ndcg_at(["a", "b"], ["a", "b", "c"], 2) == pytest.approx(1.0)


# --- evaluate --------------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    questions = [
        q("q1", ("A",)),  # rank 1
        q("q2", ("B",)),  # rank 3
        q("q3", ("C",)),  # rank 7
        q("q4", ("D",)),  # rank 12: outside the top 10
        q("q5", ("E", "F")),  # F at 2, E at 4
        q("u1", ()),  # unanswerable, quiet
        q("u2", ()),  # unanswerable, confident (bad)
        q("u3", ("G",), answerable=False),  # labelled not answerable: relevant ignored
    ]
    answers = {
        "q1": (["A", *filler(9)], 0.9),
        "q2": (["x1", "x2", "B", "x3"], 0.6),
        "q3": ([*filler(6), "C"], 0.4),
        "q4": ([*filler(11), "D"], 0.3),
        "q5": (["x", "F", "y", "E"], 0.8),
        "u1": (["x"], 0.2),
        "u2": (["x"], 0.9),
        "u3": (["G"], 0.5),  # exactly at the threshold: not quiet
    }
    report = evaluate(questions, asker(answers), mode="hybrid", threshold=0.5)
    assert report.mode == "hybrid"
    assert report.n == 5
    assert report.recall_at_1 == pytest.approx(1 / 5)
    assert report.recall_at_5 == pytest.approx(3 / 5)
    assert report.recall_at_10 == pytest.approx(4 / 5)
    assert report.mrr_at_10 == pytest.approx((1 + 1 / 3 + 1 / 7 + 0 + 1 / 2) / 5)
    ndcg_q5 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert report.ndcg_at_10 == pytest.approx(
        (1.0 + 1 / math.log2(4) + 1 / math.log2(8) + 0.0 + ndcg_q5) / 5
    )
    assert report.n_unanswerable == 3
    assert report.unanswerable_below_threshold == pytest.approx(1 / 3)
    rows = {r["id"]: r for r in report.per_question}
    assert [rows[k]["rank"] for k in ("q1", "q2", "q3", "q4", "q5")] == [1, 3, 7, None, 2]
    assert rows["u1"]["unanswerable"] is True
    assert rows["q2"]["top"] == ["x1", "x2", "B"]
    assert rows["q1"]["confidence"] == 0.9
    # Only q1's top page is right: it outscores 6 of the 7 others and ties u2 (0.9).
    assert report.confidence_auc() == pytest.approx(6.5 / 7)
    at_half = {p.threshold: p for p in report.curve()}[0.5]
    # q1, q2, q5 replied (one right on top, all three right in the top 3); u1 alone quiet.
    assert at_half == CurvePoint(0.5, 3 / 5, 1 / 3, 1.0, 1 / 3)


def test_recall_is_success_at_k_not_fraction_of_relevant() -> None:
    # One of two relevant documents in the top 1 is a full success.
    report = evaluate(
        [q("q", ("A", "B"))], asker({"q": (["A", "x"], 1.0)}), mode="m", threshold=0.5
    )
    assert report.recall_at_1 == 1.0
    assert report.mrr_at_10 == 1.0
    assert report.ndcg_at_10 == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_canonical_maps_labelled_aliases_to_index_ids() -> None:
    aliases = {
        "keras.optimizers.Optimizer": "keras.Optimizer",
        "keras.layers.recurrent.LSTM": "keras.layers.LSTM",
    }

    def canonical(doc_id: str) -> str:
        return aliases.get(doc_id, doc_id)

    questions = [
        q("opt", ("keras.optimizers.Optimizer",)),
        # Both names of one document: one relevant document, not two.
        q("lstm", ("keras.layers.LSTM", "keras.layers.recurrent.LSTM")),
    ]
    answers = {
        "opt": (["x", "keras.Optimizer"], 0.9),
        "lstm": (["keras.layers.LSTM", "x"], 0.9),
    }
    without = evaluate(questions, asker(answers), mode="m", threshold=0.5)
    assert without.recall_at_10 == pytest.approx(1 / 2)
    assert without.ndcg_at_10 == pytest.approx((0 + 1 / (1 + 1 / math.log2(3))) / 2)
    report = evaluate(questions, asker(answers), mode="m", threshold=0.5, canonical=canonical)
    assert report.recall_at_1 == pytest.approx(1 / 2)
    assert report.recall_at_5 == 1.0
    assert report.mrr_at_10 == pytest.approx((1 / 2 + 1) / 2)
    assert report.ndcg_at_10 == pytest.approx((1 / math.log2(3) + 1.0) / 2)


def test_no_questions() -> None:
    report = evaluate([], asker({}), mode="m", threshold=0.5)
    assert (report.n, report.recall_at_1, report.mrr_at_10, report.ndcg_at_10) == (0, 0, 0, 0)
    assert report.n_unanswerable == 0
    assert report.unanswerable_below_threshold is None


def test_only_unanswerable_questions() -> None:
    report = evaluate(
        [q("u1", ()), q("u2", ())],
        asker({"u1": ([], 0.1), "u2": ([], 0.2)}),
        mode="m",
        threshold=0.5,
    )
    assert report.n == 0
    assert report.recall_at_10 == 0.0
    assert report.unanswerable_below_threshold == 1.0


def test_every_question_asked_once() -> None:
    questions = [q("a", ("A",)), q("b", ())]
    ask = asker({"a": (["A"], 1.0), "b": ([], 0.0)})
    evaluate(questions, ask, mode="m", threshold=0.5)
    assert ask.calls == ["question a", "question b"]  # type: ignore[attr-defined]


def test_report_json_and_table() -> None:
    report = EvalReport(
        mode="dense",
        n=3,
        recall_at_1=1 / 3,
        recall_at_5=2 / 3,
        recall_at_10=1.0,
        mrr_at_10=0.5,
        ndcg_at_10=0.123456,
        n_unanswerable=0,
        unanswerable_below_threshold=None,
        replied=2 / 3,
        reply_precision=0.5,
    )
    data = report.to_json()
    assert data == {
        "mode": "dense",
        "n": 3,
        "recall@1": 0.3333,
        "recall@5": 0.6667,
        "recall@10": 1.0,
        "mrr@10": 0.5,
        "ndcg@10": 0.1235,
        "n_unanswerable": 0,
        "unanswerable_below_threshold": None,
        "replied": 0.6667,
        "reply_precision": 0.5,
    }
    table = list(iter_table([report]))
    assert table[0][0] == "mode"
    assert table[1] == [
        "dense",
        "3",
        "0.333",
        "0.667",
        "1.000",
        "0.500",
        "0.123",
        "-",
        "0.67",
        "0.50",
    ]


def test_replied_share_and_precision_at_threshold() -> None:
    questions = [
        LabelledQuestion("a", "qa", ("x",), True),  # confident, right at rank 1
        LabelledQuestion("b", "qb", ("y",), True),  # confident, right only at rank 2
        LabelledQuestion("c", "qc", ("z",), True),  # not confident
        LabelledQuestion("d", "qd", (), False),  # unanswerable, confident: not counted here
    ]
    answers = {
        "qa": (["x", "w"], 0.9),
        "qb": (["w", "y"], 0.7),
        "qc": (["z"], 0.2),
        "qd": (["w"], 0.95),
    }
    report = evaluate(questions, answers.__getitem__, mode="hybrid", threshold=0.6)
    assert report.replied == pytest.approx(2 / 3)
    assert report.reply_precision == pytest.approx(1 / 2)
    assert report.unanswerable_below_threshold == 0.0
    none_replied = evaluate(questions[2:3], answers.__getitem__, mode="hybrid", threshold=0.6)
    assert none_replied.replied == 0.0 and none_replied.reply_precision is None


# --- load_questions --------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_questions(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            json.dumps({"id": "a", "question": "How?", "relevant": ["keras.layers.LSTM"]}),
            "",
            "   ",
            json.dumps({"question": "Why?"}),
            json.dumps(
                {
                    "id": 7,
                    "question": "Huh?",
                    "relevant": ["guides/x"],
                    "answerable_from_docs": False,
                }
            ),
        ],
    )
    assert load_questions(path) == [
        LabelledQuestion("a", "How?", ("keras.layers.LSTM",), True),
        LabelledQuestion("line-4", "Why?", (), False),
        LabelledQuestion("7", "Huh?", ("guides/x",), False),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        json.dumps({"id": "b", "relevant": ["x"]}),  # no question
        json.dumps(["a", "list"]),
        json.dumps("a string"),
        json.dumps({"question": "q", "relevant": 5}),
    ],
    ids=["json", "no-question", "list", "string", "relevant-int"],
)
def test_malformed_line_reports_path_and_line(tmp_path: Path, bad: str) -> None:
    path = write_lines(
        tmp_path / "q.jsonl",
        [json.dumps({"question": "fine"}), "", bad, json.dumps({"question": "also fine"})],
    )
    with pytest.raises(ConfigError) as err:
        load_questions(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ")
    assert "\n" not in message


def test_missing_questions_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_questions(tmp_path / "nope.jsonl")


def test_relevant_given_as_a_string_is_rejected(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.jsonl", [json.dumps({"question": "q", "relevant": "keras.layers.LSTM"})]
    )
    with pytest.raises(ConfigError, match=":1:"):
        load_questions(path)


def test_non_utf8_questions_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question": "caf\xe9"}\n')
    with pytest.raises(ConfigError):
        load_questions(path)
