"""Hugging Face transformers, the third way out: a Transformer written as a folder that
``transformers.AutoModelForSeq2SeqLM`` and ``AutoTokenizer`` load as they are
(``python -m seq2seq.export format=transformers``).

``format.py`` (no torch, no transformers) lists the folder's files and what marks it;
``architecture.py`` chooses the stock class that computes our function and maps the weights;
``tokenizer.py`` writes the SentencePiece model(s) as a ``MarianTokenizer``; ``convert.py``
writes the folder; ``engine.py`` decodes it with ``generate()`` (for the decoding benchmark).

May import what ``inference`` may. transformers itself is imported only inside the functions
that need it: it is optional and slow to import.
"""
