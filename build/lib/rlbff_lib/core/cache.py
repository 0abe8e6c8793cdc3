"""Append-only JSONL caches of remote answers (extraction, judges): the last line of a key wins.

Each answer is appended (and fsync'ed) as it arrives, so a killed run resumes without asking
again and a finished run reproduces without the endpoint; a line cut by a crash is counted,
reported and its item asked again. :meth:`JsonlCache.writer` is the group commit of an asyncio run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from rlbff_lib.core.io import read_jsonl_tolerant

log = logging.getLogger("rlbff.cache")


class JsonlCache:
    """Rows ``{"key": str, ...}`` in an append-only JSONL file (``path`` None: in memory only).

    valid(row): the fields a row must have besides ``key``; a line that is not a JSON object
    (e.g. cut by a crash) or fails ``valid`` is counted in :attr:`corrupt_count` and ignored, so
    its item is asked again. fsync: every write is synced to disk before it returns. Writes are
    thread-safe (one lock per cache: share one instance between the clients of one file).
    """

    def __init__(self, path: str | os.PathLike | None, fsync: bool = True,
                 valid: Callable[[dict], bool] | None = None):
        self.path = Path(path) if path is not None else None
        self.fsync, self._valid = fsync, valid
        self.entries: dict[str, dict] = {}
        self.corrupt_lines: list[int] = []
        self.invalid_rows = 0
        self._lock = threading.Lock()
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        rows, self.corrupt_lines = read_jsonl_tolerant(self.path)
        for row in rows:
            if isinstance(row.get("key"), str) and (self._valid is None or self._valid(row)):
                self.entries[row["key"]] = row
            else:
                self.invalid_rows += 1
        if self.corrupt_count:
            log.warning("cache %s: %d corrupt line(s) ignored (unreadable lines %s, %d without cache fields); "
                        "their items are asked again", self.path, self.corrupt_count, self.corrupt_lines[:10],
                        self.invalid_rows)
        self._end_with_newline()

    @property
    def corrupt_count(self) -> int:
        return len(self.corrupt_lines) + self.invalid_rows

    def _end_with_newline(self) -> None:
        """After a cut last line, start the next append on a fresh line."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                with open(self.path, "ab") as f:
                    f.write(b"\n")

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, row: dict) -> None:
        self.put_many([row])

    def put_many(self, rows: list[dict]) -> None:
        """Append rows with one write and one fsync (group commit). A crash cuts at most the last
        line, which the tolerant reader skips."""
        if not rows:
            return
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with self._lock:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
            for row in rows:
                self.entries[row["key"]] = row

    async def writer(self, pending: asyncio.Queue) -> None:
        """Write ``(row, future)`` pairs from ``pending`` off the event loop: whatever is waiting
        goes in one append and one fsync in a worker thread, then each future is resolved (with the
        write's exception, e.g. a full disk, if it failed). The loop keeps sending and receiving
        while the disk syncs. Returns after writing everything queued before a ``None``."""
        while True:
            batch = [await pending.get()]
            while not pending.empty():
                batch.append(pending.get_nowait())
            stop = None in batch
            batch = [pair for pair in batch if pair is not None]
            try:
                await asyncio.to_thread(self.put_many, [row for row, _ in batch])
            except Exception as e:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(e)
            else:
                for _, done in batch:
                    if not done.done():  # its worker may have been cancelled
                        done.set_result(None)
            if stop:
                return
