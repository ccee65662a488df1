"""API-symbol awareness: find the Keras names a question mentions and map them to documents.

A question that names ``EarlyStopping``, calls ``model.fit(...)`` or shows
``keras.layers.LSTM`` in its code should surface that symbol's reference page even when the
prose around it is vague. Pure functions over a :class:`SymbolTable` built from the index.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Receivers users write for instances, mapped to the class whose methods they call.
_INSTANCE_NAMES = {
    "model": "Model",
    "layer": "Layer",
    "optimizer": "Optimizer",
    "opt": "Optimizer",
    "callback": "Callback",
    "tuner": "Tuner",
    "metric": "Metric",
    "loss": "Loss",
    "seq": "Sequential",
}
_FRAMEWORK_PREFIXES = (
    "tf.keras.",
    "tensorflow.keras.",
    "tensorflow.python.keras.",
    "keras_core.",
    "tf_keras.",
)
_DOTTED = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# An uppercase start plus at least one more capital or digit: EarlyStopping, LSTM, LSTMCell,
# CSVLogger, RMSprop, PReLU, Conv2D.
_CAMEL = re.compile(r"\b[A-Z](?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]+\b")
_SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_WORD = re.compile(r"\b[A-Za-z][A-Za-z0-9]{3,}\b")
# Plain words that are also symbol names but mean the everyday thing far more often.
_WEAK_STOP = frozenset(
    [
        "model",
        "models",
        "layer",
        "layers",
        "input",
        "inputs",
        "output",
        "outputs",
        "loss",
        "losses",
        "metric",
        "metrics",
        "callback",
        "callbacks",
        "optimizer",
        "optimizers",
        "sequential",
        "function",
        "functions",
        "training",
        "train",
        "fit",
        "predict",
        "evaluate",
        "compile",
        "save",
        "load",
        "summary",
        "call",
        "build",
        "config",
        "variable",
        "variables",
        "tensor",
        "shape",
        "mean",
        "sum",
        "error",
        "errors",
        "value",
        "data",
        "dataset",
        "image",
        "images",
        "text",
        "random",
        "ones",
        "zeros",
        "stack",
        "concatenate",
        "reshape",
        "average",
        "maximum",
        "minimum",
        "multiply",
        "subtract",
        "add",
        "dot",
        "where",
        "sort",
        "split",
        "any",
        "all",
        "round",
        "sign",
        "abs",
        "log",
        "exp",
        "sqrt",
        "square",
        "norm",
        "split",
        "take",
        "min",
        "max",
        "clip",
        "cast",
        "copy",
        "size",
        "accuracy",
        "precision",
        "recall",
        "policy",
        "version",
        "get",
        "set",
        "update",
        "reset",
        "state",
        "states",
        "result",
    ]
)


@dataclass(frozen=True)
class SymbolTable:
    """Lookup from names (full, and trailing parts) to the API documents that define them."""

    by_full: Mapping[str, str]
    by_suffix: Mapping[str, tuple[str, ...]]
    by_lower_last: Mapping[str, tuple[str, ...]]
    methods: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, api_docs: Iterable[tuple[str, Sequence[str]]]) -> SymbolTable:
        """``api_docs``: (doc id, all public names of it) for every API document."""
        by_full: dict[str, str] = {}
        by_suffix: dict[str, list[str]] = defaultdict(list)
        by_lower: dict[str, list[str]] = defaultdict(list)
        methods: dict[str, list[str]] = defaultdict(list)
        for doc_id, names in api_docs:
            for name in dict.fromkeys((doc_id, *names)):
                by_full.setdefault(name, doc_id)
                parts = name.split(".")
                for n in (1, 2):
                    if len(parts) > n:
                        _add(by_suffix, ".".join(parts[-n:]), doc_id)
                last = parts[-1]
                if len(parts) >= 2 and parts[-2][:1].isupper() and not last[:1].isupper():
                    _add(methods, last, doc_id)
                else:
                    _add(by_lower, last.lower(), doc_id)
        return cls(
            by_full=by_full,
            by_suffix={k: tuple(v) for k, v in by_suffix.items()},
            by_lower_last={k: tuple(v) for k, v in by_lower.items()},
            methods={k: tuple(v) for k, v in methods.items()},
        )


def _add(table: dict[str, list[str]], key: str, doc_id: str) -> None:
    bucket = table[key]
    if doc_id not in bucket:
        bucket.append(doc_id)


@dataclass(frozen=True)
class SymbolMatch:
    doc_id: str
    strength: float  # 1.0 explicit full name ... 0.3 plain word that equals a symbol name
    mention: str


def _normalise_dotted(name: str) -> str:
    for prefix in _FRAMEWORK_PREFIXES:
        if name.startswith(prefix):
            return "keras." + name[len(prefix) :]
    return name


def match_symbols(text: str, table: SymbolTable, *, max_per_mention: int = 3) -> list[SymbolMatch]:
    """Symbols mentioned in ``text``, strongest first, each document once."""
    found: dict[str, SymbolMatch] = {}

    def offer(doc_ids: Sequence[str], strength: float, mention: str) -> None:
        if not doc_ids or len(doc_ids) > max_per_mention * 2:
            return  # a name shared by many symbols says little about which one
        # A mention that fits several symbols is split between them: it is evidence for one.
        picked = doc_ids[:max_per_mention]
        strength /= len(picked)
        for doc_id in picked:
            old = found.get(doc_id)
            if old is None or old.strength < strength:
                found[doc_id] = SymbolMatch(doc_id, strength, mention)

    for raw in _DOTTED.findall(text):
        name = _normalise_dotted(raw)
        if name in table.by_full:
            offer([table.by_full[name]], 1.0, raw)
            continue
        parts = name.split(".")
        receiver, last = parts[-2], parts[-1]
        two = ".".join(parts[-2:])
        if two in table.by_suffix:
            offer(table.by_suffix[two], 0.9, raw)
        elif receiver[:1].islower() and last in table.methods:
            owner = _INSTANCE_NAMES.get(receiver.split("_")[-1].lower())
            candidates = table.methods[last]
            if owner:
                preferred = [d for d in candidates if d.split(".")[-2] == owner]
                offer(preferred or candidates, 0.8 if preferred else 0.4, raw)
            else:
                offer(candidates, 0.4, raw)
        elif last in table.by_suffix and (last[:1].isupper() or "_" in last):
            offer(table.by_suffix[last], 0.7, raw)

    for raw in _CAMEL.findall(text):
        offer(table.by_suffix.get(raw, ()), 0.8, raw)
    for raw in _SNAKE.findall(text):
        offer(table.by_suffix.get(raw, ()), 0.8, raw)
    for raw in _CALL.findall(text):
        if raw in table.methods and raw.lower() not in _WEAK_STOP:
            offer(table.methods[raw], 0.4, raw + "(")
    for raw in _WORD.findall(text):
        lower = raw.lower()
        if lower in _WEAK_STOP:
            continue
        offer(table.by_lower_last.get(lower, ()), 0.3, raw)

    return sorted(found.values(), key=lambda m: -m.strength)


#: How much a symbol named only below a question's first line counts, when that line names
#: symbols of its own (``subject_symbols``). Measured in BENCHMARKS.md, "The title's API is
#: the subject".
BODY_ONLY_WEIGHT = 0.5


def subject_symbols(
    matches: Sequence[SymbolMatch], title: str, table: SymbolTable
) -> list[SymbolMatch]:
    """``matches`` (of the whole question) re-weighted by where they are named, strongest first.

    A question's first line says what it is about; when it names an API, the others named
    only in the body are usually context: "Fine-tuning the pre-trained ResNet50" over "I get
    a high accuracy with VGG16, however with ResNet50 …" asks about ResNet50. Those count at
    ``BODY_ONLY_WEIGHT``. A title that names no API (e.g. "Error in my model") changes
    nothing, and neither does a one-line question (``title`` empty).
    """
    named = {m.doc_id for m in match_symbols(title, table)} if title else set()
    if not named:
        return list(matches)
    weighted = [
        m if m.doc_id in named else SymbolMatch(m.doc_id, m.strength * BODY_ONLY_WEIGHT, m.mention)
        for m in matches
    ]
    return sorted(weighted, key=lambda m: -m.strength)
