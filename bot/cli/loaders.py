"""What most commands start from: the settings (from the environment, the TOML file and the
command's flags) and a retriever over the published index."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from bot.settings import Settings, load_settings

log = logging.getLogger("supportbot")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """The settings, with ``--data-dir``/``--device`` (where the command has them) and
    ``extra`` over the environment and the TOML file."""
    return load_settings(
        data_dir=getattr(args, "data_dir", None), device=getattr(args, "device", None), **extra
    )


def load_retriever(settings: Settings) -> Any:
    """A retriever over the published index, with the index's own model and, if set, the
    confidence model (a file that cannot be read is a ConfigError)."""
    from dataclasses import replace

    from bot.errors import ConfigError
    from bot.retrieval.confidence import ConfidenceModel
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever, SearchParams

    index = load_index(settings.index_root)
    encoder = Encoder(index.model, device=settings.device, batch_size=settings.embed_batch_size)
    if index.model != settings.embedding_model:
        log.warning(
            "index built with %s; configured model is %s: using the index's",
            index.model,
            settings.embedding_model,
        )
    params = SearchParams(rerank_candidates=settings.rerank_candidates)
    if settings.confidence_model is not None:
        try:
            model = ConfidenceModel.load(settings.confidence_model)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"SUPPORTBOT_CONFIDENCE_MODEL: cannot read {settings.confidence_model}: {exc}"
            ) from None
        params = replace(params, confidence_model=model)
    return Retriever(index, encoder, params)
