"""detect_backend on question-style text; prefer_backend_guides against a brute-force oracle."""

from __future__ import annotations

import itertools
import random

import pytest

from bot.retrieval.backends import (
    BACKENDS,
    Backend,
    detect_backend,
    guide_backend,
    prefer_backend_guides,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I switched to the JAX backend and now fit() is slow", "jax"),
        ('import os\nos.environ["KERAS_BACKEND"] = "torch"\nimport keras', "torch"),
        ("KERAS_BACKEND=jax python train.py", "jax"),
        ("os.environ.setdefault('KERAS_BACKEND', 'tensorflow')", "tensorflow"),
        ('~/.keras/keras.json: {"floatx": "float32", "backend": "jax"}', "jax"),
        ("Using TensorFlow backend.\nEpoch 1/10", "tensorflow"),
        ("How do I set the backend to PyTorch?", "torch"),
        ("my Keras backend is torch, GPU not used", "torch"),
        ("I'm on the tf backend now; would jax be faster for LSTMs?", "tensorflow"),
        ("custom train_step with JAX: how do I update the state?", "jax"),
        ("import jax\nimport keras\nx = jax.numpy.ones(3)", "jax"),
        ("I'm running Keras 3 on PyTorch with 2 GPUs", "torch"),
        # chosen beats merely mentioned
        ("KERAS_BACKEND=torch, but the JAX docs say...", "torch"),
    ],
)
def test_detect_backend_named(text: str, expected: Backend | None) -> None:
    assert detect_backend(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "How do I stop training when the validation loss stops improving?",
        "import tensorflow as tf\nmodel = tf.keras.Sequential([tf.keras.layers.Dense(3)])",
        "from tensorflow import keras\nfrom tensorflow.keras.layers import Dense",
        "I upgraded TensorFlow to 2.16 and now Keras 3 is installed",
        "ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)",
        "import torch\nloader = torch.utils.data.DataLoader(ds, batch_size=32)",
        "works on the tensorflow backend but fails on the jax backend",
        "Which backend should I pick?",
        "model.fit(x, y)  # multi-backend keras",
        "I use the jaxtyping package",
    ],
)
def test_detect_backend_stays_quiet(text: str) -> None:
    assert detect_backend(text) is None


def test_guide_backend_ids() -> None:
    assert guide_backend("guides/custom_train_step_in_jax") == (
        "guides/custom_train_step_in_",
        "jax",
    )
    assert guide_backend("guides/distributed_training_with_torch") == (
        "guides/distributed_training_with_",
        "torch",
    )
    assert guide_backend("guides/writing_a_custom_training_loop_in_tensorflow/")[1] == "tensorflow"
    for other in (
        "guides/distributed_training",
        "guides/writing_a_training_loop_from_scratch",
        "keras.layers.Dense",
        "examples/something_in_jax_land",
        "keras.backend.tensorflow",
    ):
        assert guide_backend(other) is None


FAMILIES = (
    "guides/custom_train_step_in_",
    "guides/writing_a_custom_training_loop_in_",
    "guides/distributed_training_with_",
)
POOL = [f + b for f in FAMILIES for b in BACKENDS] + [
    "guides/training_with_built_in_methods",
    "guides/distributed_training",
    "keras.Model.fit",
    "guides/migrating_to_keras_3",
]


def oracle(docs: list[str], backend: Backend) -> list[str]:
    """The one permutation that keeps others in place and each family's places, named first."""
    survivors = []
    for perm in itertools.permutations(docs):
        ok = True
        for old, new in zip(docs, perm, strict=True):
            was, now = guide_backend(old), guide_backend(new)
            # A non-specific page keeps its place; a family keeps its places.
            same = old == new if was is None or now is None else was[0] == now[0]
            ok = ok and same
        if not ok:
            continue
        for family in FAMILIES:
            members = [d for d in perm if d.startswith(family)]
            named = [d for d in members if d.endswith("_" + backend)]
            others = [d for d in members if not d.endswith("_" + backend)]
            original = [d for d in docs if d.startswith(family)]
            if members != named + others or others != [d for d in original if d in others]:
                ok = False
        if ok:
            survivors.append(list(perm))
    assert len(survivors) == 1
    return survivors[0]


def test_prefer_backend_guides_matches_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(150):
        docs = rng.sample(POOL, rng.randint(1, 6))
        scores = sorted((rng.random() for _ in docs), reverse=True)
        backend: Backend = rng.choice(BACKENDS)
        got = prefer_backend_guides(list(zip(docs, scores, strict=True)), backend)
        assert [d for d, _ in got] == oracle(docs, backend)
        assert [s for _, s in got] == scores  # places keep their scores


def test_prefer_backend_guides_example_and_identity() -> None:
    ranked = [
        ("guides/custom_train_step_in_tensorflow", 0.9),
        ("guides/training_with_built_in_methods", 0.8),
        ("guides/custom_train_step_in_torch", 0.7),
        ("guides/custom_train_step_in_jax", 0.6),
    ]
    assert [d for d, _ in prefer_backend_guides(ranked, "jax")] == [
        "guides/custom_train_step_in_jax",
        "guides/training_with_built_in_methods",
        "guides/custom_train_step_in_tensorflow",
        "guides/custom_train_step_in_torch",
    ]
    assert prefer_backend_guides(ranked, None) == ranked
    assert prefer_backend_guides(ranked, "tensorflow") == ranked
    assert prefer_backend_guides([], "torch") == []


def test_prefer_backend_guides_on_index_rows() -> None:
    """Callers holding row numbers pass ``doc_id`` to name them (how search.py would)."""
    ids = {
        3: "guides/distributed_training_with_tensorflow",
        5: "guides/distributed_training_with_torch",
    }
    out = prefer_backend_guides([(3, 2.0), (5, 1.0)], "torch", doc_id=ids.__getitem__)
    assert out == [(5, 2.0), (3, 1.0)]
