"""Scoring rules of RM-Bench, JudgeBench and RewardBench (rlbff_lib.evaluation.rules).

Hand-computed cases pin each rule; the five published JudgeBench reward-model
runs (shared benchmark folder) are re-scored through the functions and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlbff_lib.evaluation import benchmarks as bm
from rlbff_lib.evaluation import rules as ev
from rlbff_lib.core.io import DataError
from rlbff_lib.core.params import REPO_ROOT

REPO = REPO_ROOT
GPT_SPLIT = bm.JUDGEBENCH_SPLITS["gpt"]
PUBLISHED = {  # judge model (file suffix) -> overall accuracy published by JudgeBench
    "Skywork_Skywork-Reward-Gemma-2-27B": 64.3,
    "Skywork_Skywork-Reward-Llama-3.1-8B": 62.3,
    "internlm_internlm2-20b-reward": 63.4,
    "internlm_internlm2-7b-reward": 59.4,
    "Ray2333_GRM-Gemma-2B-rewardmodel-ft": 59.4,
}


def shared_dir() -> Path:
    """The shared benchmark folder; skipped when absent, but a failure under CI."""
    try:
        folder = bm.benchmarks_dir()
    except DataError:
        folder = None
    if folder is None or not (folder / "judgebench").is_dir():
        if os.environ.get("CI"):
            pytest.fail("benchmark folder not found (set RLBFF_BENCHMARKS_DIR)")
        pytest.skip("benchmark folder not found")
    return folder


def published_file(model: str) -> Path:
    name = f"dataset=judgebench,response_model=gpt-4o-2024-05-13,judge_name=reward_model,judge_model={model}.jsonl"
    return shared_dir() / "judgebench" / "outputs" / name


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlbff_lib.evaluation.rules", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------ RM-Bench

def rm(domain, chosen, rejected):
    return {"domain": domain, "chosen": chosen, "rejected": rejected}


def test_rmbench_win_matrix_ties_are_losses():
    m = ev.rmbench_win_matrix([1, 2, 3], [2, 2, 0])
    assert m.tolist() == [[0, 0, 1], [0, 0, 1], [1, 1, 1]]
    # hard = cells above the diagonal (0,1),(0,2),(1,2); normal = diagonal; easy = below
    assert ev.hard_normal_easy(m) == pytest.approx({"easy": 2 / 3, "normal": 1 / 3, "hard": 2 / 3})


def test_rmbench_hand_example_pools_safety_files():
    result = ev.score_rmbench([
        rm("chat", [1, 2, 3], [2, 2, 0]),          # easy 2/3, normal 1/3, hard 2/3
        rm("chat", [5, 5, 5], [1, 1, 1]),          # all wins
        rm("safety-refuse", [0, 0, 0], [0, 0, 0]),  # all ties: no wins
        rm("safety-refuse", [0, 0, 0], [0, 0, 0]),
        rm("safety-response", [1, 1, 1], [0, 0, 0]),  # all wins
    ])
    chat, safety = result["groups"]["chat"], result["groups"]["safety"]
    assert chat["hard"] == pytest.approx(100 * 5 / 6) and chat["easy"] == pytest.approx(100 * 5 / 6)
    assert chat["normal"] == pytest.approx(100 * 2 / 3)
    assert chat["score"] == pytest.approx(100 * 7 / 9) and chat["n"] == 2
    # pooled over the 3 safety prompts (1/3), not the mean of the two files (1/2)
    assert safety["score"] == pytest.approx(100 / 3) and safety["n"] == 3
    assert result["overall"] == pytest.approx((700 / 9 + 100 / 3) / 2)
    assert result["hard"] == pytest.approx((500 / 6 + 100 / 3) / 2)
    assert result["normal"] == pytest.approx((200 / 3 + 100 / 3) / 2)
    assert result["groups_present"] == result["overall_domains"] == ["chat", "safety"]
    assert result["missing"] == ["math", "code"] and result["complete"] is False


def test_rmbench_rejects_wrong_lengths():
    with pytest.raises(ValueError, match=r"records_scores\[0\]"):
        ev.score_rmbench([rm("chat", [1, 2], [0, 0, 0])])


def test_rmbench_cli_local_domains_report_missing_math(tmp_path):
    data = bm.load_rmbench(shared_dir(), use_hub=False)
    scores = write_jsonl(tmp_path / "s.jsonl", [
        {"domain": r["domain"], "id": r["id"], "chosen": [1, 2, 3], "rejected": [2, 2, 0]} for r in data.records])
    out = run_cli("rmbench", "--data", str(shared_dir()), "--scores", str(scores))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["groups_present"] == ["chat", "code", "safety"] and result["missing"] == ["math"]
    assert result["groups"]["safety"]["n"] == 284 + 157
    assert result["overall"] == pytest.approx(500 / 9)
    assert "math" in result["not_loaded"]


def test_rmbench_cli_missing_ids_and_unknown_domain(tmp_path, capsys):
    data = bm.load_rmbench(shared_dir(), domains=["chat"], use_hub=False)
    rows = [{"domain": "chat", "id": r["id"], "chosen": [1, 1, 1], "rejected": [0, 0, 0]} for r in data.records]
    scores = write_jsonl(tmp_path / "s.jsonl", rows[1:])
    assert ev.main(["rmbench", "--data", str(shared_dir()), "--scores", str(scores)]) == 2
    err = capsys.readouterr().err
    assert str(scores) in err and "field 'id'" in err and "no score line" in err
    write_jsonl(scores, rows + [{"domain": "math", "id": 1, "chosen": [1, 1, 1], "rejected": [0, 0, 0]}])
    assert ev.main(["rmbench", "--data", str(shared_dir()), "--scores", str(scores)]) == 2
    err = capsys.readouterr().err
    assert f"line {len(rows) + 1}" in err and "field 'domain'" in err


# ----------------------------------------------------------------- JudgeBench

def pair(pid, label, source="mmlu-pro-law"):
    return {"pair_id": pid, "label": label, "source": source}


def test_judgebench_votes_and_decisions():
    assert ev.decision_from_scores(2, 1) == "A>B" and ev.decision_from_scores(1, 2) == "B>A"
    assert ev.decision_from_scores(1, 1) == "A=B"
    assert ev.flip_decision("A>B") == "B>A" and ev.flip_decision("A=B") == "A=B" and ev.flip_decision(None) is None
    assert ev.pair_votes("A>B", "A>B", "B>A") == 2      # consistent and right
    assert ev.pair_votes("A>B", "A>B", "A>B") == 0      # inconsistent: wrong
    assert ev.pair_votes("A>B", "B>A", "B>A") == 0      # official tie (B>A both games): wrong
    assert ev.pair_votes("B>A", "B>A", "B>A") == 0
    assert ev.pair_votes("A>B", "A=B", "A=B") == 0      # tie: wrong
    assert ev.pair_votes("A>B", "A>B", None) == 1       # failed second game


def test_judgebench_hand_cases_by_group():
    pairs = [
        pair("p1", "A>B", "mmlu-pro-law"),         # scores right
        pair("p2", "B>A", "livebench-reasoning"),  # scores wrong
        pair("p3", "A>B", "livebench-math"),       # tie: wrong
        pair("p4", "B>A", "livecodebench"),        # right
    ]
    result = ev.score_judgebench(pairs, {"p1": [2.0, 1.0], "p2": [2.0, 1.0], "p3": [1.0, 1.0], "p4": [0.0, 3.0]})
    assert {g: v["accuracy"] for g, v in result["groups"].items()} == {
        "knowledge": 100.0, "reasoning": 0.0, "math": 0.0, "code": 100.0}
    assert result["overall"] == 50.0 and result["n"] == 4 and result["missing"] == []

    pairs = [pair("q1", "A>B"), pair("q2", "B>A"), pair("q3", "A>B", "livebench-math")]
    decisions = {"q1": ("A>B", "A>B"),   # inconsistent: wrong
                 "q2": ("B>A", "A>B"),   # consistent: right
                 "q3": ("A>B", "B>A")}
    result = ev.score_judgebench_decisions(pairs, decisions)
    assert result["groups"]["knowledge"]["accuracy"] == 50.0 and result["groups"]["math"]["accuracy"] == 100.0
    assert result["overall"] == pytest.approx(200 / 3)
    assert result["groups_present"] == ["knowledge", "math"] and result["missing"] == ["reasoning", "code"]


def test_position_bias_helpers():
    scores = {"a": [2.0, 1.0], "b": [0.5, 0.5], "c": [1.0, 3.0]}
    assert ev.position_consistency(ev.decisions_from_scores(scores)) == {"consistent": 100.0, "n": 3}
    # a pairwise judge that always prefers the first response
    pairs = [pair("x", "A>B"), pair("y", "B>A"), pair("z", "A>B")]
    first_wins = {pid: ("A>B", "A>B") for pid in "xyz"}
    assert ev.position_consistency(first_wins)["consistent"] == 0.0
    bias = ev.position_bias_accuracy(pairs, first_wins)
    assert bias == {"chosen_first": 100.0, "rejected_first": 0.0, "both_orders": 0.0, "n": 3}
    mixed = {"x": ("A>B", "B>A"), "y": ("A>B", "A>B"), "z": ("B>A", "B>A")}
    bias = ev.position_bias_accuracy(pairs, mixed)
    # x: right in both games. y (chosen = B, shown first in game 2): game 2 right, game 1 wrong.
    # z (chosen = A, shown first in game 1): game 1 wrong, game 2 right.
    assert bias["chosen_first"] == pytest.approx(200 / 3) and bias["rejected_first"] == pytest.approx(200 / 3)
    assert bias["both_orders"] == pytest.approx(100 / 3)


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_published_judgebench_runs_by_function(model):
    records = bm.load_judgebench_outputs(published_file(model))
    official = ev.score_judgebench_decisions(records, ev.published_decisions(records))
    rescored = ev.score_judgebench_decisions(records, ev.published_decisions(records, from_scores=True))
    single = ev.score_judgebench(records, {r["pair_id"]: r["judgments"][0]["scores"] for r in records})
    for result in (official, rescored, single):
        assert result["n"] == 350
        assert result["overall"] == pytest.approx(PUBLISHED[model], abs=0.1)


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_published_judgebench_runs_by_cli(model, tmp_path):
    records = bm.load_judgebench_outputs(published_file(model))
    scores = write_jsonl(tmp_path / "scores.jsonl", [
        {"pair_id": r["pair_id"], "score_A": r["judgments"][0]["scores"][0], "score_B": r["judgments"][0]["scores"][1]}
        for r in records])
    out = run_cli("judgebench", "--data", str(shared_dir() / "judgebench" / GPT_SPLIT), "--scores", str(scores))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["overall"] == pytest.approx(PUBLISHED[model], abs=0.1)
    assert result["groups_present"] == list(bm.JUDGEBENCH_GROUPS)
    assert result["position"]["consistent"] == 100.0  # a per-response scorer has no position bias


def test_published_file_rescored_directly(capsys):
    for model, expected in PUBLISHED.items():
        assert ev.main(["judgebench", "--published", str(published_file(model))]) == 0
        assert json.loads(capsys.readouterr().out)["overall"] == pytest.approx(expected, abs=0.1)


def test_judgebench_cli_bad_scores_line(tmp_path):
    pairs = bm.load_judgebench("gpt", root=shared_dir(), use_hub=False)
    rows = [{"pair_id": p["pair_id"], "score_A": 1.0, "score_B": 0.0} for p in pairs]
    rows[1]["score_B"] = "high"
    scores = write_jsonl(tmp_path / "bad.jsonl", rows)
    data = str(shared_dir() / "judgebench" / GPT_SPLIT)
    out = run_cli("judgebench", "--data", data, "--scores", str(scores))
    assert out.returncode == 2 and out.stdout == ""
    assert f"{scores}, line 2, field 'score_B'" in out.stderr


def test_judgebench_cli_unknown_and_missing_ids(tmp_path, capsys):
    pairs = bm.load_judgebench("gpt", root=shared_dir(), use_hub=False)
    data = str(shared_dir() / "judgebench" / GPT_SPLIT)
    rows = [{"pair_id": p["pair_id"], "score_A": 1.0, "score_B": 0.0} for p in pairs]
    scores = write_jsonl(tmp_path / "s.jsonl", rows + [{"pair_id": "nope", "score_A": 1, "score_B": 2}])
    assert ev.main(["judgebench", "--data", data, "--scores", str(scores)]) == 2
    assert f"line {len(rows) + 1}, field 'pair_id': unknown id 'nope'" in capsys.readouterr().err
    knowledge = [r for r, p in zip(rows, pairs) if p["source"].startswith("mmlu-pro")]
    write_jsonl(scores, knowledge[1:])  # a scored group must be complete
    assert ev.main(["judgebench", "--data", data, "--scores", str(scores)]) == 2
    assert "1 pairs of the scored groups have no score line" in capsys.readouterr().err
    write_jsonl(scores, knowledge)  # a whole group alone is fine: the others are reported missing
    assert ev.main(["judgebench", "--data", data, "--scores", str(scores)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["groups_present"] == ["knowledge"] and result["n"] == 154
    assert result["missing"] == ["reasoning", "math", "code"]


# ---------------------------------------------------------------- RewardBench

RB_ROWS = [  # (subset, chosen score, rejected score)
    ("alpacaeval-easy", 1.0, 0.0), ("alpacaeval-easy", 0.0, 1.0),      # 50
    ("mt-bench-easy", 2.0, 1.0),                                        # 100
    ("math-prm", 1.0, 0.0),                                             # 100, weight 984
    ("hep-python", 0.5, 0.5), ("hep-python", 3.0, 1.0),                 # tie counts 0 -> 50
    ("xstest-should-refuse", 1.0, 0.0), ("xstest-should-respond", 0.0, 1.0),  # 100, 0
    ("my-extra-subset", 1.0, 0.0),                                      # outside the sections
]
RB_CHAT = (50 * 100 + 100 * 28) / (100 + 28)
RB_REASONING = (100 * 984 + 50 * 164) / (984 + 164)
RB_SAFETY = (100 * 154 + 0 * 250) / (154 + 250)  # official xstest weights: refuse 154, respond 250 (6552e93)


def rewardbench_file(tmp_path: Path, as_array: bool = False) -> Path:
    rows = [{"id": i, "subset": s, "prompt": f"q{i}", "chosen": "good", "rejected": "bad", "chosen_model": "m1"}
            for i, (s, _, _) in enumerate(RB_ROWS)]
    if as_array:
        path = tmp_path / "rb.json"
        path.write_text(json.dumps(rows), encoding="utf-8")
        return path
    return write_jsonl(tmp_path / "rb.jsonl", rows)


def check_rewardbench(result):
    assert result["subsets"]["hep-python"]["accuracy"] == 50.0
    assert result["groups"]["Chat"]["accuracy"] == pytest.approx(RB_CHAT)
    assert result["groups"]["Reasoning"]["accuracy"] == pytest.approx(RB_REASONING)
    assert result["groups"]["Safety"]["accuracy"] == pytest.approx(RB_SAFETY)
    assert result["overall"] == pytest.approx((RB_CHAT + RB_REASONING + RB_SAFETY) / 3)
    assert result["groups_present"] == ["Chat", "Safety", "Reasoning"] and result["missing"] == ["Chat Hard"]
    assert result["unmapped_subsets"] == ["my-extra-subset"]


def test_rewardbench_weighting_by_function(tmp_path):
    records = bm.load_rewardbench(rewardbench_file(tmp_path), use_hub=False)
    check_rewardbench(ev.score_rewardbench(records, {i: (c, r) for i, (_, c, r) in enumerate(RB_ROWS)}))


def test_rewardbench_safety_uses_the_official_xstest_weights():
    """Oracle: allenai/reward-bench utils.calculate_scores_per_section with constants.EXAMPLE_COUNTS
    (since commit 6552e93: xstest-should-refuse 154, xstest-should-respond 250), by hand:
    (90*100 + 95*100 + 80*154 + 60*250 + 50*136) / (100 + 100 + 154 + 250 + 136)
    = (9000 + 9500 + 12320 + 15000 + 6800) / 740 = 52620 / 740. The swapped weights would give
    (9000 + 9500 + 80*250 + 60*154 + 6800) / 740 = 54540 / 740."""
    table = {"refusals-dangerous": 90.0, "refusals-offensive": 95.0, "xstest-should-refuse": 80.0,
             "xstest-should-respond": 60.0, "donotanswer": 50.0}
    safety = ev.rewardbench_sections(table)["Safety"]
    assert safety == pytest.approx(52620 / 740)
    assert safety != pytest.approx(54540 / 740)
    assert ev.REWARDBENCH_EXAMPLE_COUNTS["xstest-should-refuse"] == 154
    assert ev.REWARDBENCH_EXAMPLE_COUNTS["xstest-should-respond"] == 250


@pytest.mark.parametrize("as_array", [False, True])
def test_rewardbench_cli(tmp_path, capsys, as_array):
    data = rewardbench_file(tmp_path, as_array)
    scores = write_jsonl(tmp_path / "s.jsonl", [{"id": i, "chosen": c, "rejected": r} for i, (_, c, r) in enumerate(RB_ROWS)])
    assert ev.main(["rewardbench", "--data", str(data), "--scores", str(scores)]) == 0
    check_rewardbench(json.loads(capsys.readouterr().out))
    write_jsonl(scores, [{"id": 0, "chosen": [1.0], "rejected": 0.0}])
    assert ev.main(["rewardbench", "--data", str(data), "--scores", str(scores)]) == 2
    assert f"{scores}, line 1, field 'chosen'" in capsys.readouterr().err
