"""Scalar principle RM: the RLBFF prompt, left truncation, the scorer, SFT training, resume."""
import json
import random
import shutil

import pytest
import torch

from rlbff_lib.training.launch import checkpoint_problem, find_resume_checkpoint
from rlbff_lib.models.lm import ModelSizeConfig, load_causal_lm
from rlbff_lib.core.params import ParamError, build
from rlbff_lib.reward_models.prompt import PRINCIPLE_PROMPT, encode_rm_prompt, fit_conversation
from rlbff_lib.reward_models.scalar import ScalarRMConfig, build_sft_rows, train_scalar_rm
from rlbff_lib.reward_models.scorers import ScoreResult, Scorer, load_model, load_scorer
from rlbff_lib.models.tokenizer import TokenizerConfig, answer_token_ids, train_tokenizer
from rlbff_lib.synthetic.world import PROPERTIES, WorldConfig, corpus_texts, generate_world
from fakes.crash import Crash, crash_after_checkpoint
from fakes.tiny_models import save_base, spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=1024)


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(n_prompts=300, seed=0))


@pytest.fixture(scope="module")
def tok(world):
    return train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def base_dir(tok, tmp_path_factory):
    """A random-initialised tiny Qwen3 saved like the pipeline's base model."""
    path = tmp_path_factory.mktemp("base")
    return save_base(tok, TINY, path)


@pytest.fixture(scope="module")
def random_model(tok):
    """A tiny model with large random weights, so Yes/No logits differ a lot between inputs."""
    return spread_model(tok, TINY, seed=1)


def world_items(world, prop="followup_question"):
    """RM items from the world's truth: a phrasing of ``prop`` and the checker's label."""
    rng = random.Random(0)
    truth = {(t["id"], t["response"]): t for t in world.truth}
    items = []
    for rec in world.records:
        for j in (1, 2):
            t = truth[(rec["id"], j)]
            if prop in t["properties"]:
                items.append({"item_id": f"{rec['id']}-{j}", "prompt_id": rec["id"], "domain": rec["domain"],
                              "context": rec["context"], "response": rec[f"response{j}"],
                              "principle": rng.choice(PROPERTIES[prop].phrasings),
                              "label": "Yes" if t["properties"][prop] else "No", "property": prop})
    return items


def direct_score(model, tok, context, response, principle, max_length=None):
    """logit(Yes) - logit(No) from ONE unpadded forward pass."""
    ids, _ = encode_rm_prompt(tok, context, response, principle, max_length)
    yes, no = answer_token_ids(tok)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    return (logits[yes] - logits[no]).item()


# ------------------------------------------------------------------ prompt and truncation


