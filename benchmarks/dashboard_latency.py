"""Dashboard latency: how fast the maintainers' pages answer with a realistic amount of data.

Fills a fresh database (a temporary SQLite file by default) with ``--questions`` questions
asked over the last 60 days in 3 rooms, each with its room event and, in realistic shares,
people's thread replies, the bot's replies (confident and unsure), dashboard posts, votes,
reactions, edits, chatter and triage statuses; texts are templated Keras questions (fixed seed).
Then serves ``build_app(ctx)`` on 127.0.0.1 (aiohttp's TestServer, real HTTP), signs in through
the login form and times, round by round with the order rotating, full GET requests (until the
body is read) of each page, next to ``/healthz`` (the aiohttp stack's floor, same run).

``/insights`` runs twice: without an encoder (doc gaps grouped by identical text) and with the
real ``all-MiniLM-L6-v2`` encoder wired through a one-thread executor as the service does; for
the latter the time that thread is busy per request is reported too, since the same thread
answers the room: it is what one view of the page can add to a question's answering latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import math
import random
import re
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    HelpFormatter,
    add_common_args,
    machine_info,
    machine_markdown,
    markdown_table,
    progress,
    ratio,
    run_main,
    run_started,
    setup,
    summarize,
    write_json,
)

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    from bot.store.database import Database
    from bot.web.context import WebContext

DAYS = 60
BOT = "@keras-bot:gitter.im"
DASHBOARD_USER = "maria"
ROOMS = (("!keras:gitter.im", 0.70), ("!keras-hub:gitter.im", 0.20), ("!keras-jax:gitter.im", 0.10))
# Maintainers: their Matrix ids answer in the room, their dashboard names vote, post, dismiss.
MAINTAINERS = (
    ("@fchollet:gitter.im", "francois"),
    ("@mattdangerw:gitter.im", "matt"),
    ("@divyashreepathihalli:gitter.im", "divya"),
    ("@maria:gitter.im", DASHBOARD_USER),
)
PEOPLE = 600  # distinct askers and helpers
UNSURE_REPLY = (
    "I couldn't find a confident answer to this in the docs, so I've put your question in the "
    "maintainers' queue."
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


# -- question texts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    tasks: tuple[str, ...]  # "... how do I <task>?"
    subjects: tuple[str, ...]  # "<subject> <symptom>"
    symptoms: tuple[str, ...]
    errors: tuple[str, ...]  # last line of a traceback
    code: tuple[str, ...]
    # (doc id, title, url, excerpt) the bot would cite
    sources: tuple[tuple[str, str, str, str], ...]


def _api(path: str, title: str, excerpt: str) -> tuple[str, str, str, str]:
    return (f"keras-io:api/{path}", title, f"https://keras.io/api/{path}/", excerpt)


def _guide(path: str, title: str, excerpt: str) -> tuple[str, str, str, str]:
    return (f"keras-io:guides/{path}", title, f"https://keras.io/guides/{path}/", excerpt)


TOPICS: tuple[Topic, ...] = (
    Topic(
        tasks=(
            "stop training when val_loss stops improving",
            "restore the best weights after early stopping",
            "use EarlyStopping with a custom metric",
        ),
        subjects=("EarlyStopping", "my early stopping callback"),
        symptoms=("never triggers", "stops after the very first epoch"),
        errors=(
            "WARNING: Early stopping conditioned on metric `val_loss` which is not available.",
        ),
        code=(
            "stop = keras.callbacks.EarlyStopping(monitor='val_loss', patience=3)\n"
            "model.fit(x, y, epochs=100, callbacks=[stop])",
        ),
        sources=(
            _api(
                "callbacks/early_stopping",
                "EarlyStopping",
                "Stop training when a monitored metric has stopped improving.",
            ),
            _guide(
                "writing_your_own_callbacks",
                "Writing your own callbacks",
                "A callback is a powerful tool to customize the behavior of a Keras model.",
            ),
        ),
    ),
    Topic(
        tasks=(
            "save and load a model with a custom layer",
            "load a .h5 model in Keras 3",
            "export a model for TF Serving",
        ),
        subjects=("keras.models.load_model", "model.save"),
        symptoms=("fails on my custom layer", "loses the optimizer state"),
        errors=(
            "TypeError: Could not locate class 'MyLayer'. Make sure custom classes are "
            "decorated with `@keras.saving.register_keras_serializable()`.",
            "ValueError: File format not supported: filepath=model. Keras 3 only supports V3 "
            "`.keras` files and legacy H5 format files (`.h5` extension).",
        ),
        code=(
            "model.save('model.keras')\n"
            "restored = keras.models.load_model('model.keras', custom_objects={'MyLayer': "
            "MyLayer})",
        ),
        sources=(
            _api(
                "models/model_saving_apis/model_saving_and_loading",
                "Whole model saving & loading",
                "Saves a model as a .keras file.",
            ),
            _guide(
                "serialization_and_saving",
                "Save, serialize, and export models",
                "A Keras model consists of multiple components: the architecture, the weights...",
            ),
        ),
    ),
    Topic(
        tasks=(
            "write a custom layer with trainable weights",
            "make my custom layer serializable with get_config",
            "build weights lazily in a custom layer",
        ),
        subjects=("my custom layer", "get_config"),
        symptoms=("has no trainable weights", "is not called with the right input shape"),
        errors=(
            "NotImplementedError: Layer MyDense does not have a `get_config()` method implemented.",
        ),
        code=(
            "class MyDense(keras.layers.Layer):\n"
            "    def build(self, input_shape):\n"
            "        self.w = self.add_weight(shape=(input_shape[-1], 32))\n"
            "    def call(self, x):\n"
            "        return x @ self.w",
        ),
        sources=(
            _guide(
                "making_new_layers_and_models_via_subclassing",
                "Making new layers and models via subclassing",
                "The Layer class: the combination of state (weights) and some computation.",
            ),
            _api("layers/base_layer", "Layer class", "This is the class from which all layers "),
        ),
    ),
    Topic(
        tasks=(
            "feed variable-length sequences to an LSTM",
            "stack two LSTM layers",
            "use a bidirectional GRU for text classification",
        ),
        subjects=("my LSTM", "the GRU layer"),
        symptoms=("expects a 3D input", "predicts the same value for every timestep"),
        errors=(
            'ValueError: Input 0 of layer "lstm" is incompatible with the layer: expected '
            "ndim=3, found ndim=2. Full shape received: (None, 100)",
        ),
        code=(
            "model = keras.Sequential([\n"
            "    keras.layers.LSTM(64, return_sequences=True),\n"
            "    keras.layers.LSTM(32),\n"
            "    keras.layers.Dense(1)])",
        ),
        sources=(
            _api("layers/recurrent_layers/lstm", "LSTM layer", "Long Short-Term Memory layer."),
            _guide(
                "working_with_rnns",
                "Working with RNNs",
                "Recurrent neural networks are a class of neural networks for sequence data.",
            ),
        ),
    ),
    Topic(
        tasks=(
            "get the right output shape from Conv2D",
            "use channels_first data with Conv2D",
            "fine-tune a pretrained ResNet50 on my own images",
        ),
        subjects=("Conv2D", "the pretrained backbone"),
        symptoms=("gives a negative dimension size", "overfits after two epochs"),
        errors=(
            "ValueError: Negative dimension size caused by subtracting 3 from 2 for "
            "'conv2d_4/Conv2D'",
        ),
        code=(
            "x = keras.layers.Conv2D(32, 3, activation='relu')(inputs)\n"
            "x = keras.layers.MaxPooling2D()(x)",
        ),
        sources=(
            _api(
                "layers/convolution_layers/convolution2d",
                "Conv2D layer",
                "2D convolution layer. This layer creates a convolution kernel...",
            ),
            _guide(
                "transfer_learning",
                "Transfer learning & fine-tuning",
                "Transfer learning consists of taking features learned on one problem...",
            ),
        ),
    ),
    Topic(
        tasks=(
            "switch the backend to JAX",
            "run the same model on the torch backend",
            "check which backend Keras is using",
        ),
        subjects=("KERAS_BACKEND", "keras.config.backend()"),
        symptoms=("is ignored", "still says tensorflow"),
        errors=(
            "RuntimeError: Keras cannot be imported: KERAS_BACKEND=jaxx is not one of "
            "tensorflow, jax, torch, numpy.",
        ),
        code=("import os\nos.environ['KERAS_BACKEND'] = 'jax'\nimport keras",),
        sources=(
            _guide(
                "keras_3",
                "Getting started with Keras 3",
                "Keras 3 runs on top of JAX, TensorFlow or PyTorch.",
            ),
        ),
    ),
    Topic(
        tasks=(
            "train with mixed precision",
            "use a learning rate schedule with Adam",
            "clip gradients in model.compile",
        ),
        subjects=("mixed_float16", "my learning rate schedule"),
        symptoms=("makes the loss NaN", "is slower than float32"),
        errors=(
            "ValueError: Argument `learning_rate` should be float, or an instance of "
            "LearningRateSchedule",
        ),
        code=(
            "keras.mixed_precision.set_global_policy('mixed_float16')\n"
            "opt = keras.optimizers.Adam(learning_rate=keras.optimizers.schedules."
            "ExponentialDecay(1e-3, 1000, 0.9))",
        ),
        sources=(
            _api(
                "mixed_precision/policy",
                "Mixed precision policy API",
                "A dtype policy for a Keras layer.",
            ),
            _api(
                "optimizers/learning_rate_schedules/exponential_decay",
                "ExponentialDecay",
                "A LearningRateSchedule that uses an exponential decay schedule.",
            ),
        ),
    ),
    Topic(
        tasks=(
            "write a custom train_step",
            "write a training loop from scratch with GradientTape",
            "add a custom loss that uses two outputs",
        ),
        subjects=("my train_step", "the custom loss"),
        symptoms=("is never called", "returns None gradients"),
        errors=("ValueError: No gradients provided for any variable.",),
        code=(
            "class Custom(keras.Model):\n"
            "    def train_step(self, data):\n"
            "        x, y = data\n"
            "        with tf.GradientTape() as tape:\n"
            "            loss = self.compute_loss(y=y, y_pred=self(x, training=True))",
        ),
        sources=(
            _guide(
                "custom_train_step_in_tensorflow",
                "Customizing what happens in fit() with TensorFlow",
                "Override the training step function of the Model class.",
            ),
            _guide(
                "writing_a_custom_training_loop_in_jax",
                "Writing a training loop from scratch in JAX",
                "Keras provides default training and evaluation loops, fit() and evaluate().",
            ),
        ),
    ),
    Topic(
        tasks=(
            "load images from a directory into a dataset",
            "replace ImageDataGenerator in Keras 3",
            "add data augmentation layers",
        ),
        subjects=("image_dataset_from_directory", "ImageDataGenerator"),
        symptoms=("finds 0 files", "is deprecated"),
        errors=(
            "ValueError: No images found in directory data/train. Allowed formats: "
            "('.bmp', '.gif', '.jpeg', '.jpg', '.png')",
        ),
        code=(
            "train = keras.utils.image_dataset_from_directory(\n"
            "    'data/train', image_size=(224, 224), batch_size=32)",
        ),
        sources=(
            _api(
                "data_loading/image",
                "Image data loading",
                "Generates a tf.data.Dataset from image files in a directory.",
            ),
            _api(
                "layers/preprocessing_layers/image_augmentation/random_flip",
                "RandomFlip layer",
                "A preprocessing layer which randomly flips images during training.",
            ),
        ),
    ),
    Topic(
        tasks=(
            "use sparse_categorical_crossentropy with one-hot labels",
            "compute F1 score as a metric",
            "weight classes for an imbalanced dataset",
        ),
        subjects=("the loss", "accuracy"),
        symptoms=("stays at 0.5", "is much lower in evaluate than in fit"),
        errors=(
            "ValueError: Arguments `target` and `output` must have the same rank (ndim). "
            "Received: target.shape=(None, 10), output.shape=(None, 10, 1)",
        ),
        code=(
            "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy',\n"
            "              metrics=['accuracy'])",
        ),
        sources=(
            _api(
                "losses/probabilistic_losses",
                "Probabilistic losses",
                "Computes the crossentropy loss between the labels and predictions.",
            ),
            _api("metrics/classification_metrics", "Classification metrics", "F1Score class."),
        ),
    ),
    Topic(
        tasks=(
            "build a model with two inputs using the functional API",
            "share a layer between two branches",
            "get the output of an intermediate layer",
        ),
        subjects=("my functional model", "model.get_layer"),
        symptoms=("complains about a disconnected graph", "returns the wrong tensor"),
        errors=(
            "ValueError: Graph disconnected: cannot obtain value for tensor KerasTensor "
            'at layer "input_2".',
        ),
        code=(
            "a = keras.Input((32,))\nb = keras.Input((16,))\n"
            "x = keras.layers.concatenate([a, b])\nmodel = keras.Model([a, b], x)",
        ),
        sources=(
            _guide(
                "functional_api",
                "The Functional API",
                "The functional API can handle models with non-linear topology, shared layers...",
            ),
        ),
    ),
    Topic(
        tasks=(
            "tokenize text with TextVectorization",
            "use a pretrained embedding in an Embedding layer",
            "mask padding tokens",
        ),
        subjects=("TextVectorization", "mask_zero"),
        symptoms=("gives a different vocabulary each run", "is ignored by my custom layer"),
        errors=("InvalidArgumentError: indices[3,17] = 20001 is not in [0, 20000)",),
        code=(
            "vectorize = keras.layers.TextVectorization(max_tokens=20000, "
            "output_sequence_length=200)\nvectorize.adapt(texts)",
        ),
        sources=(
            _api(
                "layers/preprocessing_layers/text/text_vectorization",
                "TextVectorization layer",
                "A preprocessing layer which maps text features to integer sequences.",
            ),
            _guide(
                "understanding_masking_and_padding",
                "Understanding masking & padding",
                "Masking is a way to tell sequence-processing layers that some timesteps...",
            ),
        ),
    ),
    Topic(
        tasks=(
            "load a Gemma model with KerasHub",
            "fine-tune BERT from KerasHub on my own data",
            "run a KerasHub model with LoRA",
        ),
        subjects=("keras_hub.models.GemmaCausalLM", "the KerasHub preset"),
        symptoms=("runs out of memory", "downloads the weights every time"),
        errors=("ValueError: Unknown preset identifier 'gemma_2b_enn'.",),
        code=(
            "gemma = keras_hub.models.GemmaCausalLM.from_preset('gemma2_2b_en')\n"
            "gemma.backbone.enable_lora(rank=4)",
        ),
        sources=(
            (
                "keras-io:keras_hub/getting_started",
                "Getting started with KerasHub",
                "https://keras.io/keras_hub/getting_started/",
                "KerasHub is a pretrained modeling library that aims to be simple, flexible...",
            ),
        ),
    ),
    Topic(
        tasks=(
            "train on multiple GPUs",
            "use a tf.data pipeline with model.fit",
            "speed up training with jit_compile",
        ),
        subjects=("model.fit", "my tf.data pipeline"),
        symptoms=("uses only one GPU", "is slower with jit_compile=True"),
        errors=(
            "ValueError: When providing an infinite dataset, you must specify the number "
            "of steps to run (`steps_per_epoch`).",
        ),
        code=(
            "ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(1000).batch(64)"
            ".prefetch(tf.data.AUTOTUNE)\nmodel.fit(ds, epochs=10)",
        ),
        sources=(
            _guide(
                "distributed_training_with_jax",
                "Multi-GPU distributed training with JAX",
                "There are generally two ways to distribute computation across devices.",
            ),
            _api("models/model_training_apis", "Model training APIs", "fit method"),
        ),
    ),
    Topic(
        tasks=(
            "use BatchNormalization correctly during inference",
            "freeze some layers while fine-tuning",
            "reset the random seed so runs are reproducible",
        ),
        subjects=("BatchNormalization", "trainable=False"),
        symptoms=("behaves differently in predict", "has no effect after compile"),
        errors=(
            "UserWarning: The `trainable` attribute was changed after compiling the "
            "model; recompile it for the change to take effect.",
        ),
        code=(
            "base.trainable = False\nx = base(inputs, training=False)\n"
            "keras.utils.set_random_seed(42)",
        ),
        sources=(
            _api(
                "layers/normalization_layers/batch_normalization",
                "BatchNormalization layer",
                "Layer that normalizes its inputs.",
            ),
            _guide(
                "transfer_learning",
                "Transfer learning & fine-tuning",
                "Layers & models have three weight attributes: weights, trainable_weights...",
            ),
        ),
    ),
)

VERSIONS = ("3.3.3", "3.4.1", "3.5.0", "3.6.0", "3.8.0", "3.10.0", "2.15.0")
BACKENDS = ("TensorFlow", "JAX", "PyTorch")
FORMS = (
    "How do I {task}?",
    "how can i {task} in keras {version}",
    "Is there a way to {task}? I'm on Keras {version} with the {backend} backend.",
    "I'm trying to {task} but {subject} {symptom}. What am I missing?",
    "{subject} {symptom} when I run this:\n```python\n{code}\n```\nany idea why?",
    "Getting `{error}` — how do I fix it?",
    'I get this error:\n```\nTraceback (most recent call last):\n  File "train.py", line '
    "{line}, in <module>\n    model.fit(train_ds, epochs={epochs})\n{error}\n```\nKeras "
    "{version}, {backend} backend. Any ideas?",
    "Does anyone know why {subject} {symptom}? Using {backend}.",
    "What's the recommended way to {task} in Keras 3?",
    "Quick question: can I {task} without writing a custom training loop?",
    "{subject} {symptom}. Is this a bug or am I doing something wrong?\n```python\n{code}\n```",
)
GREETINGS = ("", "", "", "Hi, ", "Hey folks, ", "Hello! ", "hi all - ")
ENDINGS = ("", "", "", " Thanks!", " Thanks in advance.", " 🙏", " Any help appreciated.")
HELPER_REPLIES = (
    "Have a look at {url}, it covers exactly this.",
    "You need to {task_fix} first, then it should work.",
    "Which Keras version are you on? This was fixed in {version}.",
    "Can you share the full traceback?",
    "Same problem here with the {backend} backend.",
    "Works for me on {backend}. Did you restart the kernel after changing it?",
    "I think `{subject}` expects a different shape there; print `model.summary()` to check.",
    "Try `keras.utils.set_random_seed(0)` and a smaller batch size to narrow it down.",
)
FOLLOW_UPS = ("thanks, that worked!", "still failing :(", "ah I see, thanks", "ok will try")
CHATTER = (
    "good morning everyone",
    "has anyone tried the new Keras release yet?",
    "release notes: https://github.com/keras-team/keras/releases",
    "thanks!",
    "+1",
    "same here",
    "lol",
    "is there a meeting this week?",
    "I wrote a small blog post about KerasHub LoRA fine-tuning, feedback welcome",
)


def question_text(rng: random.Random, topic: Topic) -> str:
    form = rng.choice(FORMS)
    text = form.format(
        task=rng.choice(topic.tasks),
        subject=rng.choice(topic.subjects),
        symptom=rng.choice(topic.symptoms),
        error=rng.choice(topic.errors),
        code=rng.choice(topic.code),
        version=rng.choice(VERSIONS),
        backend=rng.choice(BACKENDS),
        line=rng.randint(12, 240),
        epochs=rng.choice((5, 10, 20, 50, 100)),
    )
    text = rng.choice(GREETINGS) + text + rng.choice(ENDINGS)
    if rng.random() < 0.12:
        text = text.lower()
    return text


def suggestion_markdown(confidence: float, sources: list[dict[str, Any]], threshold: float) -> str:
    """Shaped like ``compose_reply``'s text (without importing the retrieval stack)."""
    if not sources:
        return "I couldn't find anything in the docs about this; a maintainer will take a look."
    if confidence >= threshold:
        lead = f"This looks covered by **{sources[0]['title']}**:"
    else:
        lead = "I'm not sure the docs answer this; these are the closest pages I found:"
    lines = [lead, ""]
    lines += [f"{n}. [{s['title']}]({s['url']}) — {s['excerpt']}" for n, s in enumerate(sources, 1)]
    return "\n".join([*lines, "", f"Confidence: {confidence:.0%}"])


