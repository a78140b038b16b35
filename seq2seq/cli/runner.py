"""What every command does around its work: compose and check its config, print ``--help``,
turn a user's mistake into one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import logging
import sys

from seq2seq.config import compose, help_text
from seq2seq.errors import UserError


def run(command: str, body) -> None:
    """Compose ``configs/<command>.yaml`` with ``sys.argv`` overrides, check it and call
    ``body(cfg)``; user mistakes end in one ``error:`` line and exit status 2."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(name)s] %(message)s")
    args = sys.argv[1:]
    try:
        if any(a in ("-h", "--help") for a in args):
            print(help_text(command, compose(command, [a for a in args if a not in ("-h", "--help")], False)))
            return
        body(compose(command, args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
