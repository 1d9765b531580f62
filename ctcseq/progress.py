"""A dependency-free progress line for long loops (stderr).

On a terminal the line is redrawn in place at most every 0.2 s; in a log
file (CI, ``nohup``) a full line is written at most every 10 % or 30 s, so
logs stay readable.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """Progress of ``total`` items.

    Parameters
    ----------
    total : int
    label : str
        Printed before the counts.
    unit : str
        Name of one item ("utt", "batch").
    stream : file, default sys.stderr
    enabled : bool
        False makes every call a no-op.
    """

    def __init__(self, total, label="", unit="it", stream=None, enabled=True):
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_frac = -1.0
        self.postfix = ""

    def update(self, n=1, postfix=None):
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled:
            return
        now = time.monotonic()
        frac = self.count / self.total if self.total else 1.0
        if self.tty:
            if now - self._last_draw >= 0.2 or self.count >= self.total:
                self._draw(now, end="\r")
        elif frac - self._last_frac >= 0.1 or now - self._last_draw >= 30 or self.count >= self.total:
            self._draw(now, end="\n")
            self._last_frac = frac

    def _draw(self, now, end):
        self._last_draw = now
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.count / self.total if self.total else 100.0
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        msg = (f"{self.label}: {self.count}/{self.total} {self.unit} ({pct:3.0f}%) "
               f"{rate:.1f} {self.unit}/s, {elapsed:.0f}s elapsed, ETA {eta:.0f}s")
        if self.postfix:
            msg += f" | {self.postfix}"
        self.stream.write(msg + end)
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self._draw(time.monotonic(), end="\n")
