"""Tokenizer training, chat template, tiny Qwen3 factory, safetensors round trip, pretraining."""
import random

import pytest
import torch

from rlbff_lib.models.lm import ModelSizeConfig, PretrainConfig, build_qwen3, load_causal_lm, pack_corpus, pretrain
from rlbff_lib.models.tokenizer import (ANSWER_WORDS, TokenizerConfig, answer_token_ids, check_tokenizer,
                                 load_tokenizer, train_tokenizer)

WORDS = "the response is concise and has inline comments but the code lacks a docstring yes no answer".split()


def _corpus(n=400, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        yield " ".join(rng.choice(WORDS) for _ in range(12)) + rng.choice([" Yes", " No", "\nYes", "\nNo"])


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(_corpus(), TokenizerConfig(vocab_size=400, min_frequency=2))


def test_answer_words_are_single_tokens(tok):
    for w in ANSWER_WORDS:
        assert len(tok.encode(w, add_special_tokens=False)) == 1, w
    yes, no = answer_token_ids(tok)
    assert yes != no
    assert tok.decode([yes]) == "Yes" and tok.decode([no]) == "No"


def test_chat_template_roles_and_thinking(tok):
    msgs = [{"role": "user", "content": "Is 2+2=4?"}, {"role": "assistant", "content": "Yes."},
            {"role": "principle", "content": "is correct"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>user\nIs 2+2=4?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n"
                    "<|im_start|>principle\nis correct<|im_end|>\n<|im_start|>assistant\n")
    nothink = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert nothink.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1


def test_byte_level_round_trip_of_unseen_text(tok):
    text = "Ünïcödé ✓ 数学 — code:\n    x = 1  # comment\n"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_save_and_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    check_tokenizer(again)
    assert again.encode("has inline comments Yes") == tok.encode("has inline comments Yes")
    assert again.pad_token == "<|endoftext|>" and again.eos_token == "<|im_end|>"


def test_tokenizer_config_validation():
    with pytest.raises(ValueError, match="vocab_size"):
        TokenizerConfig(vocab_size=10)


def test_tiny_qwen3_builds_saves_safetensors_and_reloads(tok, tmp_path):
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=128)
    model = build_qwen3(tok, size, seed=0)
    assert model.config.vocab_size == len(tok) and model.config.model_type == "qwen3"
    ids = torch.tensor([tok.encode("the response is concise Yes", add_special_tokens=False)])
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    again = load_causal_lm(tmp_path)
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, logits, atol=1e-5)


def test_model_size_validation():
    with pytest.raises(ValueError, match="num_key_value_heads"):
        ModelSizeConfig(num_attention_heads=4, num_key_value_heads=3)


def test_pretraining_lowers_the_loss(tok):
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=128)
    model = build_qwen3(tok, size, seed=0)
    blocks = pack_corpus(tok, list(_corpus(200, seed=1)), seq_len=32)
    curve = pretrain(model, blocks, PretrainConfig(steps=40, batch_size=8, seq_len=32, lr=1e-2))
    assert len(curve) >= 2 and curve[-1]["loss"] < curve[0]["loss"] - 0.5
