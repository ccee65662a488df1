"""Offline import of past Q&A (archives, exports) into the past-answer store."""
