"""Persistence: SQLAlchemy models and the few queries the app needs."""

from bot.store.database import Database
from bot.store.models import Base, ChunkRow, DocumentRow, EmbeddingCacheRow

__all__ = ["Base", "ChunkRow", "Database", "DocumentRow", "EmbeddingCacheRow"]
