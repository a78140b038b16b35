"""Checkpoints: the file layout and its versions (``format.py``), a run directory's training
checkpoints (``checkpointer.py``), rebuilding a model from one (``loading.py``),
averaging several (``averaging.py``) and the parents a fine-tune's checkpoints record
(``lineage.py``).

May import: ``models``, ``data`` (the tokenizer) and the leaf modules.
"""
