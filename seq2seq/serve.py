"""``python -m seq2seq.serve checkpoint=PATH``: serve a model over HTTP.

``POST /v1/translate``, ``GET /v1/model``, ``/healthz``, ``/readyz``, a page at ``/`` and
the OpenAPI description at ``/docs``, on ``host=127.0.0.1 port=8000``. Concurrent requests
are decoded together (``seq2seq/serving/batching.py``). The checkpoint and ``decoding.*``
settings are ``translate``'s; SIGTERM drains and exits 0.
"""

from __future__ import annotations

import logging
import signal

from seq2seq.cli.loading import make_translator
from seq2seq.cli.runner import run
from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.serve")


def serve(cfg) -> None:
    """Load ``cfg.checkpoint`` and serve it until SIGTERM or Ctrl-C."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError("FastAPI and uvicorn are not installed: pip install 'seq2seq[serve]'") from None
    # FastAPI and uvicorn are optional (the [serve] extra): the server's modules load once they are found.
    from seq2seq.serving.app import create_app
    from seq2seq.serving.info import describe_model
    from seq2seq.serving.server import run_server

    translator, train_config = make_translator(cfg, target_required=False)  # requests may name it
    app = create_app(translator, cfg, describe_model(translator, train_config, cfg))
    stopped_by = run_server(app, cfg.host, cfg.port, cfg.shutdown_timeout)
    if stopped_by == signal.SIGINT:
        raise KeyboardInterrupt


def main() -> None:
    """``python -m seq2seq.serve``: see the module's docstring."""
    run("serve", serve)


if __name__ == "__main__":
    main()
