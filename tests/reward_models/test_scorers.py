"""One scorer for every reward-model kind: the numbers of the code it replaced, the max_length rule,
the GenRM through genrm_score, loading and its errors."""
import pytest
import torch

from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, answer_token_ids, train_tokenizer
from rlbff_lib.reward_models.genrm import genrm_score
from rlbff_lib.reward_models.prompt import encode_response, encode_rm_prompt
from rlbff_lib.reward_models.scorers import KINDS, Scorer, load_model, load_scorer
from fakes.tiny_models import spread_model

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=4096)

CONVS = ["What is 12 + 30?",
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Explain photosynthesis briefly. " * 6}],
         "Write a Python function to add two numbers.",
         "Tell me a long story about the sea. " * 8]
RESPS = ["The answer is 42.", "- Plants turn light into sugar.\n- They release oxygen.",
         "def add(a, b):\n    return a + b", "Once upon a time."]
PRINCS = ["is concise", "is correct", "contains inline comments", "is concise"]
# A fixed corpus, so that the tokenizer (and the pinned numbers below) do not move with the synthetic world
CORPUS = [" ".join(t if isinstance(t, str) else " ".join(m["content"] for m in t) for t in (c, r, p))
          for c, r, p in zip(CONVS, RESPS, PRINCS)] * 5 + [
    "Evaluate the response to the previous prompt in terms of whether it satisfies this principle.",
    "Only answer Yes or No. The answer is Yes. The answer is No."] * 5

# Regression oracle: (scores, truncated) computed once by the code this module replaced (commit 60b5163), on
# the models below, before it was deleted: ``rlbff_lib.reward_models.scoring.score(CONVS, RESPS, PRINCS,
# model, tok, batch_size=2, max_length=L)`` (L counted the PROMPT) and
# ``rlbff_lib.reward_models.bradley_terry.bt_score(CONVS, RESPS, bt, tok, batch_size=2, max_length=L)``.
# Full inputs: 86, 169, 125, 152 tokens (scalar prompts), 38, 117, 67, 104 (bt). They depend on
# ``train_tokenizer`` and ``spread_model``: recompute them (old code from that commit) if those change.
OLD_SCALAR = {None: ([1.32228, 2.67008, 3.16295, -3.11282], [False] * 4),
              160: ([1.32228, 3.15265, 3.16295, -3.11282], [False, True, False, False]),
              100: ([1.32228, 3.75409, 3.26189, -0.3548], [False, True, True, True])}
OLD_BT = {None: ([-2.51901, 1.5944, -4.27842, 1.45969], [False] * 4),
          110: ([-2.51901, 1.06674, -4.27842, 1.4597], [False, True, False, False]),
          60: ([-2.51901, 0.64518, -3.82728, 0.45099], [False, True, True, True])}


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, TokenizerConfig(vocab_size=400, min_frequency=1))


@pytest.fixture(scope="module")
def lm(tok):
    return spread_model(tok, TINY, seed=2)


@pytest.fixture(scope="module")
def bt(lm):
    """A sequence classifier (one output) of the same shape, large random weights."""
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    torch.manual_seed(5)
    model = Qwen3ForSequenceClassification(Qwen3Config(**{**lm.config.to_dict(), "num_labels": 1})).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


@pytest.mark.parametrize("prompt_tokens", [None, 160, 100])
def test_scalar_scores_are_those_of_the_code_it_replaced(lm, tok, prompt_tokens):
    # the old max_length counted the prompt; the window adds the answer token
    window = None if prompt_tokens is None else prompt_tokens + 1
    res = Scorer("scalar", lm, tok, max_length=window, batch_size=2)(CONVS, RESPS, PRINCS)
    scores, truncated = OLD_SCALAR[prompt_tokens]
    assert res.scores == pytest.approx(scores, abs=2e-4) and res.truncated == truncated


@pytest.mark.parametrize("length", [None, 110, 60])
def test_bt_scores_are_those_of_the_code_it_replaced(bt, tok, length):
    res = Scorer("bt", bt, tok, max_length=length, batch_size=2)(CONVS, RESPS)
    scores, truncated = OLD_BT[length]
    assert res.scores == pytest.approx(scores, abs=2e-4) and res.truncated == truncated


