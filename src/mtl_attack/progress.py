"""Progress of long loops: a tqdm bar on a terminal, plain lines elsewhere.

With output not on a terminal (CI, SLURM logs, `> file`), a bar would be either
hidden (tqdm's default there) or a stream of carriage returns; instead a line such
as ``train: 900/1800 (50%), 61 s, loss=1.234`` goes to stderr every
LINE_EVERY_S seconds and once at the end.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable

__all__ = ["LINE_EVERY_S", "progress", "ProgressLines"]

LINE_EVERY_S = 30.0


class ProgressLines:
    """tqdm's small interface (iterate, update, set_postfix, close) printing a line now and then."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str = "it",
                 every_s: float = LINE_EVERY_S, stream=None):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every_s, self.stream = every_s, stream
        self.n, self.postfix, self.start = 0, "", time.perf_counter()
        self.last, self.closed = self.start, False

    def _line(self) -> str:
        done = f"{self.n}/{self.total} ({self.n / self.total:.0%})" if self.total else f"{self.n} {self.unit}"
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}, {time.perf_counter() - self.start:.0f} s{extra}"

    def _print(self) -> None:
        print(self._line(), file=self.stream or sys.stderr, flush=True)
        self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self.last >= self.every_s:
            self._print()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str, enabled: bool = True,
             unit: str = "it"):
    """A tqdm bar when stderr is a terminal, :class:`ProgressLines` when it is not, or a silent
    tqdm when `enabled` is false. Use like tqdm: iterate it, or update(n) and close()."""
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty():
        return ProgressLines(iterable, total, desc, unit)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=False)
