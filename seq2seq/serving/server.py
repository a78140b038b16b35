"""Running the app with uvicorn: the listening socket, and a stop that drains.

On SIGTERM (or Ctrl-C) the server stops accepting connections, answers ``/readyz`` with
503, finishes every request already taken (those still queued included) within
``shutdown_timeout`` seconds, and returns: ``serve`` then exits 0 (130 after Ctrl-C).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading

import uvicorn

from seq2seq.errors import UserError

log = logging.getLogger("seq2seq.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server that marks the app as draining on a stop signal and, once drained,
    returns instead of raising the signal again."""

    def __init__(self, config: uvicorn.Config, app):
        super().__init__(config)
        self.app, self.signals = app, []

    def handle_exit(self, sig, frame) -> None:
        self.app.state.draining = True
        self.signals.append(sig)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except socket.gaierror as e:
        raise UserError(f"host={host}: not an address of this machine ({e.strerror})") from None
    except OSError as e:
        raise UserError(f"port={port}: cannot listen on {host}:{port} ({e.strerror})") from None
    sock.set_inheritable(True)
    return sock


def run_server(app, host: str, port: int, shutdown_timeout: float) -> int | None:
    """Serve ``app`` until a stop signal, then drain; returns the signal that stopped it."""
    sock = listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    config = uvicorn.Config(
        app, log_level="info", access_log=False, lifespan="on", timeout_graceful_shutdown=shutdown_timeout
    )
    server = DrainingServer(config, app)
    print(f"serving on http://{shown}:{bound[1]}/", flush=True)
    log.info("serving on http://%s:%d/ (the page at /, the API description at /docs)", shown, bound[1])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.signals[0] if server.signals else None
