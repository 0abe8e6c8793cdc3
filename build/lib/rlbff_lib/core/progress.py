"""Progress that suits where it runs.

In a terminal: tqdm bars. Inside papermill (the harness sets ``RLBFF_PAPERMILL=1``)
or any non-TTY stream: one short line every ``every`` share of the work, so an
executed notebook holds a dozen lines, not thousands of redraws. :func:`collapsed`
turns a block's whole log (a training run's steps) into one line updated in place.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
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


class _LineCollapser:
    """A stdout stand-in: each complete line goes to the log file and the terminal echo, and the one
    display line shows the newest (throttled to ``interval`` seconds)."""

    def __init__(self, label: str, handle, echo_fd: int | None, log_file, interval: float = 1.0):
        self.label, self.handle, self.echo_fd, self.log_file, self.interval = label, handle, echo_fd, log_file, interval
        self.buffer, self.lines, self.last, self.shown = "", 0, "", 0.0
        self.tail: deque[str] = deque(maxlen=20)
        self.start = time.time()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.buffer += text
            while "\n" in self.buffer:
                line, self.buffer = self.buffer.split("\n", 1)
                self._line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def _line(self, line: str) -> None:
        self.lines += 1
        self.tail.append(line)
        if line.strip():
            self.last = line.strip()
        if self.echo_fd is not None:
            os.write(self.echo_fd, (line + "\n").encode(errors="replace"))
        if self.log_file is not None:
            self.log_file.write(line + "\n")
        if time.time() - self.shown >= self.interval:
            self.show()

    def show(self, status: str = "") -> None:
        self.shown = time.time()
        text = f"{self.label}: {status or 'running'} {time.time() - self.start:.0f}s, {self.lines} log lines"
        if self.last:
            text += f" | {self.last[:160]}"
        self.handle.update({"text/plain": text}, raw=True)


@contextlib.contextmanager
def collapsed(label: str, log_path: str | Path | None = None):
    """Inside a notebook, the block's printed lines (a training subprocess's log, forwarded line by line)
    show as ONE line updated in place: ``label: done 93s, 212 log lines | <last line>``; the executed
    notebook keeps only that line (the curves are plotted after). Every line also goes to ``log_path``
    (appended) when given, and, in a harness run (``RLBFF_PAPERMILL=1``), to the terminal that runs it.
    If the block fails, its last 20 lines are shown under the line. Outside IPython: nothing changes.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = lambda: None  # noqa: E731
    if get_ipython() is None:
        yield
        return
    from IPython.display import display

    echo_fd = None
    if os.environ.get("RLBFF_PAPERMILL") == "1":
        try:
            echo_fd = sys.stdout.fileno()  # ipykernel: the kernel's own stdout, not captured into the notebook
        except (OSError, ValueError, AttributeError):
            echo_fd = None
    handle = display({"text/plain": f"{label}: starting"}, raw=True, display_id=True)
    log_file = None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "a", encoding="utf-8")
    collapser = _LineCollapser(label, handle, echo_fd, log_file)
    real = sys.stdout
    sys.stdout = collapser
    try:
        yield
    except BaseException:
        sys.stdout = real
        collapser.show("FAILED after")
        print("\n".join(collapser.tail), file=sys.stderr)
        raise
    finally:
        sys.stdout = real
        if collapser.buffer:
            collapser._line(collapser.buffer)
        if log_file is not None:
            log_file.close()
    collapser.show("done")
