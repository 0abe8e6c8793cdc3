"""Generative principle RM: format, the judgement token before EOS (NeMo-RL's), the GRPO reward, scoring, the
warm start from extracted evidence (never the ground truth), thinking mode pinned, SFT, GRPO + resume."""
import copy
import json
import random
import shutil

import pytest
import torch

from rlbff_lib.reward_models.genrm import (MARKER, GenRMConfig, GenRMGRPOConfig, GenRMSFTConfig, JudgementReward,
                                           attach_reasoning, build_grpo_rows, build_sft_rows, encode_genrm_prompt,
                                           ensure_principle_role, evaluate_genrm, evidence_reasoning, generic_reasoning,
                                           genrm_score, judgement_completion, judgement_index, main, parse_judgement,
                                           pin_thinking, pinned_thinking, prepare_tokenizer, prompt_text,
                                           rlhf_judge_reward, train_genrm, train_grpo, train_sft)
from rlbff_lib.training.launch import TrainJob, find_resume_checkpoint
from rlbff_lib.models.lm import ModelSizeConfig, load_causal_lm
from rlbff_lib.core.params import ParamError, build
from rlbff_lib.reward_models.scorers import load_model
from rlbff_lib.models.tokenizer import TokenizerConfig, answer_token_ids, train_tokenizer
from rlbff_lib.synthetic.world import PROPERTIES, WorldConfig, corpus_texts, generate_world, reasoning
from fakes.crash import Crash, crash_after_checkpoint
from fakes.tiny_models import save_base, spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)
PROP = "fenced_code"  # code domain; its evidence sentences are fixed strings, so a tiny model can copy them
MAX_LEN = 176  # SFT tokens per row (prompt cut from the left, response and principle kept)
GEN = 56  # generated tokens (a warm-started judgement takes about 48)
PROMPT_LEN = MAX_LEN - GEN


N_TRAIN = 480  # SFT items; the next 120 are held out


@pytest.fixture(scope="module")
def world():
    # the world the learning thresholds below were measured on (1-3 remarks per feedback text)
    return generate_world(WorldConfig(n_prompts=300, seed=0, domain_weights={"code": 1.0}, min_comments=1,
                                      max_comments=3))


@pytest.fixture(scope="module")
def tok(world):
    return train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=1500))


@pytest.fixture(scope="module")
def items(world):
    """RM items about PROP, labelled by the checker, shuffled."""
    rng = random.Random(0)
    truth = {(t["id"], t["response"]): t for t in world.truth}
    out = []
    for rec in world.records:
        for j in (1, 2):
            t = truth[(rec["id"], j)]
            out.append({"item_id": f"{rec['id']}-{j}", "prompt_id": rec["id"], "domain": rec["domain"],
                        "context": rec["context"], "response": rec[f"response{j}"],
                        "principle": rng.choice(PROPERTIES[PROP].phrasings),
                        "label": "Yes" if t["properties"][PROP] else "No", "property": PROP})
    rng.shuffle(out)
    return out


