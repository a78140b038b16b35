"""Stopping on SIGINT (Ctrl-C) and SIGTERM (what schedulers such as SLURM send before a kill).

While training, a first signal is noted and the step in progress finishes; the
trainer then saves ``last.pt`` and stops. Work that can be thrown away (setting
up, validating) runs in ``abortable()`` blocks, where a signal raises
``Interrupted`` at once; so does a second signal anywhere but in a ``shielded()``
block (writing a checkpoint), which always runs to its end. A stopped process
exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell
reports a process killed by that signal.
"""

from __future__ import annotations

import contextlib
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised where a stop signal abandons work; ``signum`` names the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Catches SIGINT and SIGTERM inside a ``with`` block (the previous handlers come back after it).

    ``received`` is the first signal's number, or None. ``can_abort=False`` makes
    ``abortable()`` blocks wait like the rest (processes that must stop in step with
    the others, such as torchrun's non-main processes).
    """

    def __init__(self, can_abort: bool = True):
        self.received: int | None = None
        self.can_abort = can_abort
        self._aborting = 0
        self._shielded = 0
        self._previous = {}

    def __enter__(self) -> StopSignals:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self._shielded == 0 and (not first or self._aborting):
            raise Interrupted(signum)

    @contextlib.contextmanager
    def abortable(self):
        """A block that a signal (or one received before it) interrupts at once."""
        if self.can_abort and self.received is not None:
            raise Interrupted(self.received)
        self._aborting += self.can_abort
        try:
            yield
        finally:
            self._aborting -= self.can_abort

    @contextlib.contextmanager
    def shielded(self):
        """A block that no signal interrupts (signals are only noted)."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
