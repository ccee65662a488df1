"""``supportbot eval-duplicates``: the pool, the metrics, the command, and thread ranking."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.corpus.documents import Chunk, Document
from bot.corpus.past_answers import PastAnswer, to_document
from bot.errors import ConfigError
from bot.evaluation.duplicates import (
    DISTRACTOR_PREFIX,
    Distractor,
    DuplicatePair,
    build_pool_index,
    evaluate_duplicates,
    load_distractors,
    load_duplicates,
    pool_documents,
    pool_threads,
    same_question,
)
from bot.retrieval.index import load_index
from bot.retrieval.search import SearchParams, search
from index_builder.chunking import chunk_documents
from index_builder.publish import set_current, write_version


def pair(n: int, query: str, title: str, body: str = "", answer: str = "") -> DuplicatePair:
    return DuplicatePair(
        id=f"d{n}",
        query=query,
        original_title=title,
        original_body=body,
        original_answer=answer,
        original_url=f"https://example.org/issues/{n}",
        query_url=f"https://example.org/issues/{100 + n}",
    )


PAIRS = [
    pair(
        1,
        "Stop training when val loss stops improving\nMy model overfits after epoch 5.",
        "Early stopping on validation loss?",
        "How do I end training once val_loss no longer goes down?",
        "Use keras.callbacks.EarlyStopping(monitor='val_loss', patience=3).",
    ),
    pair(2, "How do I save a model to one file?", "Saving the whole model", "", ""),
]


# --- the pool ----------------------------------------------------------------------------------


def test_pool_keys_originals_and_unanswered_distractors() -> None:
    distractors = [
        # the first query again, excerpted differently: not a distractor
        Distractor(
            "q1",
            "Stop training when val loss stops improving\nMy model overfits after epoch 5 or so.",
        ),
        # the second query's own thread (by url): not a distractor either
        Distractor("q2", "Saving models\nsomething else", url="https://example.org/issues/102"),
        # exactly the second query: skipped
        Distractor("q3", "  How do I save a model   to one file? "),
        Distractor("q4", "GPU out of memory\nTraining crashes with OOM on a 8 GB card."),
        Distractor("q5", "Early stopping on validation loss?"),  # the original's title
    ]
    threads = pool_threads(PAIRS, distractors)
    keys = [t.key for t in threads]
    assert keys == [
        "https://example.org/issues/1",
        "https://example.org/issues/2",
        f"{DISTRACTOR_PREFIX}q4",
        f"{DISTRACTOR_PREFIX}q5",
    ]
    by_key = {t.key: t for t in threads}
    original = by_key["https://example.org/issues/1"]
    assert original.url == original.key and original.title == "Early stopping on validation loss?"
    assert original.answer.startswith("Use keras.callbacks.EarlyStopping")
    q4 = by_key[f"{DISTRACTOR_PREFIX}q4"]
    assert (q4.title, q4.question, q4.answer) == (
        "GPU out of memory",
        "Training crashes with OOM on a 8 GB card.",
        "",
    )
    # A title-only question is asked by its title: its document still has a question chunk.
    docs = {d.doc_id: d for d in pool_documents(threads)}
    assert [d.doc_id for d in pool_documents(threads)] == sorted(docs)
    for doc_id in ("https://example.org/issues/2", f"{DISTRACTOR_PREFIX}q5"):
        chunks = chunk_documents([docs[doc_id]])
        assert len(chunks) == 1 and "Answer" not in chunks[0].section
    answered = chunk_documents([docs["https://example.org/issues/1"]])
    assert [c.section.split(" > ")[-1] for c in answered] == [
        "Early stopping on validation loss?",
        "Answer",
    ]
    assert all(d.kind == "thread" for d in docs.values())


def test_two_queries_with_one_original_share_one_thread() -> None:
    twin = DuplicatePair("d9", "Another wording", "t", "b", "a", PAIRS[0].original_url)
    threads = pool_threads([PAIRS[0], twin])
    assert [t.key for t in threads] == [PAIRS[0].original_url]


def test_same_question() -> None:
    assert same_question("A title\nsome body text", "a  TITLE\nsome body text")
    assert same_question("A title\none two three four", "A title\none two three four five")
    assert not same_question("A title\none two three", "A title\nsix seven eight nine")
    assert not same_question("Other title\none two three", "A title\none two three")


def test_load_files(tmp_path: Path) -> None:
    dupes = tmp_path / "d.jsonl"
    dupes.write_text(
        json.dumps(
            {
                "id": "x",
                "query": "q?",
                "query_url": "u0",
                "original_title": "t",
                "original_body": "b",
                "original_answer": None,
                "original_url": "u1",
            }
        )
        + "\n\n"
    )
    assert load_duplicates(dupes) == [DuplicatePair("x", "q?", "t", "b", "", "u1", "u0")]
    dupes.write_text('{"id": "x", "query": "q?", "original_title": "t"}\n')
    with pytest.raises(ConfigError, match=r"d\.jsonl:1"):
        load_duplicates(dupes)
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "k1", "question": "Q one", "source_url": "s1", "relevant": []}) + "\n"
    )
    assert load_distractors(questions) == [Distractor("k1", "Q one", "s1")]


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    pairs = [pair(n, f"query {n}", f"title {n}") for n in range(1, 5)]
    url = {p.query: p.original_url for p in pairs}
    filler = [f"other-{i}" for i in range(20)]
    places = {"query 1": 1, "query 2": 3, "query 3": 7, "query 4": 11}  # 11: past the top 10

    def ask(query: str) -> list[str]:
        ranked = list(filler)
        ranked.insert(places[query] - 1, url[query])
        return ranked

    report = evaluate_duplicates(pairs, ask, mode="hybrid", pool=24)
    assert report.n == 4
    assert report.recall_at_1 == pytest.approx(1 / 4)
    assert report.recall_at_5 == pytest.approx(2 / 4)
    assert report.mrr_at_10 == pytest.approx((1 + 1 / 3 + 1 / 7 + 0) / 4)
    assert [row["rank"] for row in report.per_query] == [1, 3, 7, None]
    assert set(report.to_json()) >= {"n", "recall@1", "recall@5", "mrr@10"}
    empty = evaluate_duplicates([], ask, mode="dense")
    assert (empty.n, empty.recall_at_1, empty.mrr_at_10) == (0, 0.0, 0.0)


# --- the command, end to end -------------------------------------------------------------------

CLI_PAIRS = [
    {
        "id": "c1",
        "query": "How can I stop training once the validation loss stops getting better?",
        "original_title": "Stop training when val_loss stops improving",
        "original_body": "Is there a way to end model.fit early when validation loss plateaus?",
        "original_answer": "Use the EarlyStopping callback with monitor='val_loss'.",
        "original_url": "https://example.org/issues/1",
    },
    {
        "id": "c2",
        "query": "Saving a trained Keras model to a single file and loading it back",
        "original_title": "How to save and load a whole model?",
        "original_body": "I want to store architecture and weights together in one file.",
        "original_answer": "model.save('model.keras') and keras.models.load_model.",
        "original_url": "https://example.org/issues/2",
    },
    {
        "id": "c3",
        "query": "CUDA out of memory error when training a big convnet on my GPU",
        "original_title": "GPU runs out of memory during training",
        "original_body": "ResourceExhaustedError: OOM when allocating tensor on the GPU.",
        "original_answer": "",
        "original_url": "https://example.org/issues/3",
    },
]
CLI_DISTRACTORS = [
    "How do I freeze layers for transfer learning?\nI want to fine-tune only the top layers.",
    "Tokenizing text for an LSTM\nWhich layer turns strings into integer ids?",
    "Plotting the model architecture\nplot_model needs graphviz, how do I install it?",
    "Custom loss with extra arguments\nHow can my loss function take a weight parameter?",
    # the first query itself, with a title line: left out of the pool
    "How can I stop training once the validation loss stops getting better?\nThanks!",
]


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update({"SUPPORTBOT_DATA_DIR": str(data_dir), "SUPPORTBOT_DEVICE": "cpu"})
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_cli_end_to_end(tmp_path: Path) -> None:
    dupes = tmp_path / "dupes.jsonl"
    dupes.write_text("".join(json.dumps(row) + "\n" for row in CLI_PAIRS))
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": q, "relevant": []}) + "\n"
            for i, q in enumerate(CLI_DISTRACTORS)
        )
    )
    data_dir = tmp_path / "data"  # no index, no database: the command needs neither
    out = run_cli(
        "eval-duplicates", str(dupes), "--distractors", str(questions), "--json", data_dir=data_dir
    ).stdout
    report = json.loads(out)
    assert set(report) >= {"n", "recall@1", "recall@5", "mrr@10"}
    assert report["n"] == 3 and report["pool"] == 3 + 4
    assert report["recall@1"] == report["recall@5"] == report["mrr@10"] == 1.0
    every = json.loads(
        run_cli(
            "eval-duplicates",
            str(dupes),
            "--distractors",
            str(questions),
            "--mode",
            "all",
            "--json",
            data_dir=data_dir,
        ).stdout
    )
    assert [r["mode"] for r in every] == ["hybrid", "dense", "lexical"]
    assert all(r["n"] == 3 and 0.0 <= r["mrr@10"] <= 1.0 for r in every)
    table = run_cli("eval-duplicates", str(dupes), data_dir=data_dir).stdout
    assert "MRR@10" in table and "pool of 3 threads" in table
    assert not data_dir.exists()


# --- thread ranking in search ------------------------------------------------------------------

QUESTION = (
    "Model.predict leaks memory in a loop\n"
    "Calling model.predict repeatedly inside a while loop keeps increasing memory usage."
)


def thread(key: str, question: str, answer: str, title: str | None = None) -> PastAnswer:
    return PastAnswer(key=key, question=question, answer=answer, url=key, title=title)


def test_answered_near_duplicate_outranks_unanswered_copy(encoder: object, tmp_path: Path) -> None:
    from bot.retrieval.search import Retriever

    title, body = QUESTION.split("\n")
    docs = pool_documents(
        [
            thread(
                "https://example.org/answered",
                body,
                "Call the model directly, model(x, training=False), or clear the session: "
                "predict builds a new tf.function each time you call it in a loop.",
                title,
            ),
            thread("distractor:copy", body, "", title),  # same question text, no answer
            thread("distractor:other", "How do I plot training curves from History?", "", None),
        ]
    )
    index = build_pool_index(docs, encoder, tmp_path / "indexes")  # type: ignore[arg-type]
    retriever = Retriever(index, encoder)  # type: ignore[arg-type]
    query = "memory leak when calling model.predict in a loop, memory keeps growing"
    for mode in ("hybrid", "dense", "lexical"):
        hits = retriever.search(query, mode=mode, k=3).hits  # type: ignore[arg-type]
        assert [h.doc_id for h in hits[:2]] == ["https://example.org/answered", "distractor:copy"]
    top = retriever.search(query, mode="dense", k=2).hits
    # a thread's reported cosine is its question chunk's, the same for both copies
    assert top[0].dense == pytest.approx(top[1].dense, abs=1e-5)
    assert "Answer" not in top[0].section


def _unit(*xs: float) -> list[float]:
    v = np.asarray(xs, dtype=np.float32)
    return list(v / np.linalg.norm(v))


def test_threads_keep_their_places_and_fill_them_by_question_plus_answer(tmp_path: Path) -> None:
    """Dense mode on hand-made vectors (the query is the first axis, so cosine = 1st coordinate).

    Places among pages: question + second_chunk_weight (0.1) × answer, like a page's best +
    0.1 × second; the threads' places go in order of question + thread_answer_weight × answer.
    """
    docs = [
        to_document(thread("t-answered", "the question", "the answer", "Same title")),
        to_document(thread("t-unanswered", "the question, asked again", "", "Same title")),
        Document("page", "A page", "https://example.org/page", "keras-io", "v", "# A page\n\nx"),
    ]
    chunks = chunk_documents(docs)
    assert [c.doc_id for c in chunks] == ["t-answered", "t-answered", "t-unanswered", "page"]
    vectors = np.asarray(
        [_unit(0.9, 0, 0.436), _unit(0.5, 0.866, 0), _unit(0.92, 0.39, 0), _unit(0.93, 0, 0.37)],
        dtype=np.float32,
    )
    cos = vectors[:, 0]  # answered question, answered answer, unanswered question, page
    root = tmp_path / "indexes"
    write_version(
        root,
        "v1",
        documents=docs,
        chunks=chunks,
        vectors=vectors,
        manifest={"format": 1, "model": "test-model"},
        approximate_above=100,
    )
    set_current(root, "v1")
    index = load_index(root)
    q = np.asarray([1, 0, 0], dtype=np.float32)
    places = sorted([cos[0] + 0.1 * cos[1], cos[2], cos[3]], reverse=True)
    assert places == [cos[0] + 0.1 * cos[1], cos[3], cos[2]]  # thread, page, thread
    for weight, order in (
        (0.0, ["t-unanswered", "page", "t-answered"]),  # by question alone: 0.92 > 0.90
        (0.3, ["t-answered", "page", "t-unanswered"]),  # 0.90 + 0.3 × 0.5 > 0.92
    ):
        p = SearchParams(thread_answer_weight=weight, second_chunk_weight=0.1)
        hits = search(index, "x", q, mode="dense", k=3, params=p).hits
        assert [h.doc_id for h in hits] == order
        assert [h.score for h in hits] == pytest.approx(places, abs=1e-5)
        by_id = {h.doc_id: h for h in hits}
        assert by_id["t-answered"].dense == pytest.approx(cos[0], abs=1e-5)  # its question's
        assert "Answer" not in by_id["t-answered"].section


def test_near_duplicate_thread_outranks_a_doc_page_a_weak_match_does_not(
    encoder: object, tmp_path: Path
) -> None:
    from bot.retrieval.search import Retriever

    page_text = (
        "# Callbacks API\n\nA callback is an object that can perform actions at various stages "
        "of training (at the start or end of an epoch, before or after a batch).\n\n"
        "## EarlyStopping\n\nStop training when a monitored metric has stopped improving. "
        "Arguments: monitor, min_delta, patience, restore_best_weights.\n"
    )
    page = Document(
        "api/callbacks",
        "Callbacks API",
        "https://keras.io/api/callbacks/",
        "keras-io",
        "v",
        page_text,
    )
    past = to_document(
        thread(
            "https://example.org/issues/7",
            "My model keeps training for all epochs even when val_loss has not improved for a "
            "while. How do I stop training automatically when the validation loss stops "
            "improving?",
            "Pass callbacks=[keras.callbacks.EarlyStopping(monitor='val_loss', patience=5)].",
            "Stop training when validation loss stops improving",
        )
    )
    chunks: list[Chunk] = chunk_documents([page, past])
    vectors = encoder.encode([c.text for c in chunks])  # type: ignore[attr-defined]
    root = tmp_path / "indexes"
    write_version(
        root,
        "v1",
        documents=[page, past],
        chunks=chunks,
        vectors=vectors,
        manifest={"format": 1, "model": encoder.name},  # type: ignore[attr-defined]
        approximate_above=100,
    )
    set_current(root, "v1")
    retriever = Retriever(load_index(root), encoder)  # type: ignore[arg-type]
    near = "How can I automatically stop training when the validation loss stops improving?"
    weak = "What arguments does a callback get at the end of an epoch during training?"
    assert retriever.search(near, k=2).hits[0].doc_id == "https://example.org/issues/7"
    assert retriever.search(weak, k=2).hits[0].doc_id == "api/callbacks"


@pytest.mark.parametrize(("question_cosine", "thread_first"), [(0.8, True), (0.6, False)])
def test_near_duplicate_bonus_breaks_a_split_decision(
    tmp_path: Path, question_cosine: float, thread_first: bool
) -> None:
    """Page first in dense, thread first in lexical: a tie that the page (lower row) wins,
    unless the thread's question cosine reaches ``thread_bonus_cosine`` (0.7)."""
    page = Document(
        "page", "Memory", "https://example.org/page", "keras-io", "v", "# Memory\n\nOn memory.\n"
    )
    past = to_document(
        thread(
            "https://example.org/issues/8",
            "predict leaks memory in a loop; predict memory leak",
            "clear the session",
            "predict memory leak",
        )
    )
    chunks = chunk_documents([page, past])
    assert [c.doc_id for c in chunks] == ["page", past.doc_id, past.doc_id]
    s = question_cosine
    vectors = np.asarray(
        [_unit(0.95, math.sqrt(1 - 0.95**2), 0), _unit(s, 0, math.sqrt(1 - s**2)), _unit(0, 0, 1)],
        dtype=np.float32,
    )
    root = tmp_path / "indexes"
    write_version(
        root,
        "v1",
        documents=[page, past],
        chunks=chunks,
        vectors=vectors,
        manifest={"format": 1, "model": "test-model"},
        approximate_above=100,
    )
    set_current(root, "v1")
    index = load_index(root)
    q = np.asarray([1, 0, 0], dtype=np.float32)
    params = SearchParams(thread_answer_weight=0.0)
    dense = search(index, "predict memory leak", q, mode="dense", k=2, params=params).hits
    lexical = search(index, "predict memory leak", q, mode="lexical", k=2, params=params).hits
    assert [h.doc_id for h in dense] == ["page", past.doc_id]
    assert lexical[0].doc_id == past.doc_id
    hybrid = search(index, "predict memory leak", q, k=2, params=params).hits
    assert (hybrid[0].doc_id == past.doc_id) is thread_first
    plain = search(index, "predict memory leak", q, k=2, params=replace(params, thread_bonus=0))
    assert plain.hits[0].doc_id == "page"
