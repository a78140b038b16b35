"""Serving a model over HTTP: ``python -m seq2seq.serve`` (``seq2seq/serve.py``) runs the app of
``app.py`` with uvicorn.

    api.py       the request and response bodies of ``/v1`` and the per-request decoding options
    batching.py  the bounded queue whose requests are decoded together, off the event loop
    app.py       the FastAPI app: routes, errors, limits, the API key, the page
    page.html    the page at ``/``: one self-contained file, no build step, no CDN

Written against ``inference.translator.Translator`` alone, so every engine serves (a
checkpoint, an average, an ensemble, a CTranslate2 export). May import ``cli`` and every
layer below it; the commands sit above. FastAPI and uvicorn come with ``pip install
'seq2seq[serve]'``.
"""
