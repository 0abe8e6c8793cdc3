"""Benchmark loaders (rlbff_lib.evaluation.benchmarks) on the real shared files, on broken
copies of them, and the folder resolution order. No network: hub access is
replaced by stubs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rlbff_lib.evaluation import benchmarks as bm
from rlbff_lib.core.io import DataError


def shared_dir() -> Path:
    """The shared benchmark folder; skipped when absent, but a failure under CI."""
    try:
        folder = bm.benchmarks_dir()
    except DataError:
        folder = None
    if folder is None or not (folder / "rm-bench").is_dir():
        if os.environ.get("CI"):
            pytest.fail("benchmark folder not found (set RLBFF_BENCHMARKS_DIR)")
        pytest.skip("benchmark folder not found")
    return folder


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]  # not splitlines: U+2028 occurs inside strings


@pytest.fixture
def no_hub(monkeypatch):
    """Hub access fails as it does offline."""
    def unavailable(repo_id, split):
        raise bm.HubUnavailable(f"could not load {repo_id} (split {split!r}) from the hub: offline")
    monkeypatch.setattr(bm, "_hub_rows", unavailable)


# ---------------------------------------------------------- folder resolution

def test_benchmarks_dir_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir(), env.mkdir()
    fake_repo = tmp_path / "work" / "repo"
    conventional = tmp_path / "work" / "shared" / "benchmarks"
    monkeypatch.setattr(bm, "repo_root", lambda: fake_repo)
    monkeypatch.setenv(bm.ENV_VAR, str(env))
    assert bm.benchmarks_dir(explicit) == explicit.resolve()
    assert bm.benchmarks_dir() == env.resolve()
    monkeypatch.delenv(bm.ENV_VAR)
    assert bm.benchmarks_dir() is None  # nothing conventional yet: hub fallback
    conventional.mkdir(parents=True)
    assert bm.benchmarks_dir() == conventional.resolve()
    monkeypatch.setenv(bm.ENV_VAR, "")  # empty means unset
    assert bm.benchmarks_dir() == conventional.resolve()


def test_benchmarks_dir_refuses_missing_given_folders(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not an existing folder"):
        bm.benchmarks_dir(tmp_path / "nope")
    monkeypatch.setenv(bm.ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(DataError, match=bm.ENV_VAR):
        bm.benchmarks_dir()


# ------------------------------------------------------------------- RM-Bench

def test_rmbench_local_counts_and_shape(no_hub):
    data = bm.load_rmbench(shared_dir())
    counts = {d: sum(r["domain"] == d for r in data.records) for d in bm.RMBENCH_DOMAINS}
    assert counts == {"chat": 129, "code": 228, "math": 0, "safety-refuse": 284, "safety-response": 157}
    assert list(data.missing) == ["math"] and "offline" in data.missing["math"]
    assert data.domains() == ["chat", "code", "safety-refuse", "safety-response"]
    rec = data.records[0]
    assert set(rec) == {"domain", "id", "prompt", "chosen", "rejected"}
    assert len(rec["chosen"]) == len(rec["rejected"]) == 3


def test_rmbench_math_from_hub_stub(monkeypatch, tmp_path):
    rows = [{"id": i, "domain": "math", "prompt": "1+1?", "chosen": ["2"] * 3, "rejected": ["3"] * 3} for i in range(4)]
    rows.append({"id": 9, "domain": "chat", "prompt": "hi", "chosen": ["a"] * 3, "rejected": ["b"] * 3})
    monkeypatch.setattr(bm, "_hub_rows", lambda repo_id, split: rows)
    data = bm.load_rmbench(tmp_path, domains=["math"])  # nothing local here
    assert [r["domain"] for r in data.records] == ["math"] * 4 and data.missing == {}
    assert data.sources == {"math": f"hf://datasets/{bm.RMBENCH_HUB}"}
    rows[2]["domain"] = "poetry"
    with pytest.raises(DataError) as err:
        bm.load_rmbench(tmp_path, domains=["math"])
    assert "record 2" in str(err.value) and err.value.field == "domain"


def test_rmbench_subsample_is_seeded(no_hub):
    a = bm.load_rmbench(shared_dir(), domains=["chat", "code"], limit=5, seed=1).records
    b = bm.load_rmbench(shared_dir(), domains=["chat", "code"], limit=5, seed=1).records
    c = bm.load_rmbench(shared_dir(), domains=["chat", "code"], limit=5, seed=2).records
    assert len(a) == 10 and [r["id"] for r in a] == [r["id"] for r in b] != [r["id"] for r in c]


@pytest.mark.parametrize("field,value,message", [
    ("chosen", ["only", "two"], "exactly 3 items"),
    ("rejected", "not a list", "list of strings"),
    ("prompt", None, "must be a string"),
])
def test_rmbench_bad_record_names_file_record_field(tmp_path, no_hub, field, value, message):
    records = json.loads((shared_dir() / "rm-bench" / "chat_filtered.json").read_text(encoding="utf-8"))
    records[3][field] = value
    broken = tmp_path / "rm-bench" / "chat_filtered.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError) as err:
        bm.load_rmbench(tmp_path, domains=["chat"])
    assert err.value.path == str(broken) and err.value.field == field
    assert "record 3" in str(err.value) and message in str(err.value)


def test_rmbench_duplicate_id(tmp_path):
    records = json.loads((shared_dir() / "rm-bench" / "code_filtered.json").read_text(encoding="utf-8"))[:3]
    records[2]["id"] = records[0]["id"]
    path = tmp_path / "code_filtered.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError, match="record 2: duplicate id"):
        bm.load_rmbench_file(path, "code")


# ----------------------------------------------------------------- JudgeBench

def test_judgebench_local_splits():
    gpt = bm.load_judgebench("gpt", root=shared_dir(), use_hub=False)
    claude = bm.load_judgebench("claude", root=shared_dir(), use_hub=False)
    assert len(gpt) == 350 and len(claude) == 270
    assert set(gpt[0]) == {"pair_id", "original_id", "source", "question", "response_model",
                           "response_A", "response_B", "label"}
    groups = [bm.judgebench_group(p["source"]) for p in gpt]
    assert {g: groups.count(g) for g in bm.JUDGEBENCH_GROUPS} == {"knowledge": 154, "reasoning": 98, "math": 56, "code": 42}
    assert {p["label"] for p in gpt + claude} == {"A>B", "B>A"}
    assert len(bm.load_judgebench("gpt", root=shared_dir(), use_hub=False, limit=20, seed=3)) == 20


def test_judgebench_group_mapping():
    assert bm.judgebench_group("mmlu-pro-computer science") == "knowledge"
    assert bm.judgebench_group("livebench-reasoning") == "reasoning"
    assert bm.judgebench_group("livebench-math") == "math"
    assert bm.judgebench_group("livecodebench") == "code"
    with pytest.raises(ValueError):
        bm.judgebench_group("gsm8k")


def test_judgebench_hub_fallback_and_failure(tmp_path, monkeypatch, no_hub):
    with pytest.raises(bm.HubUnavailable):
        bm.load_judgebench("claude", root=tmp_path)
    with pytest.raises(DataError, match="hub is disabled"):
        bm.load_judgebench("claude", root=tmp_path, use_hub=False)
    rows = read_jsonl_rows(shared_dir() / "judgebench" / bm.JUDGEBENCH_SPLITS["claude"])[:5]
    monkeypatch.setattr(bm, "_hub_rows", lambda repo_id, split: rows)
    assert len(bm.load_judgebench("claude", root=tmp_path)) == 5


@pytest.mark.parametrize("field,value,message", [
    ("label", "A=B", "must be one of"),
    ("question", 7, "must be a string"),
    ("source", "unknown-source", "unknown JudgeBench source"),
    ("pair_id", None, "must be a string"),
])
def test_judgebench_bad_record_names_file_line_field(tmp_path, field, value, message):
    rows = read_jsonl_rows(shared_dir() / "judgebench" / bm.JUDGEBENCH_SPLITS["gpt"])[:8]
    rows[4][field] = value
    path = write_jsonl(tmp_path / "judgebench" / bm.JUDGEBENCH_SPLITS["gpt"], rows)
    with pytest.raises(DataError) as err:
        bm.load_judgebench("gpt", root=tmp_path, use_hub=False)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 5, field)
    assert message in str(err.value)


def test_judgebench_missing_field_and_blank_lines(tmp_path):
    rows = read_jsonl_rows(shared_dir() / "judgebench" / bm.JUDGEBENCH_SPLITS["gpt"])[:3]
    del rows[2]["response_B"]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        bm.load_judgebench_file(path)
    assert (err.value.line, err.value.field) == (4, "response_B") and "missing required field" in str(err.value)


def test_judgebench_published_outputs_validated(tmp_path):
    outputs = sorted((shared_dir() / "judgebench" / "outputs").glob("*.jsonl"))
    assert len(outputs) == 5
    records = bm.load_judgebench_outputs(outputs[0])
    assert len(records) == 350 and len(records[0]["judgments"]) == 2
    assert set(records[0]["judgments"][0]) == {"decision", "scores"}
    rows = read_jsonl_rows(outputs[0])[:3]
    rows[1]["judgments"][1]["judgment"]["scores"] = [1.0]
    path = write_jsonl(tmp_path / "out.jsonl", rows)
    with pytest.raises(DataError) as err:
        bm.load_judgebench_outputs(path)
    assert (err.value.line, err.value.field) == (2, "scores") and "exactly 2 numbers" in str(err.value)


# ---------------------------------------------------------------- RewardBench

def rewardbench_rows(n=4):
    return [{"prompt": f"q{i}", "chosen": "good", "chosen_model": "m1", "rejected": "bad",
             "rejected_model": "m2", "subset": "hep-go", "id": 100 + i} for i in range(n)]


def test_rewardbench_local_file_schema(tmp_path):
    path = write_jsonl(tmp_path / "rb.jsonl", rewardbench_rows())
    records = bm.load_rewardbench(path, use_hub=False)
    assert [r["id"] for r in records] == [100, 101, 102, 103]
    assert set(records[0]) == {"id", "subset", "prompt", "chosen", "rejected", "chosen_model", "rejected_model"}
    assert len(bm.load_rewardbench(path, limit=2, seed=0)) == 2


@pytest.mark.parametrize("field,value", [("subset", None), ("chosen", ["a"]), ("id", 100)])
def test_rewardbench_bad_record(tmp_path, field, value):
    rows = rewardbench_rows()
    rows[2][field] = value
    path = write_jsonl(tmp_path / "rb.jsonl", rows)
    with pytest.raises(DataError) as err:
        bm.load_rewardbench(path, use_hub=False)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, field)


def test_rewardbench_json_array_reports_index(tmp_path):
    rows = rewardbench_rows()
    del rows[1]["prompt"]
    path = tmp_path / "rb.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(DataError) as err:
        bm.load_rewardbench(path, use_hub=False)
    assert "record 1" in str(err.value) and err.value.field == "prompt"


def test_rewardbench_hub_unavailable(no_hub):
    with pytest.raises(bm.HubUnavailable, match="allenai/reward-bench"):
        bm.load_rewardbench()


# ------------------------------------------------------ MT-Bench, Arena-Hard

def test_mtbench_loader():
    mt = bm.load_mtbench(shared_dir())
    assert len(mt.questions) == 80 and all(len(q["turns"]) == 2 for q in mt.questions)
    assert len(mt.references) == 30
    need_ref = [q["question_id"] for q in mt.questions if q["category"] in bm.MTBENCH_NEED_REF_CATEGORIES]
    assert sorted(need_ref) == sorted(mt.references)
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(mt.judge_prompts)
    assert "[[rating]]" in mt.judge_prompts["single-v1"]["output_format"]


def copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.glob("*.jsonl"):
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_mtbench_bad_records(tmp_path):
    folder = copy_folder(shared_dir() / "mt-bench", tmp_path / "mt-bench")
    questions = read_jsonl_rows(folder / "question.jsonl")
    questions[6]["turns"] = "one string"
    write_jsonl(folder / "question.jsonl", questions)
    with pytest.raises(DataError) as err:
        bm.load_mtbench(tmp_path)
    assert (err.value.line, err.value.field) == (7, "turns")
    questions[6]["turns"] = ["a", "b"]
    write_jsonl(folder / "question.jsonl", questions)
    refs = read_jsonl_rows(folder / "reference_answer_gpt-4.jsonl")
    write_jsonl(folder / "reference_answer_gpt-4.jsonl", refs[1:])
    with pytest.raises(DataError, match="no reference answer"):
        bm.load_mtbench(tmp_path)


def test_arena_hard_loader():
    arena = bm.load_arena_hard(shared_dir())
    # officially creative writing is judged against gemini-2.0-flash-001, whose answers are not in the folder
    assert arena.baselines == {"hard_prompt": "o3-mini-2025-01-31"}
    assert set(arena.skipped) == {"creative_writing"} and "gemini-2.0-flash-001.jsonl" in arena.skipped["creative_writing"]
    assert len(arena.questions) == 500 and {q["category"] for q in arena.questions} == {"hard_prompt"}
    assert len(arena.answers["o3-mini-2025-01-31"]) == 750   # the file answers all 750; 500 are used
    assert all(arena.baseline_answer(q) for q in arena.questions)


def test_arena_hard_each_category_gets_its_own_baseline(tmp_path):
    folder = copy_folder(shared_dir() / "arena-hard-v2", tmp_path / "arena-hard-v2")
    categories = {q["uid"]: q["category"] for q in read_jsonl_rows(folder / "question.jsonl")}
    creative = [dict(a, model="gemini-2.0-flash-001") for a in read_jsonl_rows(folder / "o3-mini-2025-01-31.jsonl")
                if categories[a["uid"]] == "creative_writing"]
    for a in creative:
        a["messages"] = [{"role": "assistant", "content": {"answer": "gemini says " + a["uid"]}}]
    write_jsonl(folder / "gemini-2.0-flash-001.jsonl", creative)
    arena = bm.load_arena_hard(tmp_path)
    assert arena.skipped == {} and len(arena.questions) == 750
    assert arena.baselines == {"hard_prompt": "o3-mini-2025-01-31", "creative_writing": "gemini-2.0-flash-001"}
    q = next(q for q in arena.questions if q["category"] == "creative_writing")
    assert arena.baseline_answer(q) == "gemini says " + q["uid"]
    write_jsonl(folder / "gemini-2.0-flash-001.jsonl", creative[1:])
    with pytest.raises(DataError, match="1 creative_writing questions have no baseline answer"):
        bm.load_arena_hard(tmp_path)
    creative[0]["model"] = "someone-else"
    write_jsonl(folder / "gemini-2.0-flash-001.jsonl", creative)
    with pytest.raises(DataError) as err:
        bm.load_arena_hard(tmp_path)
    assert (err.value.line, err.value.field) == (1, "model")


def test_arena_hard_bad_records(tmp_path):
    folder = copy_folder(shared_dir() / "arena-hard-v2", tmp_path / "arena-hard-v2")
    base = folder / "o3-mini-2025-01-31.jsonl"
    answers = read_jsonl_rows(base)
    answers[9]["messages"][-1]["content"] = {"answer": ""}
    write_jsonl(base, answers)
    with pytest.raises(DataError) as err:
        bm.load_arena_hard(tmp_path)
    assert (err.value.path, err.value.line, err.value.field) == (str(base), 10, "messages")
    write_jsonl(base, answers[:9] + answers[10:])   # answers[9] is a hard prompt
    with pytest.raises(DataError, match="1 hard_prompt questions have no baseline answer"):
        bm.load_arena_hard(tmp_path)
    base.unlink()
    with pytest.raises(DataError, match="no baseline answers for any category"):
        bm.load_arena_hard(tmp_path)
    questions = read_jsonl_rows(folder / "question.jsonl")
    questions[1]["category"] = "poetry"
    write_jsonl(folder / "question.jsonl", questions)
    with pytest.raises(DataError) as err:
        bm.load_arena_hard(tmp_path)
    assert (err.value.line, err.value.field) == (2, "category")
    del questions[0]["prompt"]
    write_jsonl(folder / "question.jsonl", questions)
    with pytest.raises(DataError) as err:
        bm.load_arena_hard(tmp_path)
    assert (err.value.line, err.value.field) == (1, "prompt")
