"""The alignment stage's own logic: config, inputs, principle phrasing, run keys and metrics."""
import json
import math

import pytest

from rlbff_lib.stages import alignment as A
from rlbff_lib.core.io import DataError
from rlbff_lib.core.params import ParamError, build


def test_config_validation_names_the_field():
    with pytest.raises(ParamError, match="alignment.rewards"):
        build(A.AlignmentStageConfig, {"rewards": ["scalar", "nope"]}, "alignment")
    with pytest.raises(ParamError, match="alignment.seeds"):
        build(A.AlignmentStageConfig, {"seeds": [1, 1]}, "alignment")
    with pytest.raises(ParamError, match="alignment.fulfilment.n_prompts"):
        build(A.AlignmentStageConfig, {"fulfilment": {"n_prompts": 0}}, "alignment")
    with pytest.raises(ParamError, match="alignment.grpo.num_generations"):
        build(A.AlignmentStageConfig, {"grpo": {"num_generations": 1}}, "alignment")


def test_each_reward_gets_its_model_folder():
    cfg = A.AlignmentStageConfig(reward_models_dir="rm")
    assert cfg.reward_config("scalar").model_path == "rm/scalar"
    assert cfg.reward_config("bt").backend == "bt" and cfg.reward_config("bt").model_path == "rm/bt"
    assert cfg.reward_config("checker").model_path == cfg.grpo.reward.model_path  # needs none
    runs = A.run_configs(cfg, ["followup_question"], {"followup_question": ["ends with a question"]})
    assert [(b, s) for b, s, _ in runs] == [("scalar", 0), ("scalar", 1), ("scalar", 2), ("bt", 0), ("bt", 1), ("bt", 2)]
    assert {c.seed for _, _, c in runs} == {0, 1, 2}
    assert all(c.principle_texts == {"followup_question": ["ends with a question"]} for _, _, c in runs)


def test_principle_texts_are_the_rm_training_strings_most_frequent_first():
    items = [{"property": "bulleted_list", "principle": p} for p in ["uses bullet points"] * 3 + ["bullets"] * 2
             + ["has a list"]] + [{"property": None, "principle": "clarity"}]
    assert A.principle_texts(items, ["bulleted_list", "concise"], 2) == {"bulleted_list": ["uses bullet points", "bullets"]}


def test_principle_texts_leave_out_wordings_the_rm_has_barely_seen():
    """The counts of the smoke run that lost the fulfilment gain: merging by meaning left 708 items on the
    canonical wording and a handful on others; asking the reward with those was noise."""
    items = [{"property": "followup_question", "principle": p} for p, n in
             [("ends with a follow-up question", 708), ("asks a follow-up question", 6), ("follow-up question", 3)]
             for _ in range(n)]
    items += [{"property": "concise", "principle": p} for p, n in [("conciseness", 20), ("is concise", 2)] for _ in range(n)]
    props = ["followup_question", "concise"]
    assert A.principle_texts(items, props, 3, 0.1) == {"followup_question": ["ends with a follow-up question"],
                                                        "concise": ["conciseness", "is concise"]}
    assert A.principle_texts(items, props, 3, 0.0)["followup_question"] == [
        "ends with a follow-up question", "asks a follow-up question", "follow-up question"]
    with pytest.raises(ValueError, match="principle_texts_min_share"):
        A.AlignmentStageConfig(principle_texts_min_share=1.5)


def test_missing_inputs_fail_before_any_training(tmp_path):
    cfg = A.AlignmentStageConfig(reward_models_dir=str(tmp_path / "rm"), principles_file=None,
                                 policy=A.PolicySFTConfig(name_or_path=str(tmp_path)))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(DataError, match="rewards: scalar: model folder not found"):
        A.check_inputs(cfg)
    (tmp_path / "rm" / "scalar").mkdir(parents=True)
    with pytest.raises(DataError, match="no safetensors"):
        A.check_inputs(cfg)
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "principles": []}) + "\n")
    for name in ("scalar", "bt"):
        (tmp_path / "rm" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "rm" / name / "model.safetensors").write_bytes(b"x")
    cfg.evaluation.judge_model_path = str(tmp_path / "rm" / "scalar")
    A.check_inputs(cfg)
    cfg.prompt_source, cfg.prompts_file = "file", str(tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match="prompts_file: not found"):
        A.check_inputs(cfg)
    cfg.prompts_file = str(bad)
    with pytest.raises(ValueError, match=r"rows.jsonl\[0\]: principles"):
        A.check_inputs(cfg)


