"""Policy evaluation: MT-Bench rating parsing and scoring (FastChat), Arena-Hard v2 verdicts (both
patterns), weighting, per-category score and 5/95 bootstrap interval against the official show_result.py
(arena-hard-auto), the judges, and end-to-end runs on tiny models."""
import math
import random

import numpy as np
import pytest
import torch

from rlbff_lib.evaluation import benchmarks as bm
from rlbff_lib.models.lm import ModelSizeConfig, build_qwen3
from rlbff_lib.evaluation.policy_bench import (ARENA_PROMPT_TEMPLATE, ARENA_SYSTEM_PROMPT, VERDICTS, OpenAIJudge, PairItem,
                                   PolicyEvalConfig, PrincipleRMJudge, SingleItem, arena_system_prompt, battle_outcomes,
                                   label_to_score, make_judges, mtbench_prompt, parse_rating, parse_verdict,
                                   run_arena_hard, run_mtbench, score_arena, score_arena_categories, score_mtbench)
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.synthetic.world import WorldConfig, corpus_texts, generate_world
from fakes.tiny_models import spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=1024)


def shared_root():
    root = bm.benchmarks_dir()
    if root is None or not (root / "mt-bench").is_dir() or not (root / "arena-hard-v2").is_dir():
        pytest.skip("benchmark folder with mt-bench/ and arena-hard-v2/ not found (set RLBFF_BENCHMARKS_DIR)")
    return root


# ------------------------------------------------------------------ MT-Bench


@pytest.mark.parametrize("text, rating", [
    ("Rating: [[7]]", 7.0),
    ("The answer is fine. Rating: [[8.5]]", 8.5),
    ("[[3]] at first, then [[9]]", 3.0),          # FastChat takes the first match
    ("Rating: [6]", 6.0),                           # the backup pattern with single brackets
    ("Rating: [[ 5 ]]", -1),                        # spaces are not allowed by FastChat's regex
    ("Rating: [[seven]]", -1),
    ("Rating: 7/10", -1),
    ("", -1),
    (None, -1),
])
def test_rating_parsing_follows_fastchat(text, rating):
    assert parse_rating(text) == rating


def test_mtbench_scores_drop_unparseable_and_average_per_turn_and_category():
    rows = [
        {"question_id": 1, "category": "writing", "turn": 1, "score": 8.0},
        {"question_id": 1, "category": "writing", "turn": 2, "score": 6.0},
        {"question_id": 2, "category": "math", "turn": 1, "score": 10.0},
        {"question_id": 2, "category": "math", "turn": 2, "score": -1},   # unparseable: dropped
        {"question_id": 3, "category": "math", "turn": 1, "score": 4.0},
        {"question_id": 3, "category": "math", "turn": 2, "score": 2.0},
    ]
    s = score_mtbench(rows)
    assert s["n_judgments"] == 6 and s["n_invalid"] == 1
    assert s["turn_1"] == pytest.approx((8 + 10 + 4) / 3)
    assert s["turn_2"] == pytest.approx((6 + 2) / 2)
    assert s["overall"] == pytest.approx((8 + 6 + 10 + 4 + 2) / 5)   # mean over valid (question, turn)
    assert s["categories"] == {"math": pytest.approx((10 + 4 + 2) / 3), "writing": pytest.approx(7.0)}
    assert math.isnan(score_mtbench([{"question_id": 1, "category": "x", "turn": 1, "score": -1}])["overall"])


def test_mtbench_judge_prompts_are_the_official_ones():
    data = bm.load_mtbench(shared_root())
    by_cat = {}
    for q in data.questions:
        by_cat.setdefault(q["category"], q)
    writing, math_q = by_cat["writing"], by_cat["math"]
    name, system, user = mtbench_prompt(writing, ["ANSWER-ONE", "ANSWER-TWO"], 1, data.judge_prompts)
    assert name == "single-v1" and system == "You are a helpful assistant."
    assert writing["turns"][0] in user and "ANSWER-ONE" in user and "ANSWER-TWO" not in user
    assert '"[[rating]]"' in user
    name, _, user = mtbench_prompt(writing, ["ANSWER-ONE", "ANSWER-TWO"], 2, data.judge_prompts)
    assert name == "single-v1-multi-turn"
    assert all(s in user for s in (writing["turns"][0], writing["turns"][1], "ANSWER-ONE", "ANSWER-TWO"))
    ref = data.references[math_q["question_id"]]
    name, _, user = mtbench_prompt(math_q, ["A1", "A2"], 1, data.judge_prompts, ref)
    assert name == "single-math-v1" and ref[0] in user and ref[1] not in user
    name, _, user = mtbench_prompt(math_q, ["A1", "A2"], 2, data.judge_prompts, ref)
    assert name == "single-math-v1-multi-turn" and ref[0] in user and ref[1] in user
    with pytest.raises(ValueError, match="reference"):
        mtbench_prompt(math_q, ["A1", "A2"], 1, data.judge_prompts, None)


