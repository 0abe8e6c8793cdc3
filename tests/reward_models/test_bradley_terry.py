"""Bradley–Terry baseline: loss formulas, strength/flip/threshold helpers, training, scoring."""
import json
import math
import random
import statistics

import pytest
import torch

from rlbff_lib.reward_models.bradley_terry import (BTConfig, annotator_strength, bt_loss, build_pair_rows,
                          ensemble_strength, fit_threshold, flip_weakest, pair_deltas,
                          reward_trainer_class, train_bt)
from rlbff_lib.reward_models.prompt import encode_response
from rlbff_lib.reward_models.scorers import Scorer, load_model
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.synthetic.world import WorldConfig, corpus_texts, generate_world
from fakes.tiny_models import save_base

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=1024)


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(n_prompts=300, seed=0))


@pytest.fixture(scope="module")
def base_dir(world, tmp_path_factory):
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=1000))
    path = tmp_path_factory.mktemp("base")
    return save_base(tok, TINY, path)


@pytest.fixture(scope="module")
def pairs(world):
    """Preference pairs with a learnable signal: chosen = the response that ends with a follow-up question.

    ``overall_preference`` and ``annotator_spread`` come from the world's annotators (HelpSteer3 style).
    """
    truth = {(t["id"], t["response"]): t["properties"] for t in world.truth}
    out = []
    for r in world.records:
        a, b = truth[(r["id"], 1)]["followup_question"], truth[(r["id"], 2)]["followup_question"]
        if a == b:
            continue
        chosen, rejected = (r["response1"], r["response2"]) if a else (r["response2"], r["response1"])
        out.append({"pair_id": r["id"], "prompt_id": r["id"], "domain": r["domain"], "context": r["context"],
                    "chosen": chosen, "rejected": rejected, "overall_preference": r["overall_preference"],
                    "annotator_spread": statistics.pstdev([p["score"] for p in r["individual_preference"]])})
    return out


def log_sigmoid(z):
    return -math.log1p(math.exp(-z))


# ------------------------------------------------------------------ loss


def test_loss_formulas_on_fixed_tensors():
    delta = torch.tensor([2.0, -1.0, 0.0, 0.5])
    margin = torch.tensor([0.5, 0.5, -1.0, 0.0])
    a = 0.1
    d, m = delta.tolist(), margin.tolist()
    plain = -sum(log_sigmoid(x) for x in d) / 4
    with_margin = -sum(log_sigmoid(x - y) for x, y in zip(d, m)) / 4
    smoothed = -sum((1 - a) * log_sigmoid(x) + a * math.log(1 - 1 / (1 + math.exp(-x))) for x in d) / 4
    both = -sum((1 - a) * log_sigmoid(x - y) + a * log_sigmoid(y - x) for x, y in zip(d, m)) / 4
    assert bt_loss(delta).item() == pytest.approx(plain, rel=1e-6)
    assert bt_loss(delta, margin).item() == pytest.approx(with_margin, rel=1e-6)
    assert bt_loss(delta, None, a).item() == pytest.approx(smoothed, rel=1e-6)
    assert bt_loss(delta, margin, a).item() == pytest.approx(both, rel=1e-6)
    assert len({round(x, 6) for x in (plain, with_margin, smoothed, both)}) == 4


def test_smoothing_and_margin_move_the_optimum():
    # smoothed BT on one pair is minimised at delta* = log((1 - a) / a), not at +infinity
    a = 0.2
    star = torch.tensor([math.log((1 - a) / a)], requires_grad=True)
    bt_loss(star, None, a).backward()
    assert abs(star.grad.item()) < 1e-6
    big = torch.tensor([10.0])
    assert bt_loss(big, None, a).item() > bt_loss(big).item() + 1.0  # an over-confident pair now costs
    # a margin demands that delta exceed it: same loss as plain BT shifted by the margin
    shifted = bt_loss(torch.tensor([3.0]), torch.tensor([2.0])).item()
    assert shifted == pytest.approx(bt_loss(torch.tensor([1.0])).item())