def test_prompts_from_the_principle_items_carry_their_principles(tmp_path):
    ctx = lambda t: [{"role": "user", "content": t}]
    items = [{"prompt_id": "p1", "context": ctx("a"), "principle": "is concise", "domain": "general"},
             {"prompt_id": "p2", "context": ctx("b"), "principle": "uses bullet points", "domain": "stem"},
             {"prompt_id": "p1", "context": ctx("a"), "principle": "is concise", "domain": "general"},
             {"prompt_id": "p1", "context": ctx("a"), "principle": "ends with a question", "domain": "general"},
             {"prompt_id": "p1", "context": ctx("a"), "principle": "clarity", "domain": "general"}]
    rows = A.rows_from_items(items, max_principles=2)
    assert [(r["id"], r["prompt"], r["principles"]) for r in rows] == [
        ("p1", ctx("a"), ["is concise", "ends with a question"]), ("p2", ctx("b"), ["uses bullet points"])]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    cfg = A.AlignmentStageConfig(prompt_source="principles", principles_file=str(path))
    assert [r["principles"] for r in A.training_rows(cfg)] == [["is concise"], ["uses bullet points"]]
    assert A.training_rows(A.AlignmentStageConfig()) is None  # world prompts
    with pytest.raises(ParamError, match="alignment.prompts_file"):
        build(A.AlignmentStageConfig, {"prompt_source": "file"}, "alignment")


def _ful(trained, held_out, tokens, rates):
    return {"rates": rates, "trained": trained, "held_out": held_out, "mean_words": tokens / 2, "mean_prose_words": 1,
            "mean_tokens": tokens, "terminated": 1.0, "language_ok": 1.0, "n_responses": 10}


def test_fulfilment_metrics_gain_is_grpo_minus_sft_over_seeds():
    cfg = A.AlignmentStageConfig(seeds=[0, 1, 2])
    sft = [_ful(0.4, 0.5, 40, {"a": 0.4, "h": 0.5}), _ful(0.5, 0.5, 40, {"a": 0.5, "h": 0.5}),
           _ful(0.6, 0.5, 40, {"a": 0.6, "h": 0.5})]
    runs = {"scalar": [_ful(v, 0.5, 50, {"a": v, "h": 0.5}) for v in (0.8, 0.9, 0.7)],
            "bt": [_ful(v, 0.4, 80, {"a": v, "h": 0.4}) for v in (0.5, 0.6, 0.4)]}
    m = A.fulfilment_metrics(cfg, sft, runs)
    assert m["gain"]["mean"] == pytest.approx(0.3)
    assert m["gain"]["std"] == pytest.approx(0.1)
    # Welch: se = sqrt(0.01/3 + 0.01/3), df = 4, t(0.975, 4) = 2.776 (the t table): 0.3 +- 0.2267, above 0
    assert m["gain"]["ci"] == pytest.approx([0.3 - 2.7764 * math.sqrt(0.02 / 3), 0.3 + 2.7764 * math.sqrt(0.02 / 3)],
                                            abs=1e-4)
    assert m["gain"]["significant"] is True and m["gain"]["above_noise"] is True and m["gain"]["df"] == pytest.approx(4)
    assert 0.02 < m["gain"]["p_value"] < 0.025  # t = 3.674 on 4 df (table: 3.495 -> 0.025, 3.747 -> 0.02)
    assert [s["gain"] for s in m["seeds"]] == pytest.approx([0.3, 0.4, 0.2])
    assert m["by_reward"]["bt"]["trained"]["gain"] == pytest.approx(0.0)
    assert m["by_reward"]["bt"]["trained"]["significant"] is False
    assert m["by_reward"]["bt"]["trained"]["p_value"] == pytest.approx(1.0)  # no difference at all
    assert m["by_reward"]["bt"]["trained"]["ci"][0] < 0 < m["by_reward"]["bt"]["trained"]["ci"][1]
    assert m["by_reward"]["bt"]["mean_tokens"]["gain"] == pytest.approx(40)
    assert m["before"]["rates"] == pytest.approx({"a": 0.5, "h": 0.5})
    assert m["after_by_reward"]["bt"]["held_out"] == pytest.approx(0.4)
    assert m["before"]["rates_ci"] is None  # results without counts get no intervals