# -- the data set ----------------------------------------------------------------------------------


@dataclass
class Fill:
    events: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
            return dict(sorted(Counter(str(r[key]) for r in rows).items()))

        return {
            "questions": len(self.questions),
            "room_events": len(self.events),
            "room_events_by_type": count(self.events, "event_type"),
            "replies": len(self.replies),
            "replies_confident": sum(r["body"] != UNSURE_REPLY for r in self.replies),
            "dashboard_posts": len(self.posts),
            "votes": len(self.votes),
            "status": count(self.questions, "status"),
            "rooms": count(self.questions, "room_id"),
            "mentioned": sum(bool(q["mentioned"]) for q in self.questions),
            "text_chars_mean": (
                sum(len(q["text"]) for q in self.questions) / max(1, len(self.questions))
            ),
        }


class Generator:
    """Deterministic for a seed, given ``now``: the same rows, relative to ``now``."""

    def __init__(self, seed: int, now: datetime, threshold: float) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.threshold = threshold
        self.fill = Fill()
        self.people = [f"@{self._name()}:gitter.im" for _ in range(PEOPLE)]
        self._txn = 0

    def _name(self) -> str:
        first = ("alex", "sam", "li", "noor", "jo", "kim", "ana", "raj", "yuki", "ola", "ben")
        return f"{self.rng.choice(first)}{self.rng.randint(1, 99_999)}"

    def _event_id(self) -> str:
        raw = self.rng.getrandbits(256).to_bytes(32, "big")
        return "$" + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _person(self) -> str:
        # A few people ask (and help) much more than the rest.
        return self.people[min(PEOPLE - 1, int(self.rng.paretovariate(1.1)) - 1)]

    def _delay(self, median_s: float, sigma: float = 1.4) -> timedelta:
        return timedelta(seconds=median_s * math.exp(self.rng.gauss(0, sigma)))

    def _add_event(
        self,
        room: str,
        sender: str,
        at: datetime,
        body: str,
        *,
        event_type: str = "m.room.message",
        msgtype: str | None = "m.text",
        rel_type: str | None = None,
        relates_to: str | None = None,
        in_reply_to: str | None = None,
        mentions: tuple[str, ...] = (),
    ) -> str:
        event_id = self._event_id()
        self.fill.events.append(
            {
                "event_id": event_id,
                "room_id": room,
                "sender": sender,
                "origin_ts": int(at.timestamp() * 1000),
                "event_type": event_type,
                "msgtype": msgtype,
                "body": body,
                "formatted_body": None,
                "rel_type": rel_type,
                "relates_to": relates_to,
                "in_reply_to": in_reply_to,
                "mentions": list(mentions),
                "origin": "live",
                "received_at": at + timedelta(milliseconds=300),
                "handled_at": at + timedelta(seconds=1),
                "outcome": None,
            }
        )
        return event_id

    def _txn_id(self, prefix: str) -> str:
        self._txn += 1
        return f"{prefix}-bench-{self._txn}"

    def question(self, asked: datetime) -> None:
        rng = self.rng
        room = rng.choices([r for r, _ in ROOMS], [w for _, w in ROOMS])[0]
        asker = self._person()
        topic = rng.choice(TOPICS)
        text = question_text(rng, topic)
        mentioned = rng.random() < 0.35
        body = f"keras-bot: {text}" if mentioned else text
        qid = self._add_event(room, asker, asked, body, mentions=(BOT,) if mentioned else ())
        queued = asked + timedelta(seconds=rng.uniform(0.5, 3.0))

        has_sources = rng.random() < 0.93
        confidence = min(0.99, max(0.01, rng.betavariate(2.2, 2.0)))
        picked = rng.sample(topic.sources, k=min(len(topic.sources), rng.randint(1, 3)))
        sources = (
            [
                {
                    "doc_id": doc_id,
                    "title": title,
                    "url": url,
                    "section": "",
                    "excerpt": excerpt,
                    "score": round(confidence * rng.uniform(0.8, 1.0), 4),
                    "kind": "api" if "/api/" in url else "guide",
                    "answered_by": None,
                }
                for doc_id, title, url, excerpt in picked
            ]
            if has_sources
            else []
        )
        suggestion = suggestion_markdown(confidence, sources, self.threshold)
        status = "suggested" if sources else "new"
        answered_at: datetime | None = None
        answered_by: str | None = None
        handled_by: str | None = None
        updated = queued

        def happened(at: datetime) -> bool:
            return at < self.now

        # The bot answers in public only when mentioned (the default settings).
        confident = bool(sources) and confidence >= self.threshold
        bot_reply_id: str | None = None
        if mentioned and rng.random() < 0.95:
            sent = queued + timedelta(seconds=rng.uniform(0.3, 2.0))
            reply_body = suggestion if confident else UNSURE_REPLY
            echoed = rng.random() < 0.97
            bot_reply_id = (
                self._add_event(
                    room,
                    BOT,
                    sent,
                    reply_body,
                    rel_type="m.thread",
                    relates_to=qid,
                    in_reply_to=qid,
                )
                if echoed
                else self._event_id()
            )
            self.fill.replies.append(
                {
                    "question_event_id": qid,
                    "room_id": room,
                    "txn_id": self._txn_id("supportbot"),
                    "state": "sent",
                    "reply_event_id": bot_reply_id,
                    "body": reply_body,
                    "formatted_body": f"<p>{reply_body}</p>",
                    "thread_root": qid,
                    "posted_by": "bot",
                    "created_at": queued,
                    "sent_at": sent,
                }
            )
            if confident:
                status, answered_by, answered_at, updated = "answered_bot", "bot", sent, sent
            else:
                status = "new"
            # Reactions on the bot's confident reply.
            if confident and rng.random() < 0.15:
                self._add_event(
                    room,
                    self._person(),
                    sent + self._delay(600),
                    rng.choice(("👍", "👍", "👍️", "👎")),
                    event_type="m.reaction",
                    msgtype=None,
                    rel_type="m.annotation",
                    relates_to=bot_reply_id,
                )

        # An edit by the asker.
        if rng.random() < 0.03:
            self._add_event(
                room,
                asker,
                asked + self._delay(60),
                "* " + text + " (edited)",
                rel_type="m.replace",
                relates_to=qid,
            )

        # People answer in the thread (or as a Matrix reply), the asker follows up.
        if rng.random() < (0.35 if status == "answered_bot" else 0.6):
            at = asked + self._delay(1500, 1.8)
            for n in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                maintainer = rng.random() < 0.3
                helper = rng.choice(MAINTAINERS)[0] if maintainer else self._person()
                if helper == asker:
                    continue
                if not happened(at):
                    break
                reply = rng.choice(HELPER_REPLIES).format(
                    url=rng.choice(topic.sources)[2],
                    task_fix=rng.choice(topic.tasks),
                    version=rng.choice(VERSIONS),
                    backend=rng.choice(BACKENDS),
                    subject=rng.choice(topic.subjects),
                )
                in_thread = rng.random() < 0.75
                self._add_event(
                    room,
                    helper,
                    at,
                    reply,
                    rel_type="m.thread" if in_thread else None,
                    relates_to=qid if in_thread else None,
                    in_reply_to=qid,
                )
                if status in ("new", "suggested"):
                    status, answered_by, answered_at, updated = "answered_person", helper, at, at
                if n == 0 and rng.random() < 0.5:
                    follow = at + self._delay(300)
                    if happened(follow):
                        self._add_event(
                            room,
                            asker,
                            follow,
                            rng.choice(FOLLOW_UPS),
                            rel_type="m.thread",
                            relates_to=qid,
                            in_reply_to=None,
                        )
                at += self._delay(900)

        # Maintainers on the dashboard: votes, posts, marking answered, dismissing.
        act = queued + self._delay(3 * 3600, 1.5)
        if sources and rng.random() < 0.12 and happened(act):
            for _, name in rng.sample(MAINTAINERS, k=rng.choice((1, 1, 2))):
                self.fill.votes.append(
                    {
                        "question_event_id": qid,
                        "user_name": name,
                        "vote": 1 if rng.random() < 0.65 else -1,
                        "created_at": act,
                    }
                )
        if status in ("new", "suggested") and happened(act):
            roll = rng.random()
            maintainer_id, name = rng.choice(MAINTAINERS)
            if roll < 0.08:
                body_ = (
                    suggestion.replace("This looks covered by", "I think this is covered by")
                    if sources and rng.random() < 0.5
                    else f"@{asker[1:].split(':')[0]} you need to "
                    f"{rng.choice(topic.tasks)}; see {rng.choice(topic.sources)[2]}"
                )
                state = "sent" if rng.random() < 0.96 else rng.choice(("pending", "rejected"))
                reply_id = None
                if state == "sent":
                    reply_id = self._add_event(
                        room,
                        BOT,
                        act,
                        body_,
                        rel_type="m.thread",
                        relates_to=qid,
                        in_reply_to=qid,
                    )
                    status, answered_by, answered_at, updated = "answered_person", name, act, act
                self.fill.posts.append(
                    {
                        "question_event_id": qid,
                        "room_id": room,
                        "posted_by": name,
                        "body": body_,
                        "txn_id": self._txn_id("supportbot-post"),
                        "state": state,
                        "reply_event_id": reply_id,
                        "created_at": act,
                        "sent_at": act if state == "sent" else None,
                    }
                )
            elif roll < 0.12:
                status, handled_by, updated = "answered_person", name, act
                answered_by, answered_at = maintainer_id, act
            elif roll < 0.24:
                status, handled_by, updated = "dismissed", name, act

        self.fill.questions.append(
            {
                "event_id": qid,
                "room_id": room,
                "asker": asker,
                "text": text,
                "mentioned": mentioned,
                "status": status,
                "confidence": round(confidence, 4),
                "suggestion": suggestion,
                "sources": sources,
                "index_version": "v-bench",
                "created_at": queued,
                "updated_at": updated,
                "answered_at": answered_at,
                "answered_by": answered_by,
                "handled_by": handled_by,
            }
        )

        # Room chatter that is not a question (about one message per question).
        for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 2))):
            at = asked + self._delay(1800, 2.0)
            if happened(at):
                self._add_event(room, self._person(), at, rng.choice(CHATTER))


