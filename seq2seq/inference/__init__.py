"""Inference: turning sentences into translations with a trained model.

``translator.py`` sorts, batches and restores order for any engine; ``torch_engine.py``
decodes with a seq2seq model (or an ensemble) and the searches of ``decoding``;
``ctranslate2/`` exports a Transformer and decodes the export with CTranslate2;
``heatmaps.py`` draws attention (``cli/loading.py`` builds the translator a command asks for).

May import: ``checkpoints``, ``decoding``, ``models``, ``data`` and the leaf modules;
``translator.py`` and ``ctranslate2/`` import no torch at the top, so that translating
an export never loads it.
"""