def test_prompt_is_the_rlbff_prompt(tok):
    ctx = [{"role": "user", "content": "What is 1+1?"}]
    ids, cut = encode_rm_prompt(tok, ctx, "1+1=2", "correctness", None)
    assert not cut
    assert tok.decode(ids) == (
        "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n1+1=2<|im_end|>\n"
        "<|im_start|>user\nEvaluate the response to the previous prompt in terms of whether it satisfies this "
        "principle: correctness. Only answer Yes or No.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert PRINCIPLE_PROMPT.format(principle="p").endswith("principle: p. Only answer Yes or No.")


def test_truncation_cuts_the_conversation_from_the_left(tok):
    turns = []
    for i in range(4):
        turns += [{"role": "user", "content": f"question number {i} " * 30},
                  {"role": "assistant", "content": f"answer number {i} " * 30}]
    ctx = [{"role": "system", "content": "be brief"}] + turns + [{"role": "user", "content": "last question here"}]
    response, principle = "the final response text", "is concise"
    full, _ = encode_rm_prompt(tok, ctx, response, principle, None)
    tail = tok.decode(encode_rm_prompt(tok, [], response, principle, None)[0])
    n_min = len(encode_rm_prompt(tok, [{"role": "user", "content": ""}], response, principle, None)[0])
    principle_turn = PRINCIPLE_PROMPT.format(principle=principle)
    for max_length in (len(full) - 1, len(full) // 2, n_min + 5, n_min - 20):
        ids, cut = encode_rm_prompt(tok, ctx, response, principle, max_length)
        text = tok.decode(ids)
        assert cut and len(ids) <= max_length
        assert text.endswith(principle_turn + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
        if max_length >= n_min:  # the response and the principle turn fit: both whole, oldest turns gone first
            assert text.endswith(tail.split("<|im_start|>assistant\n", 1)[1])
            assert "question number 0" not in text and text.count("<|im_start|>user") >= 2
        else:  # even the tail is too long: the response loses its start, the principle turn survives
            assert "final response text" not in text
        if max_length >= len(full) // 2:
            assert text.startswith("<|im_start|>system\nbe brief") and "last question here" in text
    fits, cut = encode_rm_prompt(tok, ctx, response, principle, len(full))
    assert not cut and fits == full
    # a single long user turn loses the start of its text, keeps its end
    long_ctx = [{"role": "user", "content": " ".join(f"w{i}" for i in range(400)) + " END"}]
    ids, cut = fit_conversation(tok, long_ctx, [{"role": "assistant", "content": "ok"}], 80,
                                add_generation_prompt=False)
    text = tok.decode(ids)
    assert cut and len(ids) <= 80 and "w0 " not in text and "END<|im_end|>" in text and text.endswith("ok<|im_end|>\n")


# ------------------------------------------------------------------ scorer


def test_score_equals_direct_logit_difference_with_padding(random_model, tok, world):
    rng = random.Random(0)
    recs = world.records[:11]
    convs = [r["context"] for r in recs]
    resps = [r["response1"][: rng.randint(3, 600)] for r in recs]  # very mixed lengths
    prins = [rng.choice(["is concise", "ends with a follow-up question " * rng.randint(1, 6)]) for _ in recs]
    direct = [direct_score(random_model, tok, c, r, p) for c, r, p in zip(convs, resps, prins)]
    assert max(direct) - min(direct) > 1.0  # the check below could not pass by accident
    for batch_size in (1, 3, 8, 16):
        res = Scorer("scalar", random_model, tok, batch_size=batch_size)(convs, resps, prins)
        assert isinstance(res, ScoreResult) and res.n_truncated == 0
        assert res.scores == pytest.approx(direct, abs=1e-4), batch_size
        assert res.answers == ["Yes" if d > 0 else "No" for d in direct]
    # one principle for all, and a plain-string prompt
    res = Scorer("scalar", random_model, tok)(["What is 2+2?"], ["4"], "correctness")
    assert res.scores[0] == pytest.approx(
        direct_score(random_model, tok, [{"role": "user", "content": "What is 2+2?"}], "4", "correctness"), abs=1e-4)


def test_score_counts_truncation_and_keeps_the_principle(random_model, tok, world):
    recs = world.records[:6]
    convs = [r["context"] + [{"role": "assistant", "content": "earlier " * 80}, {"role": "user", "content": "again?"}]
             for r in recs]
    resps = ["short answer"] * 6
    lengths = [len(encode_rm_prompt(tok, c, r, "is concise", None)[0]) for c, r in zip(convs, resps)]
    max_length = sorted(lengths)[2]  # inputs 4..6 by length are cut
    # max_length is the window: the prompt plus the one answer token
    res = Scorer("scalar", random_model, tok, max_length=max_length + 1, batch_size=4)(convs, resps, "is concise")
    assert res.truncated == [n > max_length for n in lengths]
    assert res.n_truncated == sum(n > max_length for n in lengths) == 3
    for c, r, s in zip(convs, resps, res.scores):  # cut inputs are scored on their cut prompt
        assert s == pytest.approx(direct_score(random_model, tok, c, r, "is concise", max_length), abs=1e-4)


def test_load_scorer_round_trip(base_dir, tok):
    scorer = load_scorer("scalar", base_dir)
    assert not scorer.model.training and scorer.tokenizer.encode("is concise") == tok.encode("is concise")
    assert scorer.max_length == TINY.max_position_embeddings and scorer.prompt_budget == scorer.max_length - 1
    ctx = [{"role": "user", "content": "hi"}]
    assert scorer([ctx], ["hello"], "is polite").scores[0] == pytest.approx(
        direct_score(load_causal_lm(base_dir).eval(), tok, ctx, "hello", "is polite"), abs=1e-5)


# ------------------------------------------------------------------ config


def test_config_validation():
    with pytest.raises(ValueError, match="^learning_rate"):
        ScalarRMConfig(learning_rate=0)
    with pytest.raises(ValueError, match="^max_steps"):
        ScalarRMConfig(max_steps=0)
    with pytest.raises(ValueError, match="^warmup_ratio"):
        ScalarRMConfig(warmup_ratio=1.0)
    with pytest.raises(ParamError, match="scalar_rm.per_device_train_batch_size"):
        build(ScalarRMConfig, {"per_device_train_batch_size": 0}, "scalar_rm")
    assert build(ScalarRMConfig, {"max_steps": 5}, "scalar_rm").max_steps == 5


# ------------------------------------------------------------------ training


class LabelProbe:
    """Keeps the first collated training batch TRL feeds the model."""

    def __init__(self):
        from transformers import TrainerCallback

        probe = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
                probe.batch = next(iter(train_dataloader))

        self.callback = _CB()
        self.batch = None


def test_sft_rows_put_the_loss_on_the_answer_token_only(tok, world):
    items = world_items(world)[:20]
    rows, cut = build_sft_rows(items, tok, max_length=200)
    yes, no = answer_token_ids(tok)
    assert cut > 0
    for it, row in zip(items, rows):
        assert len(row["input_ids"]) == len(row["labels"]) <= 200
        assert row["labels"][:-1] == [-100] * (len(row["labels"]) - 1)
        assert row["labels"][-1] == row["input_ids"][-1] == (yes if it["label"] == "Yes" else no)
        prompt, _ = encode_rm_prompt(tok, it["context"], it["response"], it["principle"], 199)
        assert row["input_ids"][:-1] == prompt


@pytest.mark.slow
def test_training_beats_the_majority_baseline(base_dir, world, tmp_path):
    items = world_items(world)
    random.Random(1).shuffle(items)
    n = int(0.8 * len(items))
    train, val = items[:n], items[n:]
    cfg = ScalarRMConfig(learning_rate=3e-3, num_train_epochs=2, per_device_train_batch_size=8, max_length=256,
                         logging_steps=10, save_steps=1000)
    probe = LabelProbe()
    record = train_scalar_rm(cfg, base_dir, train, tmp_path / "rm", eval_items=val, callbacks=[probe.callback])

    # the batch TRL trains on: one label per row, the Yes/No token at the last real position
    batch = probe.batch
    yes, no = answer_token_ids(load_model("scalar", base_dir)[1])
    kept = batch["labels"] != -100
    assert kept.sum(1).tolist() == [1] * len(batch["labels"])
    last = batch["attention_mask"].sum(1) - 1
    assert torch.equal(kept.float().argmax(1), last)
    assert set(batch["labels"][kept].tolist()) <= {yes, no}

    extra = record["extra"]
    assert extra["eval_accuracy"] > extra["eval_majority"] + 0.15, extra
    assert record["train"][-1]["loss"] < record["train"][0]["loss"] - 1.0
    logged = json.loads((tmp_path / "rm" / "training_log.json").read_text())
    assert logged["extra"]["eval_accuracy"] == extra["eval_accuracy"] and logged["world_size"] == 1
    assert [p["step"] for p in logged["train"]][:2] == [1, 10]
    model_dir = tmp_path / "rm" / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    assert not (tmp_path / "rm" / "model.tmp").exists()
    # the saved model scores like the trained one
    res = load_scorer("scalar", model_dir, max_length=cfg.max_length)(  # the training window
        [v["context"] for v in val], [v["response"] for v in val], [v["principle"] for v in val])
    acc = sum((s > 0) == (v["label"] == "Yes") for s, v in zip(res.scores, val)) / len(val)
    assert acc == pytest.approx(extra["eval_accuracy"])


# ------------------------------------------------------------------ resume


def test_interrupted_training_resumes_to_the_same_result(base_dir, world, tmp_path):
    items = world_items(world)[:48]
    cfg = ScalarRMConfig(learning_rate=5e-3, max_steps=8, per_device_train_batch_size=4, max_length=128,
                         logging_steps=1, save_steps=4, seed=3)
    whole = train_scalar_rm(cfg, base_dir, items, tmp_path / "whole")

    with pytest.raises(Crash):
        train_scalar_rm(cfg, base_dir, items, tmp_path / "cut", callbacks=[crash_after_checkpoint(4)])
    ckpts = tmp_path / "cut" / "checkpoints"
    assert find_resume_checkpoint(ckpts)[0].endswith("checkpoint-4")
    assert not (tmp_path / "cut" / "model").exists()
    # a later checkpoint cut short by the crash: present, but must be skipped
    bad = ckpts / "checkpoint-6"
    shutil.copytree(ckpts / "checkpoint-4", bad)
    state = json.loads((bad / "trainer_state.json").read_text())
    (bad / "trainer_state.json").write_text(json.dumps({**state, "global_step": 6}))
    weights = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert "model.safetensors" in checkpoint_problem(bad)

    resumed = train_scalar_rm(cfg, base_dir, items, tmp_path / "cut")
    assert resumed["resumed_from"].endswith("checkpoint-4")
    assert [s["folder"].endswith("checkpoint-6") for s in resumed["skipped_checkpoints"]] == [True]
    assert resumed["global_step"] == whole["global_step"] == 8
    assert [p["loss"] for p in resumed["train"]] == pytest.approx([p["loss"] for p in whole["train"]], abs=1e-5)
    a, b = load_causal_lm(tmp_path / "whole" / "model"), load_causal_lm(tmp_path / "cut" / "model")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name
    assert not torch.allclose(a.lm_head.weight, load_causal_lm(base_dir).lm_head.weight)  # it did train


def test_checkpoint_checks(tmp_path):
    assert checkpoint_problem(tmp_path / "nope") is not None
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    assert "trainer_state" in checkpoint_problem(folder)
    (folder / "trainer_state.json").write_text('{"global_step": 3')
    assert "trainer_state" in checkpoint_problem(folder)
    (folder / "trainer_state.json").write_text('{"global_step": 2}')
    assert "step 2" in checkpoint_problem(folder)
    assert find_resume_checkpoint(tmp_path) == (None, [(str(folder), checkpoint_problem(folder))])