def generate(n: int, seed: int, now: datetime, threshold: float) -> Fill:
    gen = Generator(seed, now, threshold)
    start = now - timedelta(days=DAYS)
    span = (now - timedelta(minutes=2) - start).total_seconds()
    # Spread over the 60 days, a growing room: the rate doubles from the first day to the
    # last (density 1 + x on [0, 1], sampled by inverting its distribution function).
    offsets = sorted(span * (math.sqrt(1 + 3 * gen.rng.random()) - 1) for _ in range(n))
    for offset in offsets:
        gen.question(start + timedelta(seconds=offset))
    return gen.fill


def store(db: Database, fill: Fill) -> None:
    """Bulk insert in one transaction (the schema is already there). On PostgreSQL, ANALYZE
    afterwards, as autovacuum would have done long before a real database got this big."""
    from sqlalchemy import insert

    from bot.store.models import (
        DashboardPostRow,
        QuestionRow,
        ReplyRow,
        RoomEventRow,
        SuggestionVoteRow,
    )

    tables: list[tuple[Any, list[dict[str, Any]]]] = [
        (RoomEventRow, fill.events),
        (QuestionRow, fill.questions),
        (ReplyRow, fill.replies),
        (DashboardPostRow, fill.posts),
        (SuggestionVoteRow, fill.votes),
    ]
    with db.session() as s:
        for model, rows in tables:
            for i in range(0, len(rows), 2000):
                s.execute(insert(model), rows[i : i + 2000])
    if db.backend == "postgresql":
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


