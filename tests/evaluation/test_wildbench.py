"""WildBench v2 (rlbff_lib.evaluation.wildbench + the loader in benchmarks): the official prompts, parsing,
WB-Score and WB-Reward checked against the official leaderboard's published numbers (allenai/WildBench @
d6b8dca, leaderboard/data_dir), the length penalty, the A/B assignment, the loader on files in the hub's
schema (local and through a stubbed hub), and a run with scripted judges."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from rlbff_lib.core.io import DataError
from rlbff_lib.evaluation import benchmarks as bm
from rlbff_lib.evaluation import wildbench as W
from rlbff_lib.evaluation.policy_bench import OpenAIJudge, PolicyEvalConfig

# ------------------------------------------------------------------ published numbers (leaderboard/data_dir)

# Score histograms of published WB-Score judgments (eval_results/v2.0625/score.v2/eval=gpt-4o-2024-05-13/<model>.json,
# counts of score 1..10) and the leaderboard's WB_score of the same model (all_stat_wildbench.-1.json).
PUBLISHED_SCORES = {
    "gemma-2b-it": ([13, 104, 215, 212, 121, 109, 123, 113, 11, 0], -5.249755142017634),
    "gemma-7b-it": ([9, 39, 139, 196, 115, 135, 181, 189, 21, 0], 10.17578125),
    "gpt-3.5-turbo-0125": ([2, 8, 44, 105, 94, 144, 211, 351, 63, 1], 32.27761485826002),
    "Qwen1.5-72B-Chat-greedy": ([1, 1, 9, 78, 74, 103, 186, 430, 138, 1], 43.46718903036239),
    "reka-core-20240501": ([60, 3, 3, 47, 51, 94, 164, 428, 173, 1], 41.03515625),
    "reka-edge": ([29, 8, 66, 150, 101, 145, 171, 291, 62, 0], 23.186705767350926),
}
# all_stat_wildbench.-1.json: per-group WB scores and WB_score.task_macro
PUBLISHED_MACRO = {
    "gpt-4o-2024-05-13": ({"Creative Tasks": 59.12144702842377, "Planning & Reasoning": 60.20958083832337,
                           "Math & Data Analysis": 57.29083665338646, "Information/Advice seeking": 58.61386138613861,
                           "Coding & Debugging": 60.473933649289116}, 59.298178803519555),
    "gemma-2b-it": ({"Creative Tasks": 7.220779220779221, "Planning & Reasoning": -5.795795795795797,
                     "Math & Data Analysis": -18.64541832669323, "Information/Advice seeking": -2.133995037220835,
                     "Coding & Debugging": -17.725118483412317}, -9.691930072258819),
}
# pairwise-haiku-K=-1.json, gpt-4o-2024-05-13 against claude-3-haiku-20240307
HAIKU_GPT4O = {"win_much": 342, "win": 380, "tie": 37, "lose": 110, "lose_much": 34, "total": 1024,
               "reward": 43.26171875, "task_macro_reward": 52.632682434597356}
HAIKU_GPT4O_GROUPS = {
    "Coding & Debugging": ({"win_much": 78, "win": 66, "tie": 2, "lose": 21, "lose_much": 6}, 54.6242774566474),
    "Creative Tasks": ({"win_much": 105, "win": 149, "tie": 22, "lose": 40, "lose_much": 11}, 45.412844036697244),
    "Planning & Reasoning": ({"win_much": 225, "win": 261, "tie": 23, "lose": 56, "lose_much": 18},
                             53.087478559176674),
    "Information/Advice seeking": ({"win_much": 117, "win": 180, "tie": 15, "lose": 53, "lose_much": 8},
                                   46.24664879356568),
    "Math & Data Analysis": ({"win_much": 117, "win": 78, "tie": 5, "lose": 21, "lose_much": 11}, 57.974137931034484),
}


def score_rows(histogram, groups=("Creative Tasks",)):
    return [{"session_id": f"s{k}-{i}", "groups": list(groups), "score": float(k + 1), "length": 10, "counted": True}
            for k, n in enumerate(histogram) for i in range(n)]


@pytest.mark.parametrize("model", sorted(PUBLISHED_SCORES))
def test_wb_score_matches_the_published_leaderboard(model):
    histogram, published = PUBLISHED_SCORES[model]
    assert W.wb_score(score_rows(histogram))["score"] == pytest.approx(published, rel=1e-12)


@pytest.mark.parametrize("model", sorted(PUBLISHED_MACRO))
def test_task_macro_matches_the_published_leaderboard(model):
    groups, published = PUBLISHED_MACRO[model]
    assert W.task_macro(groups) == pytest.approx(published, rel=1e-12)


def _outcome_rows(counts, group, start=0):
    """Rows whose judged outcomes reproduce ``counts`` (the model as A; no length penalty)."""
    choice = {"win_much": "A++", "win": "A+", "tie": "A=B", "lose": "B+", "lose_much": "B++"}
    return [{"session_id": f"{group}-{o}-{i}", "groups": [group], "choice": choice[o], "model_is_a": True,
             "model_len": 100, "ref_len": 100, "skipped": False}
            for o in W.OUTCOMES for i in range(counts[o])]


def test_wb_reward_matches_the_published_leaderboard():
    counts = {o: HAIKU_GPT4O[o] for o in W.OUTCOMES}
    rows = _outcome_rows(counts, "Creative Tasks")
    skipped = HAIKU_GPT4O["total"] - sum(counts.values())   # truncated / empty pairs: in the total, outside the counts
    rows += [{**rows[0], "session_id": f"skip{i}", "skipped": True} for i in range(skipped)]
    res = W.wb_reward(rows)
    assert res["reward"] == pytest.approx(HAIKU_GPT4O["reward"], rel=1e-12)
    assert res["total"] == 1024 and res["n_skipped"] == skipped and res["counts"] == counts
    # per group and task macro: the published per-group counts (rows with one group each)
    rows = [r for g, (c, _) in HAIKU_GPT4O_GROUPS.items() for r in _outcome_rows(c, g)]
    res = W.wb_reward(rows)
    for g, (_, published) in HAIKU_GPT4O_GROUPS.items():
        assert res["groups"][g] == pytest.approx(published, rel=1e-12)
    assert res["task_macro"] == pytest.approx(HAIKU_GPT4O["task_macro_reward"], rel=1e-12)


def test_outcome_values_and_the_length_penalty():
    # the model as B: B++ is a big win, A+ a slight loss
    assert W.outcome("B++", False, 10, 5) == "win_much" and W.outcome("A+", False, 10, 5) == "lose"
    assert W.outcome("A=B", True, 10, 5) == "tie" and W.outcome("A++", False, 10, 5) == "lose_much"
    # K = 100: a slight win by a response longer by more than 100 characters becomes a tie; big wins stay
    assert W.outcome("A+", True, 301, 200, k=100) == "tie" and W.outcome("A+", True, 300, 200, k=100) == "win"
    assert W.outcome("B+", True, 200, 301, k=100) == "tie"           # the reference won slightly, being longer
    assert W.outcome("A++", True, 5000, 10, k=100) == "win_much"
    assert W.outcome("A+", True, 5000, 10, k=-1) == "win"               # K = -1: no penalty
    rows = [{"session_id": "a", "groups": ["Coding & Debugging"], "choice": "A+", "model_is_a": True,
             "model_len": 900, "ref_len": 100, "skipped": False},
            {"session_id": "b", "groups": ["Coding & Debugging"], "choice": "B++", "model_is_a": True,
             "model_len": 10, "ref_len": 10, "skipped": False},
            {"session_id": "c", "groups": ["Coding & Debugging"], "choice": None, "model_is_a": True,
             "model_len": 10, "ref_len": 10, "skipped": False}]
    # (+0.5 - 1) / 2 without penalty, (0 - 1) / 2 with K = 500; the unparseable row is dropped
    assert W.wb_reward(rows)["reward"] == -25.0 and W.wb_reward(rows, k=500)["reward"] == -50.0
    assert W.wb_reward(rows)["n_invalid"] == 1 and W.wb_reward(rows)["total"] == 2
    # task macro: one group present, its weight 1.25 over the sum of all weights 4.75
    assert W.wb_reward(rows)["task_macro"] == pytest.approx(-25.0 * 1.25 / 4.75)


def test_wb_score_groups_skip_empty_and_truncated_responses():
    rows = [{"session_id": "a", "groups": ["Math & Data Analysis", "Coding & Debugging"], "score": 8.0,
             "length": 40, "counted": True},
            {"session_id": "b", "groups": ["Math & Data Analysis"], "score": 2.0, "length": 0, "counted": False},
            {"session_id": "c", "groups": ["Math & Data Analysis"], "score": None, "length": 3, "counted": True}]
    res = W.wb_score(rows)
    assert res["score"] == pytest.approx((5.0 - 5) * 2 * 10) and res["mean"] == 5.0   # both scores count here
    assert res["groups"] == {"Coding & Debugging": 60.0, "Math & Data Analysis": 60.0}  # only "a" counts here
    assert res["task_macro"] == pytest.approx((60.0 * 1.25 + 60.0 * 1.0) / 4.75)
    assert res["avg_len"] == 40 and res["n"] == 2 and res["n_invalid"] == 1
    assert math.isnan(W.wb_score([])["task_macro"])


def test_reward_mix_needs_every_reference():
    per = {"a": {"reward": 10.0, "task_macro": 20.0}, "b": {"reward": 30.0, "task_macro": 40.0}}
    assert W.reward_mix(per, ["a", "b"]) == {"reward": 20.0, "task_macro": 30.0, "references": ["a", "b"]}
    assert W.reward_mix(per, ["a", "b", "c"]) is None


# ------------------------------------------------------------------ prompts and parsing (src/eval.py)


def test_templates_are_the_official_files():
    # sha256 of evaluation/eval_template.{score,pairwise}.v2.md at allenai/WildBench d6b8dca
    assert hashlib.sha256(W.SCORE_TEMPLATE.encode()).hexdigest() == \
        "c5984ae77b009f8dad0e8e37093348345f4e8d3099ce812bd7799ef7b73f005f"
    assert hashlib.sha256(W.PAIRWISE_TEMPLATE.encode()).hexdigest() == \
        "ccd57bd8c4c73f4f83cf8963ef3c2697c1c7b9e907ead91e0d0512cca4ae7a11"


TASK = {"session_id": "s1", "index": 0, "checklist": ["Is it correct?", "Is it short?"],
        "conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": "add 2 and 2"}], "groups": ["Math & Data Analysis"],
        "primary_tag": "Math", "secondary_tags": []}


def test_prompts_fill_the_official_placeholders():
    p = W.score_prompt(TASK, "It is 4.")
    assert "<|begin_of_history|>\n\nUSER: hi\n\nASSISTANT: hello\n\n\n\n<|end_of_history|>" in p
    assert "<|begin_of_query|>\n\nadd 2 and 2\n\n<|end_of_query|>" in p
    assert "<|begin_of_response|>\n\nIt is 4.\n\n<|end_of_response|>" in p
    assert "<|begin_of_checklist|>\n\n- Is it correct?\n- Is it short?\n\n\n<|end_of_checklist|>" in p
    assert "{$" not in p
    long = " ".join(["w"] * 1001)
    p = W.pairwise_prompt(TASK, long, "   ")
    assert "<|begin_of_response_A|>\n\n" + " ".join(["w"] * 1000) + "... (truncated)\n\n<|end_of_response_A|>" in p
    assert "<|begin_of_response_B|>\n\n[This model response is empty.]\n\n<|end_of_response_B|>" in p
    assert W.shorten("a b c", 2) == "a b... (truncated)" and W.shorten("a b", 2) == "a b" and W.shorten("a b c") == "a b c"


def test_the_official_ab_assignment():
    # random.seed(42): 0.639, 0.025, 0.275, 0.223, 0.736, 0.677, 0.892, 0.087 -> A when < 0.5
    assert W.model_is_a(8) == [False, True, True, True, False, False, False, True]


@pytest.mark.parametrize("text, score, choice", [
    ('{"strengths": "ok", "weaknesses": "none", "score": "8"}', 8.0, None),
    ('```\n{"strengths": "a "quoted" word", "score": "6"}\n```', 6.0, None),     # broken JSON: the regexes
    ('{"analysis of A": "x", "choice": "B++"}', None, "B++"),
    ('{"choice": "A>B"}', None, None),                                          # not one of the five choices
    ('{"score": "[1~10]"}', None, None),                                        # no number: dropped (ours)
    ("score: 7", None, None),                                                   # unquoted keys are not read
    ("", None, None),
])
def test_parsing_follows_parse_result(text, score, choice):
    assert W.judged_score(text) == score and W.judged_choice(text) == choice


# ------------------------------------------------------------------ loader (hub schema)


def hub_task(i, **over):
    """A row of the hub's allenai/WildBench config v2 (split test)."""
    row = {"id": f"s{i}", "session_id": f"s{i}",
           "conversation_input": [{"content": f"question {i}", "language": "English", "redacted": False,
                                   "role": "user", "timestamp": None, "toxic": False}],
           "references": {"gpt-4": "ref"}, "length": 1, "checklist": [f"check {i}"], "intent": "ask",
           "primary_tag": ["Math", "Coding & Debugging", "Creative Writing"][i % 3],
           "secondary_tags": ["Reasoning"] if i % 2 else []}
    row.update(over)
    return row


