"""Bradley–Terry baseline: loss formulas, strength/flip/threshold helpers, training, scoring."""
import json
import math
import random
import statistics

import pytest
import torch

from rlbff_lib.reward_models.bradley_terry import (BTConfig, annotator_strength, bt_loss, build_pair_rows,
                          difference_loss, ensemble_strength, fit_threshold, flip_weakest, meta_batch, pair_deltas,
                          reward_trainer_class, simcse_loss, train_bt)
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


# ------------------------------------------------------------------ Secrets II: contrastive learning and MetaRM


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _simcse_brute(z1, z2, tau):
    """SimCSE eq. 1 written out: mean over i of -log(exp(cos(z1_i, z2_i)/tau) / sum_j exp(cos(z1_i, z2_j)/tau))."""
    total = 0.0
    for i in range(len(z1)):
        logits = [_cos(z1[i], z2[j]) / tau for j in range(len(z2))]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(z1)


def test_simcse_loss_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    for tau in (0.05, 1.0):
        assert simcse_loss(z1, z2, tau).item() == pytest.approx(_simcse_brute(z1.tolist(), z2.tolist(), tau), rel=1e-5)
    assert simcse_loss(z1[:1], z2[:1], 0.05).item() == pytest.approx(0.0, abs=1e-7)  # no negatives: nothing to learn
    # identical views, orthogonal instances: loss = log(1 + (B-1) exp(-1/tau))
    eye = torch.eye(3)
    assert simcse_loss(eye, eye, 0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2.0)), rel=1e-6)


def test_difference_loss_matches_brute_force():
    rewards = [[0.3, -1.2, 2.0], [0.5, 0.5], [1.0, -0.25, 0.0, 4.0]]
    expected = sum(2 / len(r) ** 2 * sum(1 / (1 + math.exp(-abs(r[i] - r[j])))
                                         for i in range(len(r)) for j in range(i + 1, len(r))) for r in rewards)
    assert difference_loss([torch.tensor(r) for r in rewards]).item() == pytest.approx(expected, rel=1e-6)
    # equal rewards still count sigma(0) = 1/2 per pair: J = (2/k^2) * C(k,2) / 2
    assert difference_loss([torch.zeros(4)]).item() == pytest.approx(2 / 16 * 6 * 0.5)


def test_meta_batch_cycles_through_seeded_passes():
    n, size = 7, 3
    drawn = [i for step in range(7) for i in meta_batch(n, size, step, seed=1)]  # 21 draws = 3 whole passes
    for k in range(3):
        assert sorted(drawn[7 * k: 7 * k + 7]) == list(range(7))
    assert meta_batch(n, size, 4, 1) == drawn[12:15]  # a function of the step alone (resume draws the same)
    assert drawn[:7] != [i for step in range(7) for i in meta_batch(n, size, step, seed=2)][:7]
    assert meta_batch(2, 5, 0, 0)[:2] != [] and len(meta_batch(2, 5, 0, 0)) == 5  # more than a pass: repeats


def test_config_validation_of_the_new_options():
    for kwargs, field in (({"contrastive_weight": -1}, "contrastive_weight"),
                          ({"contrastive_temperature": 0}, "contrastive_temperature"),
                          ({"contrastive_dropout": 1.0}, "contrastive_dropout"),
                          ({"metarm_step_size": -0.1}, "metarm_step_size"),
                          ({"metarm_batch_size": 0}, "metarm_batch_size")):
        with pytest.raises(ValueError, match=f"^{field}"):
            BTConfig(**kwargs)
    plain = BTConfig(contrastive_weight=0.5, metarm_file="x.jsonl").plain(3)
    assert (plain.contrastive_weight, plain.metarm_file, plain.seed) == (0.0, None, 3)


def _last_hidden_and_reward(model, tok, context, response, max_length):
    """Unbatched, unpadded: the base model's last-layer state at the last token [H], and the reward."""
    ids, _ = encode_response(tok, context, response, max_length)
    with torch.no_grad():
        h = model.model(torch.tensor([ids])).last_hidden_state[0, -1]
        return h, model.score(h).item()


def test_contrastive_term_in_compute_loss_matches_brute_force(base_dir, pairs, tmp_path):
    from transformers import AutoTokenizer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from datasets import Dataset
    from rlbff_lib.training.trl_config import trl_config

    tok = AutoTokenizer.from_pretrained(base_dir)
    batch_pairs = pairs[:4]
    rows, _ = build_pair_rows(batch_pairs, tok, 128)
    beta, tau = 0.7, 1.0
    cfg = BTConfig(max_length=128, contrastive_weight=beta, contrastive_temperature=tau, contrastive_dropout=0.0)
    trainer = reward_trainer_class()(model=str(base_dir), args=trl_config(cfg, tmp_path),
                                     train_dataset=Dataset.from_list(rows), processing_class=tok,
                                     contrastive=(beta, tau, 0.0))
    model = trainer.model.train()
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(rows)  # right-padded, chosen then rejected
    with torch.no_grad():
        got = trainer.compute_loss(model, dict(batch)).item()
    hc, hr, deltas = [], [], []
    for p in batch_pairs:
        h1, r1 = _last_hidden_and_reward(model, tok, p["context"], p["chosen"], 128)
        h2, r2 = _last_hidden_and_reward(model, tok, p["context"], p["rejected"], 128)
        hc.append(h1)
        hr.append(h2)
        deltas.append(r1 - r2)
    d = [(a - b).tolist() for a, b in zip(hc, hr)]
    expected = -sum(log_sigmoid(x) for x in deltas) / 4 + beta * _simcse_brute(d, d, tau)
    assert got == pytest.approx(expected, rel=1e-4)
    assert abs(beta * _simcse_brute(d, d, tau)) > 0.05  # the term is there, not negligible
    # with dropout, the two views are independent masks of d scaled by 1/(1-p)
    trainer.contrastive = (beta, tau, 0.5)
    dd = torch.tensor(d)
    v1, v2 = trainer.contrastive_views(dd)
    for v in (v1, v2):
        assert torch.all((v == 0) | torch.isclose(v, 2 * dd))
    assert not torch.equal(v1, v2)


