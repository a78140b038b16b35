"""CTranslate2, the second engine: the export folder (``format.py``, no torch), writing it
(``convert.py`` with ``spec.py``, and ``vocab_map.py`` for its vocabulary map), and
decoding it (``engine.py``).
"""
