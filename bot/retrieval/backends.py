"""Which Keras backend a question names, and backend-specific guides ranked for it.

Pure functions, no index access: ``search`` (or any caller holding a ranked list) decides
where to apply them.

What counts as naming a backend (``detect_backend``):

* chosen: ``KERAS_BACKEND=jax`` (shell, ``os.environ[...]``, ``setdefault``), a keras.json
  ``"backend": "torch"``, Keras 2's "Using TensorFlow backend." log line;
* said: "the JAX backend", "torch backend", "backend is/= jax", "set the backend to torch";
* weaker, counted only when nothing stronger names another backend: "with/on/using PyTorch",
  and for JAX also ``import jax`` / ``jax.numpy`` / the word JAX (JAX is only ever a Keras
  backend, never a data-loading helper).

Not counted: ``tf.keras`` / ``import tensorflow`` / ``tf.data`` / a TensorFlow version. That
is how nearly all Keras 2-era code looks, whether or not its author ever chose a backend, so
it says nothing about the backend of the question (decided for precision: a wrong "you use
TensorFlow" ranks the wrong guide first). Likewise ``import torch`` (people feed Keras from
torch ``DataLoader``s on any backend). Two backends named equally strongly: ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

Backend = Literal["tensorflow", "jax", "torch"]
BACKENDS: tuple[Backend, ...] = ("tensorflow", "jax", "torch")

_NAME = r"(tensorflow|tf|jax|pytorch|torch)"
_CHOSEN = (
    re.compile(r"KERAS_BACKEND['\"]?\s*\]?\s*(?:=|:|,)\s*['\"]?(\w+)"),
    re.compile(r"['\"]backend['\"]\s*:\s*['\"](\w+)['\"]"),
    re.compile(r"\bUsing (\w+) backend\b"),
)
_SAID = (
    re.compile(rf"\b{_NAME}\s+backend\b", re.I),
    re.compile(rf"\bbackend\s*(?:is|=|:|was|of|set to|to)?\s*(?:set to\s+)?['\"`]?{_NAME}\b", re.I),
)
_WEAK = (
    re.compile(r"\b(?:with|on|using|in|via|under)\s+(pytorch|jax)\b", re.I),
    re.compile(r"^\s*(?:import|from)\s+(jax)\b", re.M),
    re.compile(r"\b(jax)\.numpy\b"),
    re.compile(r"\b(JAX)\b"),
)
_ALIASES: dict[str, Backend] = {
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
    "jax": "jax",
    "torch": "torch",
    "pytorch": "torch",
}

# keras.io guides that exist once per backend: "guides/custom_train_step_in_jax",
# "guides/writing_a_custom_training_loop_in_torch", "guides/distributed_training_with_tensorflow".
_SPECIFIC = re.compile(r"^(?P<family>.+_(?:in|with)_)(?P<backend>tensorflow|jax|torch)/?$")


def detect_backend(text: str) -> Backend | None:
    """The Keras backend a question names (see the module docstring), or None."""
    strength: dict[Backend, int] = {}
    for level, patterns in ((3, _CHOSEN), (2, _SAID), (1, _WEAK)):
        for pattern in patterns:
            for m in pattern.finditer(text):
                backend = _ALIASES.get(m.group(1).lower())
                if backend is not None:
                    strength[backend] = max(strength.get(backend, 0), level)
    if not strength:
        return None
    best = max(strength.values())
    top = [b for b, s in strength.items() if s == best]
    return top[0] if len(top) == 1 else None


def guide_backend(doc_id: str) -> tuple[str, Backend] | None:
    """``(family, backend)`` of a backend-specific guide id, None for any other page."""
    m = _SPECIFIC.match(doc_id)
    if m is None or not doc_id.startswith("guides/"):
        return None
    return m.group("family"), _ALIASES[m.group("backend")]


T = TypeVar("T")


def prefer_backend_guides(
    ranked: Sequence[tuple[T, float]],
    backend: Backend | None,
    *,
    doc_id: Callable[[T], str] = str,
) -> list[tuple[T, float]]:
    """Re-order a ranked ``(doc, score)`` list for a question that names ``backend``.

    Each family of backend-specific guides (the same guide once per backend) keeps the places
    it holds in the list, but the named backend's guide takes the best of them and the other
    backends' guides move down into the rest, in their order. Every other document keeps its
    place, and each place keeps its score, so the list stays sorted if it was. ``doc_id``
    turns a ``doc`` into its id (default ``str``: the docs are ids already). No backend, or
    no family with the named backend's guide in the list: the list as it was.
    """
    items = list(ranked)
    if backend is None:
        return items
    places: dict[str, list[int]] = {}
    for i, (doc, _) in enumerate(items):
        if (info := guide_backend(doc_id(doc))) is not None:
            places.setdefault(info[0], []).append(i)
    out = list(items)
    for positions in places.values():
        members = [items[i][0] for i in positions]
        named = [d for d in members if _backend_of(doc_id(d)) == backend]
        others = [d for d in members if _backend_of(doc_id(d)) != backend]
        for i, doc in zip(positions, named + others, strict=True):
            out[i] = (doc, items[i][1])
    return out


def _backend_of(doc_id: str) -> Backend | None:
    info = guide_backend(doc_id)
    return info[1] if info else None