# -- the web side ----------------------------------------------------------------------------------


@dataclass
class CpuWorker:
    """The service's one CPU worker thread (``run_cpu`` as in ``DashboardPort``), with
    the time each job keeps that thread busy."""

    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer")
    )
    busy_s: list[float] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    async def run_cpu(self, fn: Callable[[], Any]) -> Any:
        def timed() -> Any:
            self.threads.add(threading.get_ident())
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                self.busy_s.append(time.perf_counter() - t0)

        return await asyncio.get_running_loop().run_in_executor(self.executor, timed)


async def sign_in(client: TestClient[Any, Any], password: str) -> None:
    page = await client.get("/login")
    found = _CSRF.search(await page.text())
    if found is None:
        raise SystemExit("error: no csrf_token field on the login page")
    form = {"csrf_token": found.group(1), "name": DASHBOARD_USER, "password": password}
    response = await client.post("/login", data=form, allow_redirects=False)
    if response.status != 303:
        raise SystemExit(f"error: signing in answered {response.status}")
    check = await client.get("/queue", allow_redirects=False)
    if check.status != 200:
        raise SystemExit(f"error: /queue after signing in answered {check.status}")


@dataclass
class Page:
    key: str
    label: str
    paths: Callable[[int], str]  # request number -> path
    encoder: bool = False
    samples_s: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