@pytest.fixture(scope="module")
def base_dir(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    return save_base(tok, TINY, path)


@pytest.fixture(scope="module")
def random_model(tok):
    """A tiny model with large random weights: log-probabilities differ a lot between inputs."""
    return spread_model(tok, TINY, seed=1)


def logit_bias(model, tok, yes=0.0, no=0.0):
    """Add constants to the " Yes" / " No" logits (a forward hook on the LM head); returns the handle."""
    y, n = answer_token_ids(tok, leading_space=True)
    bias = torch.zeros(len(tok))
    bias[y], bias[n] = yes, no
    return model.lm_head.register_forward_hook(lambda mod, inp, out: out + bias)


@pytest.fixture(scope="module")
def sft_run(base_dir, items, world, tmp_path_factory):
    """The SFT warm start on 480 world items, evaluated on 120 held-out. The TEST writes each item's reasoning
    from the world's checkers (an oracle the test owns, so a 32-wide model learns in seconds); the pipeline's
    warm start never does (:func:`attach_reasoning`)."""
    out = tmp_path_factory.mktemp("sft")
    info = {t["id"]: t["prompt_info"] for t in world.truth}
    train = [{**it, "sft_reasoning": reasoning(PROP, it["response"], info[it["prompt_id"]], it["principle"])[0]}
             for it in items[:N_TRAIN]]
    cfg = GenRMSFTConfig(learning_rate=1.5e-2, num_train_epochs=2, per_device_train_batch_size=8, max_length=MAX_LEN,
                         warmup_ratio=0.1, logging_steps=10, save_steps=1000, seed=0)
    record, trainer, tk = train_sft(cfg, base_dir, train, out)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    metrics = evaluate_genrm(model, tk, items[N_TRAIN:], max_new_tokens=GEN, batch_size=40,
                             max_prompt_length=PROMPT_LEN)
    return {"dir": out, "record": record, "model": model, "tok": tk, "metrics": metrics}


# ------------------------------------------------------------------ format and parsing


def test_parse_judgement():
    assert parse_judgement("The code is fenced.\nFinal Judgement: Yes") == "Yes"
    assert parse_judgement("Final Judgement: Yes\nOn reflection.\nFinal Judgement: No") == "No"  # the last one
    assert parse_judgement("Final Judgement:No.") == "No"
    assert parse_judgement("final judgement: yes") is None
    assert parse_judgement("Final Judgement: Yesterday") is None
    assert parse_judgement("no verdict at all") is None and parse_judgement("") is None
    assert judgement_completion("Reasoning here. ", "No") == "Reasoning here.\nFinal Judgement: No"
    with pytest.raises(ValueError, match="^label"):
        judgement_completion("x", "Maybe")


def test_judgement_index_is_the_token_before_the_first_eos(tok):
    eos = tok.eos_token_id
    ids = tok.encode("The code is fenced.\nFinal Judgement: Yes", add_special_tokens=False)
    assert judgement_index(ids + [eos], [eos]) == len(ids) - 1  # the " Yes" token
    assert tok.decode(ids[len(ids) - 1:]) == " Yes"
    assert judgement_index(ids + [eos, 5, eos], [eos]) == len(ids) - 1  # the FIRST end of sequence
    assert judgement_index(ids, [eos]) is None  # cut at the length limit: no EOS
    assert judgement_index([eos], [eos]) is None and judgement_index([], [eos]) is None
    assert judgement_index([7, 9, 3], [3, eos]) == 1  # any stop id ends the sequence


def test_prompt_has_the_principle_role_and_round_trips(tok, items):
    ctx = [{"role": "user", "content": "Write a function."}]
    ids, cut = encode_genrm_prompt(tok, ctx, "def f(): pass", "uses markdown code fences", None)
    assert not cut
    assert tok.decode(ids) == (
        "<|im_start|>user\nWrite a function.<|im_end|>\n<|im_start|>assistant\ndef f(): pass<|im_end|>\n"
        "<|im_start|>principle\nuses markdown code fences<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    rows, n_cut = build_grpo_rows(items[:12], tok, max_prompt_length=120)
    assert n_cut > 0
    for it, row in zip(items[:12], rows):
        ids, _ = encode_genrm_prompt(tok, it["context"], it["response"], it["principle"], 120)
        assert len(ids) <= 120 and tok(row["prompt"])["input_ids"] == ids  # what TRL will generate from
        assert row["prompt"].endswith(f"<|im_start|>principle\n{it['principle']}<|im_end|>\n"
                                      "<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert row["label"] == it["label"] and row["item_id"] == it["item_id"]
    assert prompt_text(tok, ids) == tok.decode(ids)


def test_qwen_style_template_is_patched_to_render_the_principle(tok):
    qwen_like = copy.deepcopy(tok)  # renders user/system/assistant only, drops other roles silently (as Qwen3 does)
    qwen_like.chat_template = (
        "{%- for message in messages %}"
        "{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}"
        "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
        "{%- elif message.role == \"assistant\" %}"
        "{{- '<|im_start|>assistant\\n' + message.content + '<|im_end|>\\n' }}"
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
    ctx = [{"role": "user", "content": "hi"}]
    before = qwen_like.decode(encode_genrm_prompt(qwen_like, ctx, "hello", "is polite", None)[0])
    assert "is polite" not in before
    assert ensure_principle_role(qwen_like) is True
    after = qwen_like.decode(encode_genrm_prompt(qwen_like, ctx, "hello", "is polite", None)[0])
    assert after.endswith("<|im_start|>principle\nis polite<|im_end|>\n<|im_start|>assistant\n")
    assert ensure_principle_role(qwen_like) is False and ensure_principle_role(tok) is False
    stubborn = copy.deepcopy(tok)
    stubborn.chat_template = ("{%- for m in messages %}{%- if m.role in ['user', 'assistant'] %}"
                              "{{- m.role + ': ' + m.content + '\\n' }}{%- endif %}{%- endfor %}")
    with pytest.raises(ValueError, match="^chat template"):
        ensure_principle_role(stubborn)


# ------------------------------------------------------------------ reward


def _hand_completions(tok):
    eos = tok.eos_token_id
    texts = ["The code is inside a ``` fenced block. So the response satisfies the principle.\nFinal Judgement: Yes",
             "Final Judgement: Yes was my first thought, but the code is indented.\nFinal Judgement: No",
             "The code is indented, not inside a fenced block.\nFinal Judgement:",  # cut at the length limit: no EOS
             "The response has no verdict at all.",  # ends (EOS) without the marker: still graded
             "Short.\nFinal Judgement: No"]
    ids = [tok.encode(t, add_special_tokens=False) + ([] if t.endswith(":") else [eos]) for t in texts]
    return texts, ids


def _direct(model, tok, prompt, ids, label):
    """NeMo-RL's reading, literally: the sequence ``prompt + completion`` ends with [judgement token, EOS]; one
    unpadded forward pass on ``sequence[:-2]`` gives the judgement token's distribution (None without EOS)."""
    if ids[-1] != tok.eos_token_id:
        return None
    seq = tok(prompt)["input_ids"] + ids
    yes, no = answer_token_ids(tok, leading_space=True)
    with torch.no_grad():
        lp = model(torch.tensor([seq[:-2]])).logits[0, -1].log_softmax(-1)
    top = lp.topk(20).indices.tolist()
    assert yes in top and no in top  # the precondition of this check
    g, ng = (yes, no) if label == "Yes" else (no, yes)
    return (lp[g] - lp[ng]).item()


def test_reward_equals_the_log_probability_difference(random_model, tok, items):
    texts, comp_ids = _hand_completions(tok)
    rows, _ = build_grpo_rows(items[:len(texts)], tok, max_prompt_length=150)
    prompts = [r["prompt"] for r in rows]
    labels = ["Yes", "No", "No", "Yes", "Yes"]
    logged = {}
    handle = logit_bias(random_model, tok, yes=40.0, no=40.0)  # both in the top-20; equal shifts cancel in d
    try:
        direct = [_direct(random_model, tok, p, c, g) for p, c, g in zip(prompts, comp_ids, labels)]
        expected = [-50.0 if d is None else d for d in direct]  # NeMo-RL: no floor on a wrong judgement
        for batch_size in (1, 2, 8):
            reward = JudgementReward(tok, batch_size=batch_size, model=random_model)
            got = reward(prompts=prompts, completions=texts, completion_ids=comp_ids, label=labels,
                         log_metric=lambda k, v: logged.__setitem__(k, v), trainer_state=None)
            assert got == pytest.approx(expected, abs=1e-4), batch_size
        flipped = JudgementReward(tok, model=random_model)(
            prompts=prompts, completions=texts, completion_ids=comp_ids,
            label=["No" if g == "Yes" else "Yes" for g in labels])
    finally:
        handle.remove()
    real = [d for d in direct if d is not None]
    assert len(real) == 4 and max(real) - min(real) > 0.5  # distinct values: the check could not pass by accident
    assert flipped == pytest.approx([-50.0 if d is None else -d for d in direct], abs=1e-4)  # the label flips the sign
    assert logged["accuracy"] == pytest.approx(sum(r > 0 for r in expected) / 5)
    assert logged["judgement_missing"] == pytest.approx(1 / 5)
    assert logged["marker_rate"] == pytest.approx(3 / 5)  # texts 1, 2 and 5 write "Final Judgement: Yes|No"


def test_reward_is_minus_50_outside_the_top_20(random_model, tok, items):
    texts, comp_ids = _hand_completions(tok)
    prompts = [r["prompt"] for r in build_grpo_rows(items[:len(texts)], tok, max_prompt_length=150)[0]]
    yes, no = answer_token_ids(tok, leading_space=True)
    for bias in ({"yes": -1e3, "no": 40.0}, {"yes": 40.0, "no": -1e3}):
        handle = logit_bias(random_model, tok, **bias)
        try:
            with torch.no_grad():  # precondition: one of the two answers really is outside the top-20
                lp = random_model(torch.tensor([tok(prompts[0])["input_ids"]])).logits[0, -1]
            top = lp.topk(20).indices.tolist()
            assert (yes in top) != (no in top)
            got = JudgementReward(tok, model=random_model)(prompts=prompts, completions=texts,
                                                           completion_ids=comp_ids, label=["Yes"] * 5)
        finally:
            handle.remove()
        assert got == [-50.0] * 5
    with pytest.raises(RuntimeError, match="model"):
        JudgementReward(tok)(prompts=prompts, completions=texts, completion_ids=comp_ids, label=["Yes"] * 5)


def test_score_of_an_untrained_model_is_clipped(random_model, tok, items):
    sub = items[:3]
    res = genrm_score([i["context"] for i in sub], [i["response"] for i in sub], [i["principle"] for i in sub],
                      random_model, tok, max_new_tokens=8, batch_size=2, max_prompt_length=100)
    assert res.missing == 3 and res.scores == [-50.0] * 3 and res.judged == [False] * 3
    assert len(res.texts) == 3 and all(isinstance(t, str) for t in res.texts)
    cut = [encode_genrm_prompt(tok, i["context"], i["response"], i["principle"], 100)[1] for i in sub]
    assert res.truncated == cut and any(cut)


# ------------------------------------------------------------------ warm-start data


def test_attach_reasoning_reads_extracted_evidence_only(items, tok):
    sub = [{**it, "record_id": f"r{k}", "response_index": 1 + k % 2} for k, it in enumerate(items[:6])]
    cands = [{"record_id": it["record_id"], "response": it["response_index"], "principle": it["principle"].upper(),
              "evidence": f"Quote {k}: the code sits in a fence.", "fulfillment": it["label"], "fate": "kept"}
             for k, it in enumerate(sub)]
    cands[1]["fate"] = "consensus"  # a dropped candidate is no evidence
    cands[2]["fulfillment"] = "No" if sub[2]["label"] == "Yes" else "Yes"  # evidence for the other label
    cands[3]["response"] = 3 - sub[3]["response_index"]  # the other response of the record
    out, counts = attach_reasoning(sub, cands)
    assert counts == {"evidence": 3, "generic": 3}
    for k, (it, o) in enumerate(zip(sub, out)):
        want = (generic_reasoning(it["principle"], it["label"]) if k in (1, 2, 3)
                else f"Quote {k}: the code sits in a fence.")  # the quote itself
        assert o["sft_reasoning"] == want
    assert "sft_reasoning" not in sub[0]  # inputs untouched
    assert attach_reasoning(sub)[1] == {"evidence": 0, "generic": 6}

    for thinking in (False, True):
        rows, cut = build_sft_rows(out, tok, max_length=MAX_LEN, enable_thinking=thinking)
        full = [len(encode_genrm_prompt(tok, o["context"], o["response"], o["principle"], None)[0]) for o in out]
        texts = [judgement_completion(o["sft_reasoning"], o["label"], thinking) for o in out]
        need = [len(tok.encode(t, add_special_tokens=False)) + 1 for t in texts]
        assert cut == sum(f + n > MAX_LEN for f, n in zip(full, need)) > 0
        for o, t, row in zip(out, texts, rows):
            n_prompt = row["labels"].count(-100)
            assert len(row["input_ids"]) == len(row["labels"]) <= MAX_LEN
            assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
            assert tok.decode(row["input_ids"][n_prompt:]) == t + "<|im_end|>"
            assert t.endswith(f"\n{MARKER} {o['label']}") and t.startswith("<think>\n") == thinking
    with pytest.raises(ValueError, match="^max_length"):
        build_sft_rows(out[:1], tok, max_length=20)


def test_no_training_input_reads_the_ground_truth():
    """The warm start, the GenRM trainer and the reward_models stage never touch ``truth.jsonl`` nor the world's
    checkers: checked on the code (AST) and on the stage notebook's code cells."""
    import ast
    import inspect

    import rlbff_lib.reward_models.genrm as genrm_module
    import rlbff_lib.stages.reward_models as stage_module
    from rlbff_lib.core.params import REPO_ROOT

    forbidden = ("truth", "rlbff_lib.synthetic", "checkers", "check_property")
    for module in (genrm_module, stage_module):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                assert not any(n.startswith("rlbff_lib.synthetic") for n in names), (module.__name__, names)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "truth.jsonl" not in node.value, module.__name__
    nb = json.loads((REPO_ROOT / "notebooks" / "reward_models.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for word in forbidden:
        assert word not in code, f"notebooks/reward_models.ipynb reads {word!r}"


def test_thinking_mode_is_pinned_into_the_saved_template(tok, tmp_path):
    ctx = [{"role": "user", "content": "hi"}]
    t = copy.deepcopy(tok)
    assert pinned_thinking(t) is None
    pin_thinking(t, True)
    pin_thinking(t, True)  # idempotent: one pin, replaced
    assert t.chat_template.count("set enable_thinking") == 1 and pinned_thinking(t) is True
    on = t.decode(encode_genrm_prompt(t, ctx, "hello", "is polite", None)[0])  # callers pass enable_thinking=False
    assert on.endswith("<|im_start|>assistant\n")  # ... but the pinned mode wins: no empty think block
    pin_thinking(t, False)
    assert t.decode(encode_genrm_prompt(t, ctx, "hello", "is polite", None)[0]).endswith("</think>\n\n")
    pin_thinking(t, True)
    t.save_pretrained(tmp_path / "tok")
    reloaded = prepare_tokenizer(tmp_path / "tok", enable_thinking=True)
    assert reloaded.decode(encode_genrm_prompt(reloaded, ctx, "hello", "is polite", None)[0]) == on


def test_rlhf_judge_reward_follows_nemo_rl():
    def toks(*pairs):  # (token, {alternative: logprob})
        return [{"token": t, "logprob": max(alt.values()) if alt else -1.0,
                 "top": [{"token": k, "logprob": v} for k, v in alt.items()] or [{"token": t, "logprob": -1.0}]}
                for t, alt in pairs]
    judged = toks(("Final", {}), (" Judgement", {}), (":", {}), (" Yes", {" Yes": -0.1, " No": -2.6, " no": -3.0}),
                  ("<|im_end|>", {"<|im_end|>": 0.0}))
    assert rlhf_judge_reward("r\nFinal Judgement: Yes", judged, "stop") == pytest.approx(2.5)
    assert rlhf_judge_reward("r\nFinal Judgement Yes", judged, "stop") == 0.0  # no marker: 0.0, not -50
    assert rlhf_judge_reward("r\nFinal Judgement: Yes", judged, "length") == 0.0  # never ended
    one_sided = toks((" Yes", {" Yes": -0.1, " Maybe": -2.0}), ("<|im_end|>", {}))
    assert rlhf_judge_reward("Final Judgement: Yes", one_sided, "stop") == 0.0  # " No" outside the top
    assert rlhf_judge_reward("Final Judgement: Yes", None, "stop") == 0.0


# ------------------------------------------------------------------ configs


def test_config_validation_and_trl_config(tmp_path):
    from rlbff_lib.training.trl_config import trl_config

    with pytest.raises(ValueError, match="^num_generations"):
        GenRMGRPOConfig(num_generations=1)
    with pytest.raises(ValueError, match="^per_device_train_batch_size"):
        GenRMGRPOConfig(num_generations=4, per_device_train_batch_size=6)
    with pytest.raises(ValueError, match="^epsilon_high"):
        GenRMGRPOConfig(epsilon=0.3, epsilon_high=0.2)
    with pytest.raises(ValueError, match="^vllm_mode"):
        GenRMGRPOConfig(vllm_mode="remote")
    with pytest.raises(ValueError, match="^stages"):
        GenRMConfig(stages=["grpo", "sft"])
    with pytest.raises(ValueError, match="^learning_rate"):
        GenRMSFTConfig(learning_rate=0)
    with pytest.raises(ParamError, match="genrm.grpo.beta"):
        build(GenRMConfig, {"grpo": {"beta": -1.0}}, "genrm")
    cfg = build(GenRMConfig, {"stages": ["grpo"], "grpo": {"num_generations": 16, "per_device_train_batch_size": 16,
                                                            "learning_rate": 2e-6}}, "genrm")
    assert cfg.stages == ["grpo"] and isinstance(cfg.grpo, GenRMGRPOConfig) and cfg.grpo.num_generations == 16
    args = trl_config(cfg.grpo, tmp_path)
    assert (args.num_generations, args.beta, args.epsilon, args.epsilon_high) == (16, 0.01, 0.2, 0.28)
    assert args.learning_rate == 2e-6 and not args.bf16 and not args.use_vllm and args.vllm_mode == "colocate"
    assert not args.gradient_checkpointing and args.remove_unused_columns is False
    assert args.generation_batch_size % args.num_generations == 0


# ------------------------------------------------------------------ training


@pytest.mark.slow
def test_sft_warm_start_learns_the_judgement_format(sft_run):
    record, metrics = sft_run["record"], sft_run["metrics"]
    losses = [p["loss"] for p in record["train"]]
    assert losses[-1] < losses[0] - 3.0, losses
    # greedy generations on held-out items end with a readable judgement, and it beats the majority label
    assert metrics["n"] == 120 and metrics["format_rate"] >= 0.9 and metrics["missing_rate"] <= 0.1, metrics
    assert metrics["accuracy"] >= metrics["majority"] + 0.15, metrics
    model_dir = sft_run["dir"] / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    logged = json.loads((sft_run["dir"] / "training_log.json").read_text())
    assert logged["name"] == "genrm_sft" and logged["extra"]["n_train"] == N_TRAIN


@pytest.mark.slow
def test_scores_read_the_judgement_token_deterministically(sft_run, items):
    model, tk = sft_run["model"], sft_run["tok"]
    sub = items[N_TRAIN:N_TRAIN + 6]
    args = ([i["context"] for i in sub], [i["response"] for i in sub], [i["principle"] for i in sub], model, tk)
    a = genrm_score(*args, max_new_tokens=GEN, batch_size=1, max_prompt_length=PROMPT_LEN)
    b = genrm_score(*args, max_new_tokens=GEN, batch_size=4, max_prompt_length=PROMPT_LEN)
    assert a.texts == b.texts and a.scores == pytest.approx(b.scores, abs=1e-4)
    judged = [i for i, j in enumerate(a.judged) if j]
    assert judged, a.texts
    yes, no = answer_token_ids(tk, leading_space=True)
    for i in judged:
        assert parse_judgement(a.texts[i]) is not None
        prompt, _ = encode_genrm_prompt(tk, sub[i]["context"], sub[i]["response"], sub[i]["principle"], PROMPT_LEN)
        with torch.no_grad():  # greedy, unpadded, one sequence at a time: NeMo-RL's sequence[:-2]
            seq = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=GEN,
                                 eos_token_id=tk.eos_token_id, pad_token_id=tk.pad_token_id)[0].tolist()
            assert seq[-1] == tk.eos_token_id
            lp = model(torch.tensor([seq[:-2]])).logits[0, -1].log_softmax(-1)
        assert a.scores[i] == pytest.approx((lp[yes] - lp[no]).item(), abs=1e-4)
    # answer tokens outside the top-20 are clipped too
    handle = logit_bias(model, tk, yes=-1e3)
    try:
        c = genrm_score(*args, max_new_tokens=GEN, batch_size=4, max_prompt_length=PROMPT_LEN)
    finally:
        handle.remove()
    assert c.missing == len(sub) and c.scores == [-50.0] * len(sub)


@pytest.mark.slow
def test_grpo_runs_logs_rewards_and_resumes(sft_run, items, tmp_path):
    start = sft_run["dir"] / "model"
    cfg = GenRMGRPOConfig(learning_rate=1e-4, max_steps=4, num_generations=2, per_device_train_batch_size=4,
                          max_prompt_length=PROMPT_LEN, max_completion_length=GEN, beta=0.01, logging_steps=1,
                          save_steps=2, reward_batch_size=4, seed=0)
    out = tmp_path / "grpo"
    with pytest.raises(Crash):
        train_grpo(cfg, start, items[:40], out, callbacks=[crash_after_checkpoint(2)])
    assert find_resume_checkpoint(out / "checkpoints")[0].endswith("checkpoint-2")
    assert not (out / "model").exists()

    record, trainer, _ = train_grpo(cfg, start, items[:40], out)
    assert record["resumed_from"].endswith("checkpoint-2")
    assert record["global_step"] == 4 and [p["step"] for p in record["train"]] == [1, 2, 3, 4]
    for point in record["train"]:
        r = point["rewards/genrm_judgement/mean"]
        assert -60.0 <= r < 50 and point["reward"] == pytest.approx(r) and 0 <= point["frac_reward_zero_std"] <= 1
        assert 0.0 <= point["accuracy"] <= 1.0 and 0.0 <= point["judgement_missing"] <= 1.0
        assert "kl" in point and "loss" in point
    assert any(p["judgement_missing"] < 1.0 for p in record["train"])  # the warm-started policy writes judgements
    logged = json.loads((out / "training_log.json").read_text())
    assert [p["reward"] for p in logged["train"]] == [p["reward"] for p in record["train"]]
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "tokenizer.json").exists()
    assert not (out / "model.tmp").exists()
    trained, before = load_causal_lm(out / "model"), load_causal_lm(start)
    assert not torch.allclose(trained.lm_head.weight, before.lm_head.weight)  # it did train


@pytest.mark.slow
def test_pipeline_skips_completed_stages_and_the_cli_runs_a_job(sft_run, items, base_dir, tmp_path):
    out = tmp_path / "genrm"
    shutil.copytree(sft_run["dir"], out / "sft")  # a finished sft stage
    summary = train_genrm(GenRMConfig(stages=["sft"]), base_dir, items[:N_TRAIN], out)
    assert summary["model_dir"] == str(out / "sft" / "model")
    assert summary["stages"]["sft"]["global_step"] == sft_run["record"]["global_step"]
    assert json.loads((out / "training_log.json").read_text())["model_dir"] == str(out / "sft" / "model")
    # the command line reads a TrainJob and runs the same pipeline
    (out / "training_log.json").unlink()
    train_file = tmp_path / "items.jsonl"
    train_file.write_text("".join(json.dumps(it) + "\n" for it in items[:N_TRAIN]))
    job = TrainJob(model=str(base_dir), train_file=str(train_file), output_dir=str(out),
                   config={"stages": ["sft"], "sft": {"max_length": MAX_LEN}}).write(tmp_path / "job.json")
    assert main(["train", "--config", str(job)]) == 0
    assert json.loads((out / "training_log.json").read_text())["stages"]["sft"]["name"] == "genrm_sft"
    model, tk = load_model("genrm", out / "sft" / "model")
    assert ensure_principle_role(tk) is False and pinned_thinking(tk) is False  # saved as trained