def test_trainer_compute_loss_uses_margin_and_smoothing(base_dir, pairs, tmp_path):
    from transformers import AutoTokenizer
    from rlbff_lib.training.trl_config import trl_config
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from datasets import Dataset

    tok = AutoTokenizer.from_pretrained(base_dir)
    cfg = BTConfig(max_length=128)
    rows, _ = build_pair_rows(pairs[:4], tok, 128, margins=[0.5, -1.0, 2.0, 0.0])

    for alpha in (0.0, 0.3):
        trainer = reward_trainer_class()(model=str(base_dir), args=trl_config(cfg, tmp_path),
                                   train_dataset=Dataset.from_list(rows), processing_class=tok, label_smoothing=alpha)
        batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(rows)
        model = trainer.model.eval()
        with torch.no_grad():
            r = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
            expected = bt_loss(r[:4] - r[4:], batch["margin"], alpha).item()
            got = trainer.compute_loss(model, dict(batch)).item()
        assert got == pytest.approx(expected, rel=1e-5)
        assert batch["margin"].tolist() == [0.5, -1.0, 2.0, 0.0]


# ------------------------------------------------------------------ strength, flipping, threshold


def test_strength_helpers():
    p = [{"overall_preference": -3, "annotator_spread": 0.5}, {"overall_preference": 1, "annotator_spread": 1.5}]
    assert annotator_strength(p) == [2.5, -0.5]
    mean, std = ensemble_strength([[1.0, -2.0, 0.0], [3.0, -2.0, 1.0]])
    assert mean == [2.0, -2.0, 0.5] and std == pytest.approx([1.0, 0.0, 0.5])


