"""Outputs are all-or-nothing: atomic writes, clear errors on unwritable folders and full disks,
append-only caches whose cut lines are detected, strict JSONL reading with file and line."""
import errno
import json
import os

import pytest

from rlbff_lib.core import io
from rlbff_lib.core.io import DataError, OutputError


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out" / "m.json"
    io.write_json(target, {"a": 1})
    io.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]  # no temporary left behind


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder .*not_a_folder"):
        io.write_json(blocker / "metrics.json", {"a": 1})


def test_full_disk_leaves_the_old_output_and_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "rows.jsonl"
    io.write_jsonl(target, [{"old": True}])

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", no_space)
    with pytest.raises(OutputError, match=f"cannot write {target}.*No space left"):
        io.write_jsonl(target, [{"new": i} for i in range(100)])
    monkeypatch.undo()
    assert io.read_jsonl(target) == [{"old": True}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_cut_cache_line_is_detected_not_trusted(tmp_path):
    cache = tmp_path / "cache.jsonl"
    io.append_jsonl(cache, {"key": "a", "value": 1})
    io.append_jsonl(cache, {"key": "b", "value": 2})
    with open(cache, "a") as f:
        f.write('{"key": "c", "val')  # a crash cut this line
    rows, bad = io.read_jsonl_tolerant(cache)
    assert [r["key"] for r in rows] == ["a", "b"] and bad == [3]


def test_strict_reader_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"d.jsonl, line 3: expected a JSON object"):
        io.read_jsonl(path)

    def needs_b(rec, line):
        if "b" not in rec:
            raise KeyError("b")

    path.write_text('{"b": 1}\n{"a": 1}\n')
    with pytest.raises(DataError) as e:
        io.read_jsonl(path, needs_b)
    assert e.value.line == 2 and e.value.field == "b"
    with pytest.raises(DataError, match="file not found"):
        io.read_jsonl(tmp_path / "missing.jsonl")


def test_stable_hash_is_order_independent_for_dict_keys():
    assert io.stable_hash({"a": 1, "b": 2}) == io.stable_hash({"b": 2, "a": 1})
    assert io.stable_hash("x", 1) != io.stable_hash("x", 2)
