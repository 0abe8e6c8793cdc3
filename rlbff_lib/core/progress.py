"""Progress that suits where it runs.

In a terminal: tqdm bars. Inside papermill (the harness sets ``RLBFF_PAPERMILL=1``)
or any non-TTY stream: one short line every ``every`` share of the work, so an
executed notebook holds a dozen lines, not thousands of redraws.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def quiet_mode() -> bool:
    """True inside papermill runs or when stderr is not a terminal."""
    return os.environ.get("RLBFF_PAPERMILL") == "1" or not sys.stderr.isatty()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", every: float = 0.1) -> Iterator[T]:
    """Iterate with progress: tqdm in a terminal, else a line per ``every`` of ``total``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not quiet_mode():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, total=total, desc=desc)
        return
    start = time.time()
    step = max(1, int((total or 0) * every)) if total else 1000
    n = 0
    for n, item in enumerate(iterable, 1):
        yield item
        if n % step == 0 and (total is None or n < total):
            pct = f" ({100 * n / total:.0f}%)" if total else ""
            print(f"{desc}: {n}/{total or '?'}{pct} {time.time() - start:.0f}s", flush=True)
    print(f"{desc}: done {n} in {time.time() - start:.1f}s", flush=True)


def log(msg: str) -> None:
    """One progress line (flushed, so papermill shows it while the cell runs)."""
    print(msg, flush=True)