def test_flip_weakest():
    pairs = [{"pair_id": i, "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(10)]
    strength = [5, -1, 3, 0.5, 2, -4, 1, 1, 6, 0]
    out, s, flipped = flip_weakest(pairs, strength, 0.3)
    assert flipped == [1, 5, 9]
    for i, (p, st) in enumerate(zip(out, s)):
        if i in flipped:
            assert (p["chosen"], p["rejected"], p["flipped"], st) == (f"r{i}", f"c{i}", True, -strength[i])
        else:
            assert (p["chosen"], p["rejected"], st) == (f"c{i}", f"r{i}", strength[i]) and "flipped" not in p
    assert flip_weakest(pairs, strength, 0.0)[2] == []


def test_fit_threshold_matches_brute_force():
    assert fit_threshold([0.1, 0.2, 0.8, 0.9], ["No", "No", "Yes", "Yes"]) == (0.5, 1.0)
    t, acc = fit_threshold([1.0, 2.0, 3.0], [True, True, True])
    assert t < 1.0 and acc == 1.0
    t, acc = fit_threshold([1.0, 2.0, 3.0], [False, False, False])
    assert t >= 3.0 and acc == 1.0
    assert fit_threshold([1.0, 1.0, 2.0], [True, False, True]) == (0.0, 2 / 3)  # ties move together
    rng = random.Random(0)
    for _ in range(30):
        n = rng.randint(1, 25)
        scores = [round(rng.gauss(0, 1), 1) for _ in range(n)]
        labels = [rng.random() < 0.5 + 0.3 * math.tanh(s) for s in scores]
        t, acc = fit_threshold(scores, labels)
        assert acc == sum((s > t) == y for s, y in zip(scores, labels)) / n
        candidates = [min(scores) - 1] + scores
        assert acc == max(sum((s > c) == y for s, y in zip(scores, labels)) / n for c in candidates)
    with pytest.raises(ValueError, match="scores/labels"):
        fit_threshold([], [])


def test_config_validation():
    with pytest.raises(ValueError, match="^strength_source"):
        BTConfig(flip_share=0.2)
    with pytest.raises(ValueError, match="^strength_source"):
        BTConfig(adaptive_margin=True)
    with pytest.raises(ValueError, match="^label_smoothing"):
        BTConfig(label_smoothing=0.5)
    with pytest.raises(ValueError, match="^flip_share"):
        BTConfig(strength_source="annotator_spread", flip_share=1.0)
    with pytest.raises(ValueError, match="^ensemble_size"):
        BTConfig(strength_source="ensemble", ensemble_size=1)


# ------------------------------------------------------------------ training and scoring


def test_bt_trains_on_pairs_and_scores_without_padding_effects(base_dir, pairs, tmp_path):
    n = int(0.8 * len(pairs))
    cfg = BTConfig(learning_rate=3e-3, num_train_epochs=3, per_device_train_batch_size=8, max_length=192,
                   logging_steps=5, save_steps=1000)
    record = train_bt(cfg, base_dir, pairs[:n], tmp_path / "bt", eval_pairs=pairs[n:])
    assert record["extra"]["eval_pair_accuracy"] > 0.8, record["extra"]
    assert record["train"][-1]["loss"] < record["train"][0]["loss"] - 0.3
    assert json.loads((tmp_path / "bt" / "training_log.json").read_text())["extra"] == record["extra"]

    model, tok = load_model("bt", tmp_path / "bt" / "model")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    rng = random.Random(0)
    convs = [p["context"] for p in pairs[:9]]
    resps = [p["chosen"][: rng.randint(3, 500)] for p in pairs[:9]]
    direct = []
    for c, r in zip(convs, resps):
        ids, _ = encode_response(tok, c, r, None)
        with torch.no_grad():
            direct.append(model(torch.tensor([ids])).logits[0, 0].item())
    assert max(direct) - min(direct) > 0.5
    for batch_size in (1, 4, 16):
        res = Scorer("bt", model, tok, max_length=None, batch_size=batch_size)(convs, resps)
        assert res.scores == pytest.approx(direct, abs=1e-4) and res.n_truncated == 0
    # the scalar reward as a Yes/No classifier on "ends with a question", threshold fitted on held-out items
    held = pairs[n:]
    scores = Scorer("bt", model, tok, max_length=192)([p["context"] for p in held] * 2,
                                                      [p["chosen"] for p in held] + [p["rejected"] for p in held]).scores
    t, acc = fit_threshold(scores, [True] * len(held) + [False] * len(held))
    assert acc > 0.8


class MarginProbe:
    def __init__(self):
        from transformers import TrainerCallback

        probe = self
        self.batch = None

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
                probe.batch = next(iter(train_dataloader))

        self.callback = _CB()


def test_annotator_strength_flipping_and_adaptive_margin(base_dir, pairs, tmp_path):
    train = pairs[:20]
    cfg = BTConfig(max_steps=2, per_device_train_batch_size=4, max_length=128, save_steps=1000,
                   strength_source="annotator_spread", flip_share=0.25, adaptive_margin=True, margin_scale=0.5,
                   label_smoothing=0.1)
    probe = MarginProbe()
    record = train_bt(cfg, base_dir, train, tmp_path / "bt", callbacks=[probe.callback])
    strength = annotator_strength(train)
    weakest = sorted(range(20), key=lambda i: (strength[i], i))[:5]
    rows = [json.loads(line) for line in (tmp_path / "bt" / "strength.jsonl").read_text().splitlines()]
    assert [r["pair_id"] for r in rows] == [p["pair_id"] for p in train]
    assert [i for i, r in enumerate(rows) if r["flipped"]] == sorted(weakest) and record["extra"]["n_flipped"] == 5
    expected = [-s if i in weakest else s for i, s in enumerate(strength)]
    assert [r["strength"] for r in rows] == pytest.approx(expected)
    margins = probe.batch["margin"].tolist()  # what TRL's collator handed the loss
    assert len(margins) == 4 and all(any(abs(m - 0.5 * e) < 1e-6 for e in expected) for m in margins)


def test_ensemble_strength_is_mean_and_std_of_member_margins(base_dir, pairs, tmp_path):
    train = pairs[:12]
    cfg = BTConfig(max_steps=2, per_device_train_batch_size=4, max_length=96, save_steps=1000,
                   strength_source="ensemble", ensemble_size=2, flip_share=0.25)
    train_bt(cfg, base_dir, train, tmp_path / "bt")
    deltas = []
    for m in range(2):
        member_dir = tmp_path / "bt" / "ensemble" / f"member_{m}"
        assert json.loads((member_dir / "training_log.json").read_text())["global_step"] == 2
        model, tok = load_model("bt", member_dir / "model")
        deltas.append(pair_deltas(model, tok, train, 8, 96))
    assert deltas[0] != pytest.approx(deltas[1])  # different seeds, different members
    mean = [statistics.fmean(c) for c in zip(*deltas)]
    std = [statistics.pstdev(c) for c in zip(*deltas)]
    rows = [json.loads(line) for line in (tmp_path / "bt" / "strength.jsonl").read_text().splitlines()]
    flipped = {i for i, r in enumerate(rows) if r["flipped"]}
    assert flipped == set(sorted(range(12), key=lambda i: (mean[i], i))[:3])
    assert [abs(r["strength"]) for r in rows] == pytest.approx([abs(x) for x in mean], abs=1e-5)
    assert [r["uncertainty"] for r in rows] == pytest.approx(std, abs=1e-5)