async def fetch(client: TestClient[Any, Any], page: Page, i: int, *, timed: bool) -> None:
    path = page.paths(i)
    t0 = time.perf_counter()
    response = await client.get(path, allow_redirects=False)
    body = await response.read()
    elapsed = time.perf_counter() - t0
    if response.status != 200:
        page.bad.append(f"{path}: {response.status}")
    if timed:
        page.samples_s.append(elapsed)
        page.sizes.append(len(body))


async def measure(
    args: argparse.Namespace,
    password: str,
    ctx: WebContext,
    ctx_encoder: WebContext | None,
    pages: list[Page],
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web.app import build_app

    plain = [p for p in pages if not p.encoder]
    encoded = [p for p in pages if p.encoder]
    async with TestClient(TestServer(build_app(ctx), host="127.0.0.1")) as client:
        await sign_in(client, password)
        enc_client: TestClient[Any, Any] | None = None
        if ctx_encoder is not None:
            enc_client = TestClient(TestServer(build_app(ctx_encoder), host="127.0.0.1"))
            await enc_client.start_server()
        try:
            if enc_client is not None:
                await sign_in(enc_client, password)
            progress(args, f"warm-up: {args.warmup} rounds")
            for w in range(args.warmup):
                for page in plain:
                    await fetch(client, page, -1 - w, timed=False)
            if enc_client is not None and args.warmup:
                for page in encoded:
                    await fetch(enc_client, page, -1, timed=False)
            # Round by round, the order rotating; the few encoder requests spread over the run.
            progress(args, f"{args.requests} rounds of {len(plain)} pages")
            enc_done = 0
            for i in range(args.requests):
                shift = i % len(plain)
                for page in plain[shift:] + plain[:shift]:
                    await fetch(client, page, i, timed=True)
                due = (i + 1) * args.encoder_requests // args.requests
                while enc_client is not None and enc_done < due:
                    for page in encoded:
                        await fetch(enc_client, page, enc_done, timed=True)
                    enc_done += 1
                    progress(args, f"round {i + 1}: /insights with the encoder #{enc_done}")
        finally:
            if enc_client is not None:
                await enc_client.close()


@contextmanager
def database(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, str]]:
    """(SQLAlchemy URL, what to call it in the report)."""
    if args.database_url:
        yield args.database_url, "given database (" + args.database_url.split(":", 1)[0] + ")"
        return
    if args.postgres:
        from tests.postgres_server import PostgresServer, postgres_skip_reason

        reason = postgres_skip_reason()
        if reason:
            raise SystemExit(f"error: {reason}")
        with PostgresServer(work / "postgres") as server:
            yield server.url, "PostgreSQL (throw-away server on 127.0.0.1)"
        return
    yield f"sqlite:///{work / 'dashboard.db'}", "SQLite (temporary file)"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    from bot.metrics import Metrics
    from bot.settings import load_settings
    from bot.store.auth_store import AuthStore
    from bot.store.database import Database
    from bot.store.models import QuestionRow
    from bot.store.room_store import RoomStore
    from bot.web.context import WebContext
    from bot.web.passwords import hash_password

    worker = CpuWorker()
    embedded: list[int] = []  # texts per encode call
    with (
        tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp,
        database(args, Path(tmp)) as (url, backend),
    ):
        settings = load_settings(
            data_dir=Path(tmp) / "data", matrix_user_id=BOT, device=args.device, database_url=url
        )
        db = Database(url)
        try:
            db.create_schema()
            with db.session() as s:
                existing = s.scalar(select(func.count()).select_from(QuestionRow))
            if existing:
                raise SystemExit(
                    f"error: the database already holds {existing} questions; give an empty one"
                )
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            fill = generate(args.questions, args.seed, now, settings.reply_threshold)
            generate_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            store(db, fill)
            store_s = time.perf_counter() - t0
            password = secrets.token_urlsafe(16)
            AuthStore(db).add_user(DASHBOARD_USER, hash_password(password))
            progress(args, f"stored {len(fill.events)} events in {store_s:.1f} s ({backend})")

            ctx = WebContext(
                settings=settings,
                db=db,
                store=RoomStore(db),
                metrics=Metrics(),
                ready=lambda: (True, "benchmark"),
            )
            encoder_info: dict[str, Any] | None = None
            ctx_encoder = None
            if args.encoder_requests:
                from bot.retrieval.encoder import Encoder

                t0 = time.perf_counter()
                encoder = Encoder(args.model, device=args.device)
                encoder_info = {
                    "model": args.model,
                    "device": encoder.device,
                    "batch_size": encoder.batch_size,
                    "load_s": time.perf_counter() - t0,
                }

                def encode(texts: list[str]) -> Any:
                    embedded.append(len(texts))
                    return encoder.encode(texts)

                ctx_encoder = replace(ctx, encode=encode, run_cpu=worker.run_cpu)

            pages = make_pages(args, fill, now)
            asyncio.run(measure(args, password, ctx, ctx_encoder, pages))
        finally:
            db.close()
            worker.executor.shutdown(wait=True)

    # The warm-up view's job, if any, came first: keep the timed ones.
    n_enc = args.encoder_requests
    busy = worker.busy_s[-n_enc:] if n_enc else []
    baseline = summarize(pages[0].samples_s)
    results: dict[str, Any] = {}
    for page in pages:
        stats = summarize(page.samples_s)
        results[page.key] = {
            "label": page.label,
            **stats,
            "p50_over_healthz_p50": ratio(stats["p50_ms"], baseline["p50_ms"]),
            "bytes_mean": sum(page.sizes) / len(page.sizes) if page.sizes else 0,
            "not_200": page.bad,
        }
    return {
        "benchmark": "dashboard_latency",
        "setup": {
            "database": backend,
            "questions_requested": args.questions,
            "days": DAYS,
            "seed": args.seed,
            "requests": args.requests,
            "encoder_requests": n_enc,
            "warmup_rounds": args.warmup,
            "generate_s": generate_s,
            "store_s": store_s,
            "data": fill.summary(),
            "encoder": encoder_info,
        },
        "results": results,
        "cpu_worker": {
            "threads_used": len(worker.threads),
            "texts_per_insights_request": embedded[-n_enc:] if n_enc else [],
            "busy_per_insights_request": summarize(busy),
            "busy_samples_ms": [s * 1000 for s in busy],
        },
        "samples_ms": {p.key: [s * 1000 for s in p.samples_s] for p in pages},
    }


