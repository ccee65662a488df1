"""Offline quality measurement: retrieval and confidence on labelled questions, past-answer
retrieval on duplicate pairs.
"""