def test_metarm_step_matches_brute_force(base_dir, pairs, tmp_path):
    """One optimizer step (SGD, constant LR alpha) = theta - alpha * grad L(theta + eta * grad J(theta))."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rlbff_lib.core.io import write_jsonl

    tok = AutoTokenizer.from_pretrained(base_dir)
    meta_rec = {"context": pairs[5]["context"], "responses": [pairs[5]["chosen"], pairs[5]["rejected"],
                                                              pairs[6]["chosen"]]}
    write_jsonl(tmp_path / "meta.jsonl", [meta_rec])
    alpha, eta, L = 0.5, 2.0, 96
    cfg = BTConfig(max_steps=1, per_device_train_batch_size=2, max_length=L, save_steps=1000, warmup_ratio=0.0,
                   lr_scheduler_type="constant", learning_rate=alpha, max_grad_norm=1e9, logging_steps=1,
                   trl_args={"optim": "sgd"}, metarm_file=str(tmp_path / "meta.jsonl"), metarm_step_size=eta,
                   metarm_batch_size=1)
    train = pairs[:2]
    record = train_bt(cfg, base_dir, train, tmp_path / "bt")
    assert record["extra"]["metarm_prompts"] == 1 and record["global_step"] == 1
    after = load_file(str(tmp_path / "bt" / "model" / "model.safetensors"))

    # theta_0: the base model with the score head TRL initialises under set_seed(seed)
    from transformers import set_seed

    set_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    params = dict(model.named_parameters())
    theta0 = {k: v.detach().clone() for k, v in params.items()}

    def reward(context, response):
        ids, _ = encode_response(tok, context, response, L)
        return model(torch.tensor([ids])).logits[0, 0]

    def bt(pairs_):
        return sum(-torch.nn.functional.logsigmoid(reward(p["context"], p["chosen"]) - reward(p["context"], p["rejected"]))
                   for p in pairs_) / len(pairs_)

    plain = dict(zip(params, torch.autograd.grad(bt(train), list(params.values()), allow_unused=True)))
    r = [reward(meta_rec["context"], s) for s in meta_rec["responses"]]
    j = 2 / 9 * sum(torch.sigmoid((r[a] - r[b]).abs()) for a in range(3) for b in range(a + 1, 3))
    grads_j = torch.autograd.grad(j, list(params.values()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params.values(), grads_j):
            if g is not None:
                p.add_(eta * g)
    grads_l = dict(zip(params, torch.autograd.grad(bt(train), list(params.values()), allow_unused=True)))
    moved = 0
    for name, t0 in theta0.items():
        g = grads_l[name]
        expected = t0 - alpha * g if g is not None else t0
        assert torch.allclose(after[name], expected, atol=1e-5, rtol=1e-4), name
        moved += g is not None and float((alpha * g).abs().max()) > 1e-4
    assert moved > 5
    # the meta step mattered: plain BT (the gradient at theta_0) would have moved the weights elsewhere
    assert max(float((after[n] - (theta0[n] - alpha * g)).abs().max()) for n, g in plain.items() if g is not None) > 1e-3


def test_read_meta_set_names_bad_records(base_dir, tmp_path):
    from transformers import AutoTokenizer

    from rlbff_lib.core.io import DataError, write_jsonl
    from rlbff_lib.reward_models.bradley_terry import read_meta_set

    tok = AutoTokenizer.from_pretrained(base_dir)
    ctx = [{"role": "user", "content": "hi"}]
    write_jsonl(tmp_path / "ok.jsonl", [{"context": ctx, "responses": ["a", "b", "c"]},
                                        {"context": ctx, "chosen": "x", "rejected": "y", "overall_preference": 2}])
    ids = read_meta_set(tmp_path / "ok.jsonl", tok, 64)
    assert [len(r) for r in ids] == [3, 2] and ids[1][0] == encode_response(tok, ctx, "x", 64)[0]
    write_jsonl(tmp_path / "bad.jsonl", [{"context": ctx, "responses": ["a", "b"]}, {"context": ctx, "responses": ["a"]}])
    with pytest.raises(DataError, match="line 2.*responses"):
        read_meta_set(tmp_path / "bad.jsonl", tok, 64)
