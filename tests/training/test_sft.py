"""LabelPositionsSFTTrainer against TRL's own SFTTrainer.compute_loss (the oracle): the same loss and the same
gradients on the same batch, for one label per row (the scalar RM's answer token) and for completions (the GenRM and
policy warm starts), right- and left-padded, with and without ``num_items_in_batch``; metrics logged as TRL's."""
import copy

import pytest
import torch
from datasets import Dataset
from trl import SFTTrainer

from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from rlbff_lib.training.sft import LabelPositionsSFTTrainer, accepts_logits_to_keep
from rlbff_lib.training.trl_config import trl_config
from rlbff_lib.reward_models.scalar import ScalarRMConfig
from rlbff_lib.synthetic import world as W
from fakes.tiny_models import save_base

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    world = W.generate_world(W.WorldConfig(n_prompts=20, seed=1))
    tok = train_tokenizer(list(W.corpus_texts(world)), TokenizerConfig(vocab_size=400))
    return save_base(tok, TINY, tmp_path_factory.mktemp("base"))


def rows(kind: str, n: int = 12):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        length = int(torch.randint(6, 30, (1,), generator=g))
        ids = torch.randint(5, 300, (length,), generator=g).tolist()
        if kind == "answer":     # the scalar RM: one label, the last token
            labels = [-100] * (length - 1) + [ids[-1]]
        else:                    # a completion: the last 1..8 tokens
            k = min(length - 1, 1 + i % 8)
            labels = [-100] * (length - k) + ids[-k:]
        out.append({"input_ids": ids, "labels": labels})
    return out


def losses_and_grads(trainer_cls, base_dir, data, padding_side, num_items, tmp_path):
    torch.manual_seed(0)
    tok = load_tokenizer(base_dir)
    tok.padding_side = padding_side
    args = trl_config(ScalarRMConfig(max_steps=1, per_device_train_batch_size=6, max_length=64), tmp_path / "ckpt")
    trainer = trainer_cls(model=str(base_dir), args=args, train_dataset=Dataset.from_list(data), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads, {k: list(v) for k, v in trainer._metrics["train"].items()}, batch


@pytest.mark.parametrize("kind", ["answer", "completion"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("num_items", [None, 40])
def test_same_loss_and_gradients_as_trl(base_dir, tmp_path, kind, padding_side, num_items):
    data = rows(kind)
    ours, g_ours, m_ours, batch = losses_and_grads(LabelPositionsSFTTrainer, base_dir, data, padding_side, num_items,
                                                   tmp_path / "a")
    trl, g_trl, m_trl, batch_trl = losses_and_grads(SFTTrainer, base_dir, data, padding_side, num_items, tmp_path / "b")
    assert torch.equal(batch["input_ids"], batch_trl["input_ids"])
    assert (batch["labels"] != -100).sum() > (6 if kind == "completion" else 0)
    assert ours == pytest.approx(trl, rel=1e-5, abs=1e-6)
    assert set(g_ours) == set(g_trl)
    for name in g_trl:
        assert torch.allclose(g_ours[name], g_trl[name], rtol=1e-4, atol=1e-6), name
    for key in ("entropy", "mean_token_accuracy", "num_tokens"):
        assert m_ours[key] == pytest.approx(m_trl[key], rel=1e-4, abs=1e-6), key


def test_falls_back_to_trl_where_its_path_does_not_apply(base_dir, tmp_path):
    """Label smoothing needs TRL's full-logit path: the subclass hands the call to TRL unchanged."""
    data = rows("completion")
    tok = load_tokenizer(base_dir)
    args = trl_config(ScalarRMConfig(max_steps=1, per_device_train_batch_size=6, max_length=64,
                                     trl_args={"label_smoothing_factor": 0.1}), tmp_path / "c")
    ours = LabelPositionsSFTTrainer(model=str(base_dir), args=copy.deepcopy(args),
                                    train_dataset=Dataset.from_list(data), processing_class=tok)
    trl = SFTTrainer(model=str(base_dir), args=copy.deepcopy(args), train_dataset=Dataset.from_list(data),
                     processing_class=tok)
    trl.model.load_state_dict(ours.model.state_dict())
    batch = next(iter(ours.get_train_dataloader()))
    assert not ours._label_positions_path(ours.model, batch, False)
    assert ours.compute_loss(ours.model, dict(batch)).item() == pytest.approx(
        trl.compute_loss(trl.model, dict(batch)).item(), rel=1e-6)
    assert accepts_logits_to_keep(ours.model)