# ------------------------------------------------------------------ Arena-Hard v2


@pytest.mark.parametrize("text, verdict", [
    ("My final verdict is: [[A>B]]", "A>B"),
    ("first [[A>>B]] then, on reflection, [[B>A]]", "B>A"),   # the last match wins (v2 get_score)
    ("lower case [[b>>a]]", "B>>A"),                           # the judgment is upper-cased first
    ("tie [[A=B]].", "A=B"),
    ("My final verdict is [B>A].", "B>A"),                     # the second pattern, when [[...]] finds nothing
    ("first [A>>B], then [B>A]", "B>A"),                       # ... again its last match
    ("[[A>B]] although earlier [B>>A] and later [B>>A]", "A>B"),  # a [[...]] match beats any [...] match
    ("Assistant [A] is better", "A"),                          # read as the official code reads it (then dropped)
    ("no label here", None),
    ("[[C]]", None),
    ("", None),
    (None, None),
])
def test_verdict_parsing_follows_arena_hard(text, verdict):
    assert parse_verdict(text) == verdict


def test_battle_outcomes_orient_the_games_and_weight_strong_verdicts():
    # game 1: baseline is A, model is B; game 2: model is A
    assert battle_outcomes("B>A", "A>B") == [1.0, 1.0]              # the model wins both games
    assert battle_outcomes("A>B", "B>A") == [0.0, 0.0]
    assert battle_outcomes("B>>A", "A>>B") == [1.0] * 6             # strong verdicts count three times
    assert battle_outcomes("A=B", "A>>B") == [1.0, 1.0, 1.0, 0.5]
    assert battle_outcomes("A>B", "A>B") == [1.0, 0.0]              # position bias: one win each
    assert battle_outcomes(None, "A>B") is None and battle_outcomes("A>B", "AB") is None
    assert label_to_score(weight=5)["A>>B"] == [1.0] * 5


def _records(pairs, category="hard_prompt"):
    return [{"uid": f"q{i}", "category": category, "games": list(g)} for i, g in enumerate(pairs)]


def _official_show_result(games, seed, weight=3):
    """Oracle: lmarena/arena-hard-auto @ 196f6b8 show_result.py, load_judgments + print_leaderboard
    (no style control), verbatim but for the seed of numpy's global generator (officially unseeded)."""
    pd = pytest.importorskip("pandas")
    label_to_score = {"A>B": [1], "A>>B": [1] * weight, "A=B": [0.5], "A<<B": [0] * weight, "A<B": [0],
                      "B>A": [0], "B>>A": [0] * weight, "B=A": [0.5], "B<<A": [1] * weight, "B<A": [1]}
    data = pd.DataFrame([{"uid": str(i), "model": "policy", "category": "hard_prompt",
                          "games": [None if g1 is None else {"score": g1}, {"score": g2}]}
                         for i, (g1, g2) in enumerate(games)])
    null_indices = data.games.map(lambda x: x[0] is None or x[1] is None or x[0]['score'] is None
                                  or x[1]['score'] is None)
    _data = data[~null_indices].reset_index(drop=True)
    _data['scores'] = _data.games.map(
        lambda x: label_to_score[x[1]['score']] + [1 - s for s in label_to_score[x[0]['score']]])
    battles = _data[['uid', 'model', 'category', 'scores']].explode('scores').reset_index(drop=True)
    _battles = battles.drop(columns=['category'])[['model', 'scores']]
    np.random.seed(seed)
    bootstraps = pd.concat([
        _battles.groupby("model").sample(frac=1.0, replace=True).groupby("model").mean() for _ in range(100)])
    bootstraps["scores"] = bootstraps["scores"].astype(float)
    mean = bootstraps.groupby("model").mean()["scores"].iloc[0]
    lower = bootstraps.groupby("model").quantile(0.05)["scores"].iloc[0]
    upper = bootstraps.groupby("model").quantile(0.95)["scores"].iloc[0]
    return 100 * mean, 100 * lower, 100 * upper