def make_pages(args: argparse.Namespace, fill: Fill, now: datetime) -> list[Page]:
    from bot.store.dashboard_store import OPEN_STATUSES
    from bot.web.dashboard import PAGE_SIZE

    rng = random.Random(args.seed + 1)
    ids = [q["event_id"] for q in fill.questions]
    picks = [rng.choice(ids) for _ in range(max(args.requests, 1))]
    warm = [rng.choice(ids) for _ in range(max(args.warmup, 1))]
    open_newest = sorted(
        (q["created_at"] for q in fill.questions if q["status"] in OPEN_STATUSES), reverse=True
    )
    newest = open_newest[0] if open_newest else now
    tenth = open_newest[min(9, len(open_newest) - 1)] if open_newest else now

    def updates(after: datetime) -> str:
        return "/queue/updates?" + urlencode({"after": after.isoformat()})

    def question(i: int) -> str:
        event_id = picks[i] if i >= 0 else warm[(-i - 1) % len(warm)]
        return "/questions/" + quote(event_id, safe="")

    pages = [
        Page("healthz", "GET /healthz (baseline)", lambda i: "/healthz"),
        Page("queue", "GET /queue (page 1, open)", lambda i: "/queue"),
        Page(
            "queue_all_p100",
            "GET /queue?status=all&page=100"
            + (" (past the end: empty)" if len(ids) <= 99 * PAGE_SIZE else ""),
            lambda i: "/queue?status=all&page=100",
        ),
        # First-time askers (bot/store/newcomers.py): a correlated NOT EXISTS per row read.
        Page("queue_new", "GET /queue?asker=new (first questions)", lambda i: "/queue?asker=new"),
        Page(
            "queue_all_new",
            "GET /queue?status=all&asker=new&page=2",
            lambda i: "/queue?status=all&asker=new&page=2",
        ),
        Page("updates_none", "GET /queue/updates (nothing new)", lambda i: updates(newest)),
        Page(
            "updates_rows",
            f"GET /queue/updates ({min(9, max(0, len(open_newest) - 1))} new rows)",
            lambda i: updates(tenth),
        ),
        Page("question", "GET /questions/<random id>", question),
        Page("insights_text", "GET /insights?days=30, no encoder", lambda i: "/insights?days=30"),
    ]
    if args.encoder_requests:
        pages.append(
            Page(
                "insights_encoder",
                "GET /insights?days=30, encoder",
                lambda i: "/insights?days=30",
                encoder=True,
            )
        )
    return pages


