"""Corpus reading, SentencePiece tokenization and token-based batching."""
