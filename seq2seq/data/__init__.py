"""Data: reading parallel text (``reading.py``), SentencePiece tokenization (``tokenizer.py``),
preparing a training corpus once into memory-mapped ids (``preparation.py``, ``indexed.py``,
with its encoding processes in ``workers.py``), subword sampling while training
(``sampling.py``), token-based batching (``batching.py``, no torch) and collating a batch
into tensors (``collate.py``).

May import only the leaf modules (``special``, ``errors``): not ``models``, nor anything above.
"""
