"""File helpers shared by every stage: atomic writes, validated JSONL, hashing.

A crash never leaves a half-written file that a rerun would trust: every writer
goes to a temporary file in the same folder and renames it over the target.
Append-only caches use :func:`append_jsonl`, whose readers skip (and report) a
line that a crash cut short.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator

import yaml


class DataError(ValueError):
    """Bad input data, located by file, line (1-based) and field."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line is not None else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class OutputError(OSError):
    """An output that could not be written (unwritable folder, full disk); names the path."""


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {path.parent}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"output folder {path.parent} is not writable")


def check_writable(paths: Iterable[str | os.PathLike]) -> None:
    """Before any work: each output path (a file, or a folder) can be written, i.e. the folder it goes in (the
    path itself when it is a folder) or, where that does not exist yet, its nearest existing ancestor is a
    writable folder. Creates nothing; raises :class:`OutputError` naming the first that cannot."""
    for path in map(Path, paths):
        folder = path if path.is_dir() else path.parent
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise OutputError(f"cannot create output folder {folder}: {probe} is not a folder (output {path})")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {probe} is not writable (output {path})")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    On any failure (unwritable folder, full disk) the target is left as it was,
    the temporary file is removed, and :class:`OutputError` names the path.
    """
    path = Path(path)
    _check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary readable files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (sorted keys, trailing newline)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Atomically write rows as JSON lines; returns the number of rows."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(l + "\n" for l in lines))
    return len(lines)


def append_jsonl(path: str | os.PathLike, row: dict, fsync: bool = True) -> None:
    """Append one JSON line (append-only caches). A crash can cut at most this line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def decode_utf8(raw: bytes, path: str | os.PathLike, line: int = 1) -> str:
    """``raw`` (a file's bytes, or its line number ``line``) as text; a byte that is not UTF-8 raises
    :class:`DataError` naming the file, its line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line += raw.count(b"\n", 0, e.start)
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise DataError(path, f"not UTF-8: byte 0x{raw[e.start]:02x} at column {column}", line=line) from None


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 text file (:func:`decode_utf8`); a missing file raises :class:`DataError`."""
    try:
        return decode_utf8(Path(path).read_bytes(), path)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None


def read_jsonl(path: str | os.PathLike, validate: Callable[[dict, int], None] | None = None) -> list[dict]:
    """Read a JSONL (or ``.jsonl.gz``) file strictly.

    Blank lines are skipped. Invalid JSON, a non-object line, or a record that
    ``validate(record, line_no)`` rejects raises :class:`DataError` naming the
    file and line.
    """
    return list(iter_jsonl(path, validate))


def iter_jsonl(path: str | os.PathLike, validate: Callable[[dict, int], None] | None = None) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    with _open_bytes(path) as f:
        for i, raw in enumerate(f, 1):
            line = decode_utf8(raw, path, i)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"invalid JSON ({e.msg})", line=i) from None
            if not isinstance(rec, dict):
                raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=i)
            if validate is not None:
                try:
                    validate(rec, i)
                except DataError:
                    raise
                except (KeyError, TypeError, ValueError) as e:
                    field = e.args[0] if isinstance(e, KeyError) else None
                    raise DataError(path, str(e), line=i, field=field) from None
            yield rec


def read_jsonl_tolerant(path: str | os.PathLike) -> tuple[list[dict], list[int]]:
    """Read an append-only cache: returns (good rows, line numbers of corrupt lines).

    A line cut by a crash (or otherwise not a JSON object) is reported, never trusted.
    """
    path = Path(path)
    rows, bad = [], []
    if not path.exists():
        return rows, bad
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad.append(i)
                continue
            if isinstance(rec, dict):
                rows.append(rec)
            else:
                bad.append(i)
    return rows, bad


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a mapping that repeats a key is an error (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def load_yaml(text: str, path: str | os.PathLike = "<yaml>") -> Any:
    """YAML ``text`` (safe loader) in which no mapping repeats a key; a duplicate key or a syntax error
    raises :class:`DataError` naming ``path``, the line and the key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as e:
        raise DataError(path, f"duplicate key (first at line {e.first})", line=e.line, field=str(e.key)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DataError(path, f"invalid YAML: {problem}", line=mark.line + 1 if mark else None) from None


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file through :func:`load_yaml` (UTF-8 checked by :func:`read_text`)."""
    return load_yaml(read_text(path), path)


def stable_hash(*parts: Any) -> str:
    """SHA-256 hex digest of the JSON encoding of ``parts`` (cache keys, ids)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
