"""Pure search over a loaded index: dense + lexical + API symbols, fusion, the learnt reranker
and the confidence. No storage, no network.
"""
