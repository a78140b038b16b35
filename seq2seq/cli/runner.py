"""What every command does around its work: compose and check its config, print ``--help``,
turn a user's mistake into one ``error:`` line and exit status 2, and a stop into 130
(Ctrl-C) or 128 + the signal number (training's ``Interrupted``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator

from seq2seq.config import compose, help_text
from seq2seq.errors import UserError
from seq2seq.training.signals import Interrupted

HELP = ("-h", "--help")


def asks_help(args: list[str]) -> bool:
    """Whether the command line asks for ``--help`` (or ``-h``)."""
    return any(a in HELP for a in args)


def show_help(config: str, args: list[str], checked: bool = False) -> None:
    """Print every key of ``configs/<config>.yaml`` with its value under the other
    overrides of ``args`` (checked first when ``checked``)."""
    print(help_text(config, compose(config, [a for a in args if a not in HELP], checked)))


@contextlib.contextmanager
def exits(
    on_error: Callable[[UserError], None] | None = None,
    on_stop: Callable[[Interrupted], None] | None = None,
) -> Iterator[None]:
    """End the command the way its block ended: a ``UserError`` as one ``error:`` line and
    exit status 2, Ctrl-C (``KeyboardInterrupt``) as 130, training's ``Interrupted`` as
    128 + its signal. ``on_error`` and ``on_stop`` run first (a log line, a clean-up)."""
    try:
        yield
    except UserError as e:
        if on_error is not None:
            on_error(e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as e:
        stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
        if on_stop is not None:
            on_stop(stop)
        sys.exit(stop.exit_code)


def run(command: str, body, config: str | None = None, on_stop: Callable[[Interrupted], None] | None = None):
    """Compose ``configs/<config>.yaml`` (``config`` defaults to ``command``) with the
    ``sys.argv`` overrides, check it and return ``body(cfg)``; ``--help`` prints its keys
    instead (and returns None). Ends as ``exits`` says."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(name)s] %(message)s")
    config = config or command
    args = sys.argv[1:]
    with exits(on_stop=on_stop):
        if asks_help(args):
            show_help(config, args)
            return None
        return body(compose(config, args))
