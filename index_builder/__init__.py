"""Offline build: sources -> documents -> chunks -> embeddings -> a published index version
(with its reranker). Imports ``bot``; ``bot`` imports it only at call time, where it builds.
"""