def test_scores_match_unpadded_single_forward_passes(lm, bt, tok):
    """An independent oracle: each input alone, no padding, no batching."""
    yes, no = answer_token_ids(tok)
    scalar = Scorer("scalar", lm, tok, max_length=111, batch_size=3)(CONVS, RESPS, PRINCS)
    reward = Scorer("bt", bt, tok, max_length=90, batch_size=3)(CONVS, RESPS, "ignored")
    for c, r, p, s, b in zip(CONVS, RESPS, PRINCS, scalar.scores, reward.scores):
        messages = [{"role": "user", "content": c}] if isinstance(c, str) else c
        ids, _ = encode_rm_prompt(tok, messages, r, p, 110)
        assert len(ids) <= 110
        with torch.no_grad():
            logits = lm(torch.tensor([ids])).logits[0, -1]
            assert s == pytest.approx((logits[yes] - logits[no]).item(), abs=1e-4)
            ids, _ = encode_response(tok, c, r, 90)
            assert b == pytest.approx(bt(torch.tensor([ids])).logits[0, 0].item(), abs=1e-4)


def test_one_max_length_rule_for_every_kind(lm, tok):
    for kind, reserved in (("scalar", 1), ("bt", 0), ("genrm", 96)):
        scorer = Scorer(kind, lm, tok, max_length=1024, max_new_tokens=96)
        assert scorer.reserved == reserved and scorer.prompt_budget == 1024 - reserved
    assert Scorer("scalar", lm, tok).max_length == 4096  # None: the model's positions
    capped = Scorer("scalar", lm, tok, max_length=5000)  # capped at them, the request kept for the report
    assert capped.max_length == 4096 and capped.info()["max_length_requested"] == 5000
    with pytest.raises(ValueError, match=r"^max_length: 100 minus 96 written tokens leaves 4 prompt tokens"):
        Scorer("genrm", lm, tok, max_length=100, max_new_tokens=96)
    for kwargs, field in (({"kind": "ppo"}, "kind"), ({"batch_size": 0}, "batch_size"),
                          ({"max_new_tokens": 0}, "max_new_tokens")):
        with pytest.raises(ValueError, match=f"^{field}"):
            Scorer(**{"kind": "scalar", "model": lm, "tokenizer": tok, **kwargs})
    with pytest.raises(ValueError, match="^principles"):
        Scorer("scalar", lm, tok)(CONVS, RESPS)
    with pytest.raises(ValueError, match="^principles: 2 given for 4"):
        Scorer("scalar", lm, tok)(CONVS, RESPS, PRINCS[:2])
    assert KINDS == ("scalar", "bt", "genrm")


def test_genrm_scores_through_genrm_score_with_the_prompt_budget(lm, tok):
    scorer = Scorer("genrm", lm, tok, max_length=120, max_new_tokens=4, batch_size=2)
    res = scorer(CONVS, RESPS, PRINCS)
    direct = genrm_score(CONVS, RESPS, PRINCS, lm, tok, max_new_tokens=4, batch_size=2, max_prompt_length=116)
    assert res.scores == direct.scores and res.texts == direct.texts and res.truncated == direct.truncated
    assert any(res.truncated) and not all(res.truncated)


def test_load_scorer_info_release_and_folder_errors(lm, tok, tmp_path):
    lm.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    scorer = load_scorer("scalar", tmp_path / "m", max_length=512, batch_size=2)
    info = scorer.info()
    assert info["kind"] == "scalar" and info["max_length"] == 512 and info["prompt_budget"] == 511
    assert info["parameters"] == sum(p.numel() for p in lm.parameters()) and info["max_position_embeddings"] == 4096
    assert info["device"] == "cpu" and info["dtype"] == "torch.float32"
    assert scorer(CONVS, RESPS, PRINCS).scores == pytest.approx(
        Scorer("scalar", lm, tok, max_length=512)(CONVS, RESPS, PRINCS).scores, abs=1e-5)
    scorer.release()
    with pytest.raises(RuntimeError, match="released"):
        scorer(CONVS, RESPS, PRINCS)
    model, _ = load_model("bt", tmp_path / "m")  # a causal-LM folder read as a classifier (fresh head)
    assert type(model).__name__ == "Qwen3ForSequenceClassification" and not model.training
    with pytest.raises(FileNotFoundError, match="nowhere: no such model folder"):
        load_scorer("scalar", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_scorer("scalar", tmp_path)
    with pytest.raises(ValueError, match="^kind"):
        load_model("judge", tmp_path / "m")
