"""Checkpoints: the file layout and its versions (``format.py``), a run directory's training
checkpoints (``checkpointer.py``), rebuilding a model from one (``loading.py``) and
averaging several (``averaging.py``).

May import: ``models``, ``data`` (the tokenizer) and the leaf modules.
"""
