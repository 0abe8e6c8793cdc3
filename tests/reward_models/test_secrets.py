"""The Secrets-II ablation's pieces: the world's pair facts, the strength report, the principle-blind scoring."""
import random

import pytest
import torch

from fakes.tiny_models import spread_model
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.principles.datasets import SplitConfig
from rlbff_lib.reward_models.scorers import Scorer
from rlbff_lib.reward_models.secrets import check_items_match, strength_report, unique_scores, world_pairs
from rlbff_lib.synthetic.world import DOMAIN_PROPERTIES, WorldConfig, corpus_texts, generate_world

CFG = WorldConfig(n_prompts=300, seed=5, preference_mistake_rate=0.3)


@pytest.fixture(scope="module")
def split_pairs():
    return world_pairs(CFG, SplitConfig())


def test_pair_facts_agree_with_the_world(split_pairs):
    splits, facts = split_pairs
    world = generate_world(CFG)
    truth = {(t["id"], t["response"]): t for t in world.truth}
    pairs = [p for s in splits.values() for p in s]
    assert set(splits) == {"train", "validation", "bench"} and len(pairs) == len(facts)
    agree = shared = 0
    for p in pairs:
        rid = p["record_id"]
        t1, t2 = truth[(rid, 1)], truth[(rid, 2)]
        chosen = 1 if p["chosen"] == next(r for r in world.records if r["id"] == rid)["response1"] else 2
        assert facts[p["pair_id"]]["mistake"] == t1["preference_mistake"]
        props = DOMAIN_PROPERTIES[t1["domain"]]
        share = [sum(t["properties"][q] for q in props) for t in (t1, t2)]
        better = 0 if share[0] == share[1] else (1 if share[chosen - 1] > share[2 - chosen] else -1)
        if better and facts[p["pair_id"]]["clean"]:  # the label without mistakes follows the world's quality
            shared += 1
            agree += better == facts[p["pair_id"]]["clean"]
    assert shared > 50 and agree / shared > 0.95
    mistaken = [p for p in pairs if facts[p["pair_id"]]["mistake"]]
    assert 0.05 < len(mistaken) / len(pairs) < 0.4
    assert any(facts[p["pair_id"]]["clean"] == -1 for p in mistaken)  # some labels are reversed, not only made up


def test_strength_report_on_a_hand_example():
    pairs = [{"pair_id": str(i)} for i in range(10)]
    facts = {str(i): {"mistake": i in (0, 3)} for i in range(10)}
    strength = [-1.0, 2.0, 3.0, 0.5, 4.0, 5.0, 0.4, 6.0, 7.0, 8.0]  # weakest two: 0 (mistake) and 6 (not)
    out = strength_report(strength, pairs, facts)
    # AUROC of -strength, mistakes {1.0, -0.5} vs the rest: 1.0 beats all 8; -0.5 beats -0.4..-8 (7 of 8)
    assert out["auroc"]["auroc"] == pytest.approx(15 / 16)
    assert out["mistakes_in_weakest"]["accuracy"] == 50.0 and out["mistakes_in_weakest"]["n"] == 2
    assert out["mistakes_overall"]["accuracy"] == 20.0


def test_check_items_match_refuses_another_worlds_items(split_pairs):
    splits, _ = split_pairs
    pairs = [p for s in splits.values() for p in s]
    ours = [{"context": p["context"]} for p in pairs[:5]]
    check_items_match(ours, pairs, "dir")
    with pytest.raises(ValueError, match="^--principles-dir: 5 of 6 items"):
        check_items_match([{"context": [{"role": "user", "content": f"other {i}"}]} for i in range(5)] + ours[:1],
                          pairs, "dir")


def test_unique_scores_give_equal_inputs_one_score():
    world = generate_world(WorldConfig(n_prompts=40, seed=0))
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=1000))
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=1024)
    from transformers import Qwen3ForSequenceClassification

    lm = spread_model(tok, size, seed=1)
    model = Qwen3ForSequenceClassification(lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 1})).eval()
    model.model.load_state_dict(lm.model.state_dict())
    model.config.pad_token_id = tok.pad_token_id
    recs = world.records[:6]
    rng = random.Random(0)
    rows = [recs[rng.randrange(6)] for _ in range(20)]  # repeats, in mixed batches
    contexts, responses = [r["context"] for r in rows], [r["response1"] for r in rows]
    got = unique_scores(model, tok, contexts, responses, 512)
    by_input = {}
    for r, s in zip(rows, got):
        by_input.setdefault(r["id"], set()).add(s)
    assert all(len(v) == 1 for v in by_input.values())  # exactly equal, not merely close
    alone = [Scorer("bt", model, tok, max_length=512, batch_size=1)([c], [x]).scores[0] for c, x in zip(contexts, responses)]
    assert got == pytest.approx(alone, abs=1e-4) and max(got) - min(got) > 0.01


def test_near_optimal_thresholds_brute_force():
    from rlbff_lib.reward_models.secrets import near_optimal_thresholds

    rng = random.Random(2)
    for _ in range(20):
        scores = [round(rng.gauss(0, 1), 1) for _ in range(rng.randint(2, 30))]
        labels = ["Yes" if rng.random() < 0.5 + 0.2 * s else "No" for s in scores]
        ts = near_optimal_thresholds(scores, labels, slack=1)
        acc = lambda t: sum((s > t) == (lab == "Yes") for s, lab in zip(scores, labels))
        grid = [min(scores) - 1] + [x + 0.05 for x in sorted(set(scores))]  # one point inside every gap and beyond
        best = max(acc(t) for t in grid)
        assert all(acc(t) >= best - 1 for t in ts)
        assert len(ts) == sum(acc(t) >= best - 1 for t in grid)
