"""A dependency-free progress line for long loops (stderr).

On a terminal the line is redrawn in place at most every 0.2 s; in a log
file (CI, ``nohup``) a full line is written at most every 10 % or 30 s, so
logs stay readable.

The rate and the ETA are measured from the first item done, not from the
start: the wait before it (worker processes starting, kernels compiling)
says nothing about how fast the rest will go, and once made the first
estimate of a 9 s job 2094 s.  Until a second item is done the ETA shows
as ``?``.
"""
from __future__ import annotations

import sys
import time


__all__ = ["Progress", "format_duration"]


def format_duration(seconds):
    """A duration for people: ``"42 s"``, ``"12.5 min"``, ``"3.20 h"``
    (never ``"0.00 h"`` for a small set)."""
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


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
    clock : callable, default time.monotonic
        Seconds, for the rate and the ETA (tests pass a fake one).
    """

    def __init__(self, total, label="", unit="it", stream=None, enabled=True, clock=None):
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self._first = None   # (time, count) at the first update
        self._last_draw = 0.0
        self._last_frac = -1.0
        self.postfix = ""

    def update(self, n=1, postfix=None):
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled:
            return
        now = self.clock()
        if self._first is None:
            self._first = (now, self.count)
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
        pct = 100.0 * self.count / self.total if self.total else 100.0
        left = max(self.total - self.count, 0)
        t0, n0 = self._first if self._first is not None else (self.start, 0)
        if self.count > n0 and now > t0:   # from the first item on
            rate = (self.count - n0) / (now - t0)
            eta = f"{left / rate:.0f}s"
        else:
            rate = self.count / elapsed if elapsed > 0 else 0.0
            eta = "0s" if not left else "?"
        msg = (f"{self.label}: {self.count}/{self.total} {self.unit} ({pct:3.0f}%) "
               f"{rate:.1f} {self.unit}/s, {elapsed:.0f}s elapsed, ETA {eta}")
        if self.postfix:
            msg += f" | {self.postfix}"
        self.stream.write(msg + end)
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self._draw(self.clock(), end="\n")