def test_fulfilment_rates_carry_wilson_intervals_over_their_answers():
    from rlbff_lib.core.stats import wilson_interval

    cfg = A.AlignmentStageConfig(seeds=[0, 1])
    counted = lambda v: {**_ful(v, 0.5, 40, {"a": v, "h": 0.5}), "counts": {"a": 20, "h": 0}}
    sft, runs = [counted(0.4), counted(0.5)], {"scalar": [counted(0.75), counted(0.85)]}
    m = A.fulfilment_metrics(cfg, sft, runs)
    assert m["before"]["counts"] == {"a": 40, "h": 0}  # two seeds of 20 answers each, pooled
    assert m["before"]["rates_ci"]["a"] == pytest.approx(list(wilson_interval(18, 40)))  # 0.45 of 40
    assert m["after"]["rates_ci"]["a"] == pytest.approx(list(wilson_interval(32, 40))) and m["after"]["rates_ci"]["h"] is None
    assert m["per_run"]["scalar s1"]["rates_ci"]["a"] == pytest.approx(list(wilson_interval(17, 20)))
    assert m["sft_per_seed"][0]["counts"] == {"a": 20, "h": 0}


def test_benchmark_rows_pool_the_seeds_of_a_reward():
    cfg = A.AlignmentStageConfig()
    mt = lambda x: {"judge": "j", "n_questions": 2, "scores": {"overall": x}}
    arena = lambda games: {"judge": "j", "baselines": {"hard_prompt": "o3-mini"}, "skipped": {}, "records": [
        {"uid": str(i), "category": "hard_prompt", "games": g} for i, g in enumerate(games)]}
    # policy 1 wins both games of each battle (B>A with baseline as A, then A>B), policy 2 loses them
    results = [{"mt_bench": mt(6.0), "arena_hard": arena([["B>A", "A>B"]] * 4)},
               {"mt_bench": mt(8.0), "arena_hard": arena([["A>B", "B>A"]] * 4)}]
    row = A._bench_row(results, cfg)
    assert row["mt_bench"]["overall"] == pytest.approx(7.0) and row["mt_bench"]["per_policy"] == [6.0, 8.0]
    assert row["arena_hard"]["n_policies"] == 2 and row["arena_hard"]["n_outcomes"] == 16
    assert row["arena_hard"]["mean_score"] == 50.0  # one wins, one loses: even
    assert row["arena_hard"]["categories"]["hard_prompt"]["baseline"] == "o3-mini"
    assert A._bench_row([], cfg) == {"mt_bench": None, "arena_hard": None, "wildbench": None}


def test_load_benchmarks_says_what_is_available(tmp_path):
    from rlbff_lib.evaluation import benchmarks as bm

    shared = bm.benchmarks_dir()
    if shared is None or not (shared / "arena-hard-v2").is_dir():
        pytest.skip("benchmark folder not found")
    root = tmp_path / "bench"
    for name in ("mt-bench", "arena-hard-v2"):
        (root / name).mkdir(parents=True)
        for f in (shared / name).glob("*.jsonl"):
            (root / name / f.name).symlink_to(f)
    mt, arena, wb, note = A.load_benchmarks(A.AlignmentStageConfig(benchmarks_dir=str(root)))
    assert len(mt.questions) == 80 and set(arena.skipped) == {"creative_writing"} and wb is None
    assert "Arena-Hard creative_writing: not scored" in note and "WildBench: not available" in note
    task = {"session_id": "s0", "conversation_input": [{"role": "user", "content": "hi"}], "checklist": ["ok?"],
            "primary_tag": "Others", "secondary_tags": []}
    (root / "wildbench").mkdir()
    (root / "wildbench" / "test.jsonl").write_text(json.dumps(task) + "\n")
    _, _, wb, note = A.load_benchmarks(A.AlignmentStageConfig(benchmarks_dir=str(root)))
    assert [t["session_id"] for t in wb.tasks] == ["s0"] and set(wb.missing) == set(bm.WILDBENCH_REFERENCES)
    assert f"WildBench from {root / 'wildbench' / 'test.jsonl'}" in note and "WB-Reward against" in note
    from rlbff_lib.evaluation.wildbench import WildBenchConfig

    cfg = A.AlignmentStageConfig(benchmarks_dir=str(root), wildbench=WildBenchConfig(enabled=False))
    assert A.load_benchmarks(cfg)[2] is None