@pytest.mark.parametrize("seed", [0, 11])
def test_score_and_interval_match_the_official_show_result(seed):
    rng = random.Random(seed + 3)
    games = [(rng.choice(VERDICTS), rng.choice(VERDICTS)) for _ in range(60)]
    games[5] = (None, "A>B")           # a missing verdict drops the question in both
    mean, lower, upper = _official_show_result(games, seed)
    ours = score_arena(_records(games), seed=seed)
    assert ours["win_rate"] == pytest.approx(mean, abs=1e-9)
    assert ours["ci"] == pytest.approx([lower, upper], abs=1e-9)
    assert ours["n_dropped"] == 1 and ours["n_questions"] == 60 and ours["verdicts"]["missing"] == 1
    assert ours["ci_minus"] == pytest.approx(mean - lower) and ours["ci_plus"] == pytest.approx(upper - mean)
    assert ours["interval"] == "5%-95% bootstrap quantiles"


def test_win_rate_all_wins_all_losses_ties_and_strong_verdicts():
    assert score_arena(_records([("B>>A", "A>>B")] * 30))["win_rate"] == 100.0
    assert score_arena(_records([("A>B", "B>A")] * 30))["win_rate"] == 0.0
    ties = score_arena(_records([("A=B", "A=B")] * 10))
    assert ties["win_rate"] == 50.0 and ties["ci"] == [50.0, 50.0] and ties["baseline_win_rate"] == 50.0
    # weak: 20 wins + 20 ties in 40 rows -> 75%; strong: 60 wins + 20 ties in 80 rows -> 87.5% (row means)
    weak = score_arena(_records([("B>A", "A>B")] * 10 + [("A=B", "A=B")] * 10))
    strong = score_arena(_records([("B>>A", "A>>B")] * 10 + [("A=B", "A=B")] * 10))
    assert weak["mean_score"] == 75.0 and strong["mean_score"] == 87.5
    assert weak["n_outcomes"] == 40 and strong["n_outcomes"] == 80
    assert abs(weak["win_rate"] - 75.0) < 3 and abs(strong["win_rate"] - 87.5) < 3   # bootstrap mean near it


def test_dropped_questions_and_no_valid_battle():
    r = score_arena(_records([(None, "A>B")]))
    assert math.isnan(r["win_rate"]) and r["n_dropped"] == 1
    r = score_arena(_records([("A", "A>B"), ("B>A", "A>B")]))   # an unknown label drops its question (ours)
    assert r["n_dropped"] == 1 and r["win_rate"] == 100.0


def test_categories_are_scored_apart_against_their_own_baselines():
    records = _records([("B>A", "A>B")] * 6) + _records([("A>B", "B>A")] * 4, "creative_writing")
    baselines = {"hard_prompt": "o3-mini-2025-01-31", "creative_writing": "gemini-2.0-flash-001"}
    res = score_arena_categories(records, baselines, seed=3)
    hard, creative = res["categories"]["hard_prompt"], res["categories"]["creative_writing"]
    assert (hard["win_rate"], hard["baseline"], hard["n_questions"]) == (100.0, "o3-mini-2025-01-31", 6)
    assert (creative["win_rate"], creative["baseline"], creative["n_questions"]) == (0.0, "gemini-2.0-flash-001", 4)
    assert res["category"] == "hard_prompt" and res["win_rate"] == 100.0 and res["baseline"] == "o3-mini-2025-01-31"
    # the pooled number is ours and labelled so: 12 winning rows, 8 losing rows
    assert res["pooled"]["label"] == "ours (pooled)" and res["pooled"]["mean_score"] == 60.0
    only_hard = score_arena_categories(records[:6], baselines)
    assert only_hard["pooled"] is None and set(only_hard["categories"]) == {"hard_prompt"}
    no_hard = score_arena_categories(records[6:], baselines)
    assert math.isnan(no_hard["win_rate"]) and no_hard["categories"]["creative_writing"]["win_rate"] == 0.0


def test_arena_judge_prompt_per_category():
    hard, creative = arena_system_prompt("hard_prompt"), arena_system_prompt("creative_writing")
    assert hard == ARENA_SYSTEM_PROMPT and "generating your own answer" in hard
    assert "generating your own answer" not in creative and creative.endswith('"My final verdict is tie: [[A=B]]".')
    assert all(f"[[{v}]]" in hard and f"[[{v}]]" in creative for v in VERDICTS)


# ------------------------------------------------------------------ judges and end-to-end runs


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(list(corpus_texts(generate_world(WorldConfig(n_prompts=120, seed=0)))),
                           TokenizerConfig(vocab_size=600))


