"""Termination signals as Ctrl-C, so that a command killed by ``kill``, ``timeout`` or a closed terminal still
finishes its output files the way an interrupted one does (a video's index written, temporaries removed).

``python -m mlx_style.train`` has its own handler (it finishes the step and writes a checkpoint); the cam and
``stylize`` use this one.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def interrupt_on_termination(signals=TERMINATION_SIGNALS):
    """Within the block, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (naming the signal) in the main thread.

    Outside the main thread Python cannot install handlers: the block then runs unchanged. The previous
    handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
