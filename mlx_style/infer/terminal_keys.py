"""Keys typed in the terminal, one at a time and without Enter: the cam's controls when it has no window
(``mlx-style cam --headless --virtual``, someone in a video call switching styles).

On POSIX the terminal goes into cbreak mode (no line buffering, no echo; Ctrl-C still interrupts) for the
``with`` block and comes back as it was on the way out, Ctrl-C and ``kill`` included. On Windows ``msvcrt`` reads
the console. Keys come back as ``cv2.waitKey`` codes (-1: none), so ``cam_controls.handle_key`` maps both alike.
"""

from __future__ import annotations

import os
import sys
from collections import deque

ESC = 27


class TerminalKeys:
    """Non-blocking key reader over ``stream`` (stdin by default); ``active`` only when it is a terminal.

    A stream that is not a terminal (a pipe, a file, a test runner's stdin) is left alone and ``read`` returns -1,
    as is a terminal the process does not own the foreground of (``cmd &``: changing its mode would stop us).
    """

    def __init__(self, stream=None):
        self.stream = sys.stdin if stream is None else stream
        self.active = False
        self._saved = None  # the terminal's attributes before cbreak (POSIX)
        self._pending: deque[int] = deque()

    def _fd(self) -> int | None:
        try:
            return self.stream.fileno() if self.stream.isatty() else None
        except (AttributeError, OSError, ValueError):  # closed, or a stand-in without a descriptor
            return None

    def __enter__(self) -> TerminalKeys:
        return self.start()

    def start(self) -> TerminalKeys:
        """Put the terminal in cbreak mode, where it is one we may change; ``restore`` undoes it."""
        fd = self._fd()
        if fd is None:
            return self
        if os.name == "nt":
            self.active = True
            return self
        import termios
        import tty

        try:
            if os.tcgetpgrp(fd) != os.getpgrp():  # in the background: tcsetattr would stop the process (SIGTTOU)
                return self
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd, termios.TCSANOW)
        except (OSError, termios.error):
            self._saved = None
            return self
        self.active = True
        return self

    def __exit__(self, *exc) -> bool:
        self.restore()
        return False

    def restore(self) -> None:
        """Put the terminal back as it was (safe to call twice)."""
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self._fd(), termios.TCSADRAIN, self._saved)
            except (OSError, TypeError, termios.error):  # the terminal went away (closed window): nothing to restore
                pass
            self._saved = None
        self.active = False

    def read(self) -> int:
        """The next key typed (a ``cv2.waitKey`` code), or -1 at once when none is waiting."""
        if not self.active:
            return -1
        if not self._pending:
            self._pending.extend(self._available())
        return self._pending.popleft() if self._pending else -1

    def _available(self) -> list[int]:
        if os.name == "nt":
            import msvcrt

            keys = []
            while msvcrt.kbhit():
                char = msvcrt.getwch()
                if char in ("\x00", "\xe0"):  # an arrow or function key: a second code follows, not ours
                    msvcrt.getwch()
                    continue
                keys.append(ord(char) & 0xFF)
            return keys
        import select

        fd = self._fd()
        if fd is None or not select.select([fd], [], [], 0)[0]:
            return []
        data = os.read(fd, 64)
        return keys_from_bytes(data)


def keys_from_bytes(data: bytes) -> list[int]:
    """The keys in what a terminal sent: arrow and function keys (``ESC [ …``, ``ESC O …``) are dropped, so that
    they are not taken for Esc (quit); a lone Esc stays."""
    keys, i = [], 0
    while i < len(data):
        if data[i] == ESC and i + 1 < len(data) and data[i + 1] in b"[O":
            i += 2
            while i < len(data) and not 0x40 <= data[i] <= 0x7E:  # parameters, up to the final byte
                i += 1
            i += 1
            continue
        keys.append(data[i])
        i += 1
    return keys