@pytest.fixture(scope="module")
def rm(tok):
    """A tiny random 'principle RM' with large weights, so scores differ between answers."""
    return spread_model(tok, TINY, seed=3)


def rm_scorer(rm, tok, max_length=None):
    from rlbff_lib.reward_models.scorers import Scorer

    return Scorer("scalar", rm, tok, max_length=max_length)


def test_principle_rm_judge_maps_scores_to_ratings_and_verdicts(rm, tok):
    judge = PrincipleRMJudge(rm_scorer(rm, tok), rating_temperature=2.0, tie_margin=0.5, strong_margin=2.0)
    assert judge.label == "principle-RM (smoke, not GPT-4)"
    assert judge.rating(0.0) == pytest.approx(5.5)
    assert 1.0 < judge.rating(-20) < judge.rating(-1) < judge.rating(1) < judge.rating(20) < 10.0
    assert [judge.verdict(a, 0.0) for a in (3.0, 1.0, 0.2, -0.2, -1.0, -3.0)] == \
        ["A>>B", "A>B", "A=B", "A=B", "B>A", "B>>A"]
    conv = [{"role": "user", "content": "Can you explain compound interest?"}]
    items = [SingleItem(1, "writing", 1, "single-v1", "", "", conv, ans)
             for ans in ("Compound interest means you earn interest on interest.", "Great question! Sure.")]
    texts = judge.judge_single(items)
    # the judge's scores are the scalar RM's logit(Yes) - logit(No), one unpadded forward pass each
    from rlbff_lib.models.tokenizer import answer_token_ids
    from rlbff_lib.reward_models.prompt import encode_rm_prompt

    yes, no = answer_token_ids(tok)
    direct = []
    for it in items:
        ids, _ = encode_rm_prompt(tok, conv, it.answer, judge.principle, None)
        with torch.no_grad():
            logits = rm(input_ids=torch.tensor([ids])).logits[0, -1]
        direct.append(float(logits[yes] - logits[no]))
    assert [parse_rating(t) for t in texts] == [pytest.approx(judge.rating(s), abs=0.006) for s in direct]
    pairs = [PairItem("u", "hard_prompt", 0, "", "", conv[0]["content"], items[0].answer, items[1].answer)]
    verdict = parse_verdict(judge.judge_pair(pairs)[0])
    assert verdict == judge.verdict(direct[0], direct[1])
    with pytest.raises(ValueError, match="tie_margin"):
        PrincipleRMJudge(rm_scorer(rm, tok), tie_margin=3.0, strong_margin=2.0)


class FakeEndpoint:
    """A stand-in for rlbff_lib.core.http.ChatClient: records the prompts, answers from a script."""

    model = "fake-gpt-4"

    def __init__(self, answer):
        self.answer, self.seen = answer, []

    def complete(self, messages, max_tokens=1024, temperature=0.0, top_logprobs=None, tag=""):
        self.seen.append(messages)
        return {"content": self.answer(messages), "finish_reason": "stop", "top_logprobs": None}

    def map(self, fn, items):
        return [fn(x) for x in items]


@pytest.fixture(scope="module")
def policy(tok):
    return build_qwen3(tok, TINY, seed=0).eval()


def test_run_mtbench_end_to_end_with_an_endpoint_judge(policy, tok):
    data = bm.load_mtbench(shared_root())
    cfg = PolicyEvalConfig(mtbench_limit=4, max_new_tokens=8, batch_size=4, seed=0)

    def answer(messages):  # rate by the judge prompt used; one malformed judgment
        user = messages[-1]["content"]
        if "Reference Answer" in user:
            return "Rating: [[2]]"
        return "Rating: [[9]]" if "multi" not in user and "Conversation" not in user else "no rating"

    judge = OpenAIJudge(FakeEndpoint(answer))
    res = run_mtbench(policy, tok, judge, data, cfg)
    assert res["judge"] == "fake-gpt-4 (OpenAI-compatible endpoint)" and res["n_questions"] == 4
    assert len(res["judgments"]) == 8 and {j["turn"] for j in res["judgments"]} == {1, 2}
    assert len(judge.endpoint.seen) == 8 and all(m[0]["role"] == "system" for m in judge.endpoint.seen)
    for j in res["judgments"]:
        ref = j["judge_prompt"].startswith("single-math")
        expected = 2.0 if ref else (9.0 if j["turn"] == 1 else -1)
        assert j["score"] == expected, j
    valid = [j["score"] for j in res["judgments"] if j["score"] != -1]
    assert res["scores"]["overall"] == pytest.approx(sum(valid) / len(valid))
    assert res["scores"]["n_invalid"] == sum(j["score"] == -1 for j in res["judgments"])
    # turn 2 was generated after the policy's own turn-1 answer, and the judge saw both turns
    for a in res["answers"]:
        assert len(a["turns"]) == 2 and all(isinstance(t, str) for t in a["turns"])
    multi = [m[-1]["content"] for m in judge.endpoint.seen if "Conversation with User" in m[-1]["content"]]
    assert len(multi) == 4