# -- report --------------------------------------------------------------------------------------


def report(data: dict[str, Any]) -> str:
    setup_ = data["setup"]
    d = setup_["data"]
    rows = [
        (
            r["label"],
            r["n"],
            r["p50_ms"],
            r["p99_ms"],
            f"{r['p50_over_healthz_p50']:.1f}x",
            f"{r['bytes_mean'] / 1024:.1f}",
        )
        for r in data["results"].values()
    ]
    statuses = ", ".join(f"{k} {v}" for k, v in d["status"].items())
    enc = setup_["encoder"]
    out = [
        "## Dashboard latency",
        "",
        machine_markdown(data["machine"]),
        "",
        f"{setup_['database']}; {d['questions']:,} questions over {setup_['days']} days in "
        f"{len(d['rooms'])} rooms ({statuses}), {d['room_events']:,} room events, "
        f"{d['replies']:,} bot replies ({d['replies_confident']:,} confident), "
        f"{d['dashboard_posts']:,} dashboard posts, {d['votes']:,} votes; seed {setup_['seed']}. "
        f"Filled in {setup_['generate_s'] + setup_['store_s']:.1f} s (not in the timings). "
        f"{setup_['requests']} timed requests per page after {setup_['warmup_rounds']} warm-up "
        f"round{'s' if setup_['warmup_rounds'] != 1 else ''}, order rotating; full GET until "
        "the body is read, one keep-alive connection, signed in.",
        "",
        markdown_table(("page", "n", "p50 ms", "p99 ms", "p50 / healthz p50", "KiB"), rows),
    ]
    if enc is not None:
        busy = data["cpu_worker"]["busy_per_insights_request"]
        counts = sorted(set(data["cpu_worker"]["texts_per_insights_request"]))
        texts = " or ".join(str(c) for c in counts) or "no"
        out += [
            "",
            f"Encoder `{enc['model']}` on {enc['device']} (batch {enc['batch_size']}, loaded in "
            f"{enc['load_s']:.1f} s); each /insights view embeds "
            f"{texts} question texts in the CPU worker thread, the one that also answers the "
            "room:",
            "",
            markdown_table(
                ("CPU worker busy per /insights view", "n", "p50 ms", "p99 ms", "mean ms"),
                [
                    (
                        "embedding the doc-gap candidates",
                        busy["n"],
                        busy["p50_ms"],
                        busy["p99_ms"],
                        busy["mean_ms"],
                    )
                ],
            ),
        ]
    bad = {k: r["not_200"] for k, r in data["results"].items() if r["not_200"]}
    if bad:
        out += ["", f"**Not 200:** {bad}"]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].rstrip("."),
        epilog="Prints a Markdown table to stdout. Quick check: python "
        "benchmarks/dashboard_latency.py --questions 300 --requests 5",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--questions", type=int, default=5000, help="questions to store")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument(
        "--encoder-requests",
        type=int,
        default=10,
        help="timed /insights requests with the encoder, at most --requests (0: no encoder, "
        "no model load)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the generated data")
    parser.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="embedding model for the encoder case"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="an EMPTY database to fill instead of a temporary SQLite file (e.g. "
        "postgresql+psycopg://user@host/db); the rows stay there",
    )
    where.add_argument(
        "--postgres",
        action="store_true",
        help="start a throw-away PostgreSQL server (tests/postgres_server.py) and use it",
    )
    add_common_args(parser)
    for action in parser._actions:
        if action.dest == "device":  # the service's CPU case, whatever the settings say
            action.default, action.help = "cpu", "encoder device"
    args = parser.parse_args(argv)
    if args.questions < 1:
        parser.error("--questions must be at least 1")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.encoder_requests < 0:
        parser.error("--encoder-requests must be >= 0")
    # They are spread over the rounds: at most one per round.
    args.encoder_requests = min(args.encoder_requests, args.requests)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args)
    # The service serves without an access log (``start_site``); keep -v readable too.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    started = run_started()
    data = run(args)
    enc = data["setup"]["encoder"]
    data["machine"] = machine_info(enc["device"] if enc else "cpu", started)
    print(report(data))
    write_json(args.json, data)
    return 1 if any(r["not_200"] for r in data["results"].values()) else 0


if __name__ == "__main__":
    run_main(main)