def hub_output(i, model, text=None):
    """A row of allenai/WildBench-V2-Model-Outputs (config = model)."""
    return {"session_id": f"s{i}", "chat_history": [f"question {i}"], "model_input": "n/a",
            "output": [text if text is not None else f"{model} answers {i}"], "generator": model,
            "configs": {}, "dataset": "wild_bench", "id": f"s{i}"}


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def wildbench_folder(root: Path, n=6, refs=("gpt-4-turbo-2024-04-09", "Llama-2-70b-chat-hf")) -> Path:
    write_jsonl(root / "wildbench" / "test.jsonl", [hub_task(i) for i in range(n)])
    for ref in refs:
        write_jsonl(root / "wildbench" / "model_outputs" / f"{ref}.jsonl", [hub_output(i, ref) for i in range(n)])
    return root


def test_loader_reads_local_files_and_names_what_is_missing(tmp_path):
    data = bm.load_wildbench(wildbench_folder(tmp_path), use_hub=False)
    assert [t["session_id"] for t in data.tasks] == [f"s{i}" for i in range(6)]
    assert [t["index"] for t in data.tasks] == list(range(6))
    assert data.tasks[1]["groups"] == ["Coding & Debugging", "Planning & Reasoning"]   # tags mapped, deduplicated
    assert data.tasks[0]["conversation"] == [{"role": "user", "content": "question 0"}]
    assert set(data.references) == {"gpt-4-turbo-2024-04-09", "Llama-2-70b-chat-hf"}
    assert data.references["Llama-2-70b-chat-hf"]["s2"] == "Llama-2-70b-chat-hf answers 2"
    assert "claude-3-haiku-20240307.jsonl" in data.missing["claude-3-haiku-20240307"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(bm.HubUnavailable, match="hub is disabled"):
        bm.load_wildbench(tmp_path / "empty", use_hub=False)


@pytest.mark.parametrize("over, line, field", [
    ({"primary_tag": "Gardening"}, 3, "primary_tag"),
    ({"secondary_tags": ["Math", "Poetry"]}, 3, "secondary_tags"),
    ({"checklist": "one string"}, 3, "checklist"),
    ({"conversation_input": []}, 3, "conversation_input"),
    ({"conversation_input": [{"role": "assistant", "content": "x"}]}, 3, "conversation_input"),
    ({"session_id": "s0"}, 3, "session_id"),
])
def test_loader_rejects_bad_tasks(tmp_path, over, line, field):
    rows = [hub_task(i) for i in range(4)]
    rows[2] = hub_task(2, **over)
    write_jsonl(tmp_path / "wildbench" / "test.jsonl", rows)
    with pytest.raises(DataError) as err:
        bm.load_wildbench(tmp_path, references=[], use_hub=False)
    assert (err.value.line, err.value.field) == (line, field)


def test_loader_rejects_incomplete_or_bad_reference_outputs(tmp_path):
    wildbench_folder(tmp_path, refs=())
    ref = "gpt-4-turbo-2024-04-09"
    path = write_jsonl(tmp_path / "wildbench" / "model_outputs" / f"{ref}.jsonl", [hub_output(i, ref) for i in range(5)])
    with pytest.raises(DataError, match="no output for 1 tasks"):
        bm.load_wildbench(tmp_path, references=[ref], use_hub=False)
    rows = [hub_output(i, ref) for i in range(6)]
    rows[4]["output"] = []
    write_jsonl(path, rows)
    with pytest.raises(DataError) as err:
        bm.load_wildbench(tmp_path, references=[ref], use_hub=False)
    assert (err.value.line, err.value.field) == (5, "output")


def test_loader_reads_the_hub_config_v2(tmp_path, monkeypatch):
    """The hub path, with datasets.load_dataset answering from files in the hub's schema."""
    import datasets

    real = datasets.load_dataset
    tasks = write_jsonl(tmp_path / "hub" / "tasks.jsonl", [hub_task(i) for i in range(4)])
    outputs = {"claude-3-haiku-20240307": write_jsonl(tmp_path / "hub" / "haiku.jsonl",
                                                      [hub_output(i, "claude-3-haiku-20240307") for i in range(4)])}
    calls = []

    def fake(repo, name=None, split=None, **kw):
        calls.append((repo, name, split))
        if repo == "allenai/WildBench" and name == "v2" and split == "test":
            return real("json", data_files=str(tasks), split="train")
        if repo == "allenai/WildBench-V2-Model-Outputs" and split == "train" and name in outputs:
            return real("json", data_files=str(outputs[name]), split="train")
        raise FileNotFoundError(f"{repo} {name} {split}")

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.setenv(bm.ENV_VAR, str(tmp_path / "hub"))   # a benchmarks folder without wildbench/
    data = bm.load_wildbench(use_hub=True)
    assert data.source == "hf://datasets/allenai/WildBench (config v2)" and len(data.tasks) == 4
    assert data.references["claude-3-haiku-20240307"]["s3"] == "claude-3-haiku-20240307 answers 3"
    assert set(data.missing) == {"gpt-4-turbo-2024-04-09", "Llama-2-70b-chat-hf"}
    assert "FileNotFoundError" in data.missing["Llama-2-70b-chat-hf"]
    assert calls[0] == ("allenai/WildBench", "v2", "test")


# ------------------------------------------------------------------ runs and judges


class ScriptedJudge:
    """Answers every WildBench prompt from a script; records the prompts."""

    label = "scripted"

    def __init__(self, score, choice):
        self.score, self.choice, self.single, self.pairs = score, choice, [], []

    def judge_single(self, items):
        self.single += items
        return [json.dumps({"strengths": "", "weaknesses": "", "score": self.score(it)}) for it in items]

    def judge_pair(self, items):
        self.pairs += items
        return [json.dumps({"choice": self.choice(it)}) for it in items]


class Gen:
    def __init__(self, answer):
        self.answer, self.n_tokens, self.terminated = answer, len(answer.split()), True


def test_run_wildbench_with_scripted_judges(tmp_path, monkeypatch):
    data = bm.load_wildbench(wildbench_folder(tmp_path, n=8), use_hub=False)
    answers = {f"question {i}": ("" if i == 3 else f"policy answer {i}") for i in range(8)}
    monkeypatch.setattr(W, "generate_answers", lambda policy, tok, convs, temps, cfg, seed:
                        [Gen(answers[c[-1]["content"]]) for c in convs])
    # score 9 for the policy's answers, 1 for the empty one; the policy always wins big
    judge = ScriptedJudge(lambda it: "1" if it.answer == "" else "9",
                          lambda it: "A++" if it.answer_a.startswith("policy") else "B++")
    wb = W.WildBenchConfig(limit=None)
    res = W.run_wildbench(None, None, (judge, judge), data, PolicyEvalConfig(), wb)
    assert res["n_tasks"] == 8 and res["judge"] == {"score": "scripted", "reward": "scripted"}
    assert res["wb_score"]["mean"] == (7 * 9 + 1) / 8 and res["wb_score"]["score"] == ((7 * 9 + 1) / 8 - 5) * 20
    assert all(v == 80.0 for v in res["wb_score"]["groups"].values())      # the empty answer counts in no group
    # the policy is A exactly where the official draw says so
    is_a = W.model_is_a(8)
    assert [p.answer_a.startswith("policy") for p in judge.pairs[:8]] == [a and i != 3 for i, a in enumerate(is_a)]
    gpt4t = res["wb_reward"]["gpt-4-turbo-2024-04-09"]
    # 7 big wins; task 3 (empty answer) is skipped but stays in the total
    assert gpt4t["counts"]["win_much"] == 7 and gpt4t["n_skipped"] == 1 and gpt4t["reward"] == 100 * 7 / 8
    assert set(res["wb_reward"]) == {"gpt-4-turbo-2024-04-09", "Llama-2-70b-chat-hf"}
    assert res["wb_reward_mix"] is None and "claude-3-haiku-20240307" in res["missing_references"]
    assert "{$" not in judge.single[0].user and judge.single[0].system == ""
    pooled = W.pooled_wildbench([res, res], wb)
    assert pooled["wb_score"]["score"] == res["wb_score"]["score"] and pooled["n_policies"] == 2
    assert pooled["wb_reward"]["Llama-2-70b-chat-hf"]["total"] == 16


def test_the_rm_judge_answers_in_wildbench_format():
    class Inner:
        label = "principle-RM (smoke, not GPT-4)"

        def judge_single(self, items):
            return ["The principle RM scores the answer +1.000. Rating: [[7.25]]", "no rating"][:len(items)]

        def judge_pair(self, items):
            return ["Scores: A -1, B +2. My final verdict is: [[B>>A]]", "[[A=B]]"][:len(items)]

    judge = W.RMAsWildBenchJudge(Inner())
    texts = judge.judge_single([None, None])
    assert W.judged_score(texts[0]) == 7.25 and W.judged_score(texts[1]) is None
    assert [W.judged_choice(t) for t in judge.judge_pair([None, None])] == ["B++", "A=B"]
    assert judge.label == "principle-RM (smoke, not GPT-4)"


def test_make_wildbench_judges(monkeypatch):
    rm = W.RMAsWildBenchJudge  # any object with a label stands in for the MT-Bench RM judge
    inner = type("J", (), {"label": "rm"})()
    score, reward = W.make_wildbench_judges(PolicyEvalConfig(), W.WildBenchConfig(), inner)
    assert score is reward and isinstance(score, rm) and score.judge is inner
    monkeypatch.setenv("RLBFF_TEST_OPENAI_KEY", "sk-test")
    cfg = PolicyEvalConfig(judge="openai", judge_api_key_env="RLBFF_TEST_OPENAI_KEY", judge_base_url="http://127.0.0.1:9/v1")
    score, reward = W.make_wildbench_judges(cfg, W.WildBenchConfig())
    assert isinstance(score, OpenAIJudge) and score.max_tokens == 1024 and score.temperature == 0.0
    assert score.label.startswith("gpt-4o-2024-05-13") and reward.label.startswith("gpt-4-turbo-2024-04-09")



def test_openai_wildbench_judges_share_the_answer_cache(tmp_path, monkeypatch):
    """The stage's one judge cache also holds WildBench's answers: judges made anew over the same file send
    nothing for requests asked before, and the score and reward judges (two models) are keyed apart."""
    from fakes.openai_server import FakeOpenAI
    from rlbff_lib.evaluation.policy_bench import PairItem, SingleItem, make_judges

    monkeypatch.setenv("RLBFF_TEST_OPENAI_KEY", "sk-test")
    wb = W.WildBenchConfig()
    reply = lambda payload: json.dumps({"score": str(len(payload["messages"][-1]["content"]) % 9 + 1)})
    single = [SingleItem(f"s{i}", "Coding", 1, "wildbench-score-v2", "", f"judge answer {i}", [], f"a{i}")
              for i in range(3)]
    pairs = [PairItem(f"s{i}", "Coding", 0, "", f"compare answer {i}", "q", "a", "b") for i in range(2)]
    with FakeOpenAI(models=(wb.score_judge_model, wb.reward_judge_model), reply=reply) as server:
        cfg = PolicyEvalConfig(judge="openai", judge_api_key_env="RLBFF_TEST_OPENAI_KEY", judge_base_url=server.base_url)
        for run in range(2):
            mt, _ = make_judges(cfg, cache_path=tmp_path / "judge_cache.jsonl")
            score, reward = W.make_wildbench_judges(cfg, wb, mt, mt.endpoint.cache)
            texts = score.judge_single(single), reward.judge_pair(pairs), reward.judge_single(single[:1])
            assert server.requests == 3 + 2 + 1, f"run {run}: only new requests are sent"
            assert [W.judged_score(t) for t in texts[0]] == [len(it.user) % 9 + 1 for it in single]
    assert len((tmp_path / "judge_cache.jsonl").read_text().splitlines()) == 6


def test_config_validation():
    for kwargs, field in (({"limit": 0}, "limit"), ({"length_margin": -2}, "length_margin"),
                          ({"reference_models": ["a", "a"]}, "reference_models"), ({"judge_max_tokens": 0},
                                                                                    "judge_max_tokens")):
        with pytest.raises(ValueError, match=f"^{field}"):
            W.WildBenchConfig(**kwargs)
