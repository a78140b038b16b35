"""Helper processes (corpus encoding workers, DataLoader workers): how they treat signals."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def ignore_ctrl_c(*_) -> None:
    """For helper processes (DataLoader or encoding workers), which get a terminal's Ctrl-C
    too: the main process handles it and ends them (with SIGTERM, which they still obey)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def die_with_parent() -> None:
    """Ask Linux to end this process when its parent dies (even by ``kill -9``), so that no
    encoding worker is left waiting for work that will never come."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before that took hold
            os._exit(1)
