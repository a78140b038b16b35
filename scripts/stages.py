"""What the scripts that run seq2seq commands in stages share: their arguments and their runs.

A script takes ``out=DIR``, its own ``key=value`` settings, and every other ``key=value`` as an
override for its trainings; it runs each stage as a plain ``python -m seq2seq.*`` command,
printed first, so that any stage can be rerun by hand.
"""

from __future__ import annotations

import subprocess
import sys


def fail(message: str) -> None:
    """A mistake in the script's arguments: one line, exit 2 (as the seq2seq commands do)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def split_args(argv: list[str], defaults: dict[str, str], out: str) -> tuple[dict[str, str], list[str]]:
    """The script's own settings (``defaults`` updated, and ``out``, which is required) and the
    overrides for its trainings (``+model=transformer`` first unless one names the model)."""
    own, overrides = dict(defaults), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            fail(f"{arg!r}: arguments are key=value (see the docstring of {sys.argv[0]})")
        if key in own or key == "out":
            own[key] = value
        else:
            overrides.append(arg)
    if "out" not in own:
        fail(f"out= is required: {out}")
    if not any(arg.startswith("+model=") for arg in overrides):
        overrides.insert(0, "+model=transformer")
    return own, overrides


def run(args: list[str]) -> None:
    """Run one seq2seq command; its failure ends the script with its exit status."""
    print("$", " ".join(["python", *args]), flush=True)
    status = subprocess.call([sys.executable, *args])
    if status:
        sys.exit(status)