def test_run_arena_hard_end_to_end_with_the_principle_rm_judge(policy, rm, tok):
    data = bm.load_arena_hard(shared_root())
    cfg = PolicyEvalConfig(arena_limit=3, max_new_tokens=8, batch_size=3, judge_max_length=256, n_bootstrap=20)
    judge = PrincipleRMJudge(rm_scorer(rm, tok, max_length=256))
    res = run_arena_hard(policy, tok, judge, data, cfg)
    assert res["judge"] == "principle-RM (smoke, not GPT-4)" and res["benchmark"] == "arena-hard-v2"
    # the shared folder holds o3-mini's answers only: creative writing (baseline gemini-2.0-flash-001) is skipped
    assert set(res["skipped"]) == {"creative_writing"} and "gemini-2.0-flash-001" in res["skipped"]["creative_writing"]
    assert all(r["category"] == "hard_prompt" for r in res["records"]) and len(res["records"]) == 3
    assert res["baseline"] == "o3-mini-2025-01-31" and res["n_questions"] == 3 and res["n_dropped"] == 0
    assert all(all(v in VERDICTS for v in r["games"]) for r in res["records"])
    assert 0.0 <= res["win_rate"] <= 100.0 and res["ci"][0] <= res["win_rate"] <= res["ci"][1]
    # game 1 shows the baseline as A, game 2 as B, inside the official template
    fake = FakeEndpoint(lambda m: "[[A=B]]")
    run_arena_hard(policy, tok, OpenAIJudge(fake), data, PolicyEvalConfig(arena_limit=1, max_new_tokens=4))
    (g1, g2) = [m[-1]["content"] for m in fake.seen]
    q = bm.subsample(data.questions, 1, 0)[0]
    base = data.baseline_answer(q)
    assert fake.seen[0][0]["content"] == arena_system_prompt(q["category"])
    assert g1.startswith(ARENA_PROMPT_TEMPLATE.split("{QUESTION}")[0] + q["prompt"][:50])
    assert g1.index(base[:80]) < g1.index("<|The Start of Assistant B's Answer|>")
    assert g2.index(base[:80]) > g2.index("<|The Start of Assistant B's Answer|>")


def test_config_validation():
    assert PolicyEvalConfig().judge == "principle_rm"
    for kwargs, field in (({"mtbench_limit": 0}, "mtbench_limit"), ({"judge": "gpt"}, "judge"),
                          ({"tie_margin": 3.0}, "tie_margin"),
                          ({"judge_api_key_env": "sk-123 abc"}, "judge_api_key_env"),
                          ({"temperature": -1.0}, "temperature"), ({"n_bootstrap": 0}, "n_bootstrap")):
        with pytest.raises(ValueError, match=f"^{field}"):
            PolicyEvalConfig(**kwargs)


def test_make_judges(rm, tok, monkeypatch):
    mt, arena = make_judges(PolicyEvalConfig(), rm_scorer(rm, tok))
    assert mt is arena and isinstance(mt, PrincipleRMJudge) and mt.principle == "is helpful and correct"
    monkeypatch.setenv("RLBFF_TEST_OPENAI_KEY", "sk-test")
    cfg = PolicyEvalConfig(judge="openai", judge_api_key_env="RLBFF_TEST_OPENAI_KEY",
                           judge_base_url="http://127.0.0.1:9/v1")
    mt, arena = make_judges(cfg)
    assert mt.label == "gpt-4 (OpenAI-compatible endpoint)" and arena.label == "gpt-4.1 (OpenAI-compatible endpoint)"
    assert mt.endpoint.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (mt.max_tokens, arena.max_tokens) == (2048, 16000) and mt.temperature == 0.0
    monkeypatch.delenv("RLBFF_TEST_OPENAI_KEY")
    with pytest.raises(ValueError, match="judge_api_key_env"):
        make_judges(cfg)
