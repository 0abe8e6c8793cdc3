"""LoRA (rlbff_lib.training.lora): off by default, adapters (and the heads that must train) only when on, merged into
full weights that the scorer loads like any trained model; the run key, the model card and resume follow."""
import random

import pytest
import torch

from rlbff_lib.alignment.grpo import AlignmentConfig, RewardConfig, train_grpo
from rlbff_lib.alignment.policy import PolicySFTConfig, train_policy_sft
from rlbff_lib.core.params import ParamError, build, load_params
from rlbff_lib.models.lm import ModelSizeConfig, load_causal_lm
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.reward_models.bradley_terry import BTConfig, train_bt
from rlbff_lib.reward_models.genrm import GenRMConfig
from rlbff_lib.reward_models.scalar import ScalarRMConfig, train_scalar_rm
from rlbff_lib.reward_models.scorers import Scorer, load_scorer
from rlbff_lib.synthetic import world as W
from rlbff_lib.training.launch import checkpoint_problem
from rlbff_lib.training.lora import LoraSettings
from rlbff_lib.training.model_card import model_card
from rlbff_lib.training.runs import run_key
from fakes.tiny_models import save_base

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)
LORA = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0)


@pytest.fixture(scope="module")
def world():
    return W.generate_world(W.WorldConfig(n_prompts=200, seed=0))


@pytest.fixture(scope="module")
def tok(world):
    return train_tokenizer(list(W.corpus_texts(world)), TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def base_dir(tok, tmp_path_factory):
    """The tiny Qwen3 of the pipeline (tied embeddings)."""
    return save_base(tok, TINY, tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def untied_dir(tok, tmp_path_factory):
    """The same with its own output head (as Qwen3-32B)."""
    from rlbff_lib.models.lm import build_qwen3

    path = tmp_path_factory.mktemp("base_untied")
    model = build_qwen3(tok, TINY, seed=0)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone() * 2)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def items(world):
    rng = random.Random(0)
    truth = {(t["id"], t["response"]): t for t in world.truth}
    out = []
    for rec in world.records:
        for j in (1, 2):
            props = truth[(rec["id"], j)]["properties"]
            if "followup_question" in props:
                out.append({"item_id": f"{rec['id']}-{j}", "context": rec["context"], "response": rec[f"response{j}"],
                            "principle": rng.choice(W.PROPERTIES["followup_question"].phrasings),
                            "label": "Yes" if props["followup_question"] else "No"})
    return out


class Probe:
    """A Trainer callback keeping the trained model and its trainable parameter names and sizes."""

    def __init__(self):
        from transformers import TrainerCallback

        probe = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                probe.trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
                probe.total = sum(p.numel() for p in model.parameters())

            def on_train_end(self, args, state, control, model=None, **kw):
                probe.model = model

        self.callback = _CB()


def lora_count(model_dir, r, cls=None) -> int:
    """Brute force: r · (in + out) for every linear layer inside the decoder (all-linear: not the output head)."""
    from transformers import AutoModelForCausalLM

    model = (cls or AutoModelForCausalLM).from_pretrained(str(model_dir))
    return sum(r * (m.in_features + m.out_features) for m in model.base_model.modules()
               if isinstance(m, torch.nn.Linear))


def scores(scorer, items):
    return scorer([it["context"] for it in items], [it["response"] for it in items],
                  [it["principle"] for it in items]).scores


def assert_published_is_full_weights(folder):
    names = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in names and not {"adapter_model.safetensors", "adapter_config.json"} & names


# ------------------------------------------------------------------ settings, key, card


def test_lora_is_off_by_default_everywhere_and_checked():
    params = load_params()
    configs = [params["reward_models"].scalar, params["reward_models"].bt, params["reward_models"].genrm.sft,
               params["reward_models"].genrm.grpo, params["alignment"].policy, params["alignment"].grpo]
    assert all(c.lora == LoraSettings() and not c.lora.enabled for c in configs)
    assert LoraSettings().peft_config() is None
    with pytest.raises(ParamError, match=r"^scalar\.lora\.r: must be >= 1"):
        build(ScalarRMConfig, {"lora": {"enabled": True, "r": 0}}, "scalar")
    with pytest.raises(ParamError, match=r"^genrm\.sft\.lora\.dropout"):
        build(GenRMConfig, {"sft": {"lora": {"dropout": 1.5}}}, "genrm")
    with pytest.raises(ParamError, match=r"^scalar\.lora\.rank: unknown key"):
        build(ScalarRMConfig, {"lora": {"rank": 8}}, "scalar")
    cfg = build(BTConfig, {"lora": {"enabled": True, "target_modules": ["q_proj", "v_proj"]}}, "bt").lora.peft_config(
        "SEQ_CLS")
    assert (cfg.r, cfg.lora_alpha, set(cfg.target_modules), cfg.task_type) == (16, 32, {"q_proj", "v_proj"}, "SEQ_CLS")


def test_run_key_changes_with_lora_on_and_not_for_settings_of_a_lora_that_is_off():
    from dataclasses import asdict

    old = asdict(ScalarRMConfig())
    del old["lora"]  # a run keyed before the option existed
    key = run_key(old, "base")
    assert run_key(asdict(ScalarRMConfig()), "base") == key
    assert run_key(asdict(ScalarRMConfig(lora=LoraSettings(r=4))), "base") == key  # off: nothing changes
    on = run_key(asdict(ScalarRMConfig(lora=LoraSettings(enabled=True))), "base")
    assert on != key
    assert run_key(asdict(ScalarRMConfig(lora=LoraSettings(enabled=True, r=8))), "base") not in (key, on)
    genrm = asdict(GenRMConfig())
    assert run_key({**genrm, "grpo": {**genrm["grpo"], "lora": asdict(LORA)}}, "base") != run_key(genrm, "base")


def test_model_card_states_lora_or_full_weights():
    from dataclasses import asdict

    card = model_card({"kind": "scalar", "name": "s", "parameters": asdict(ScalarRMConfig(lora=LORA))})
    assert "Trained with LoRA: rank 4, alpha 8, dropout 0.0, target modules `all-linear`" in card
    assert "| `lora.enabled` | `true` |" in card
    genrm = asdict(GenRMConfig())
    genrm["grpo"]["lora"] = asdict(LORA)
    card = model_card({"kind": "genrm", "name": "g", "parameters": genrm})
    assert "Full-weight training (sft) (LoRA off)." in card and "Trained with LoRA (grpo): rank 4" in card
    assert "LoRA" not in model_card({"kind": "bt", "name": "b", "parameters": {"learning_rate": 1e-3}})


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("base", ["base_dir", "untied_dir"])
def test_scalar_rm_trains_adapters_and_the_scorer_loads_the_merge(base, tok, items, tmp_path, request):
    base_dir = request.getfixturevalue(base)
    train, held = items[:32], items[32:48]
    cfg = ScalarRMConfig(learning_rate=2e-2, max_steps=6, per_device_train_batch_size=8, max_length=128,
                         logging_steps=1, save_steps=3, eval_batch_size=16, lora=LORA)
    probe = Probe()
    record = train_scalar_rm(cfg, base_dir, train, tmp_path / "rm", eval_items=held, callbacks=[probe.callback])
    # only the adapters trained: their brute-force count, far below the full count
    assert all("lora_" in n for n in probe.trainable)
    assert sum(probe.trainable.values()) == lora_count(base_dir, 4) < 0.2 * probe.total
    # checkpoints hold the adapter and count as complete (resume)
    assert checkpoint_problem(tmp_path / "rm" / "checkpoints" / "checkpoint-6") is None
    # the published folder is full weights; the scorer loads it; its scores are the trained model's, not the base's
    folder = tmp_path / "rm" / "model"
    assert_published_is_full_weights(folder)
    merged = scores(load_scorer("scalar", folder, max_length=128), held)
    trained = scores(Scorer("scalar", probe.model.eval(), tok, max_length=128), held)
    base = scores(load_scorer("scalar", base_dir, max_length=128), held)
    assert merged == pytest.approx(trained, abs=1e-4)
    assert max(abs(m - b) for m, b in zip(merged, base)) > 1e-2
    assert record["extra"]["eval_accuracy"] == pytest.approx(
        sum((s > 0) == (it["label"] == "Yes") for s, it in zip(merged, held)) / len(held))
    # the merge changed the decoder's linear layers only: embeddings and output head are the base's
    before, after = load_causal_lm(base_dir), load_causal_lm(folder)
    assert torch.equal(after.lm_head.weight, before.lm_head.weight)
    assert torch.equal(after.get_input_embeddings().weight, before.get_input_embeddings().weight)
    assert not torch.equal(after.model.layers[-1].mlp.down_proj.weight, before.model.layers[-1].mlp.down_proj.weight)
    assert record["train"][-1]["loss"] < record["train"][0]["loss"]


def test_bt_trains_adapters_and_the_score_head(base_dir, tok, world, tmp_path):
    from transformers import AutoModelForSequenceClassification

    rng = random.Random(1)
    pairs = [{"context": r["context"], "chosen": r["response1"], "rejected": r["response2"]}
             for r in world.records[:24]]
    rng.shuffle(pairs)
    cfg = BTConfig(learning_rate=2e-2, max_steps=4, per_device_train_batch_size=4, max_length=128, logging_steps=1,
                   save_steps=100, lora=LORA)
    probe = Probe()
    train_bt(cfg, base_dir, pairs, tmp_path / "bt", callbacks=[probe.callback])
    head = {n: k for n, k in probe.trainable.items() if "lora_" not in n}
    assert len(head) == 1 and "score" in next(iter(head)) and sum(head.values()) == TINY.hidden_size
    assert sum(probe.trainable.values()) - TINY.hidden_size == lora_count(base_dir, 4,
                                                                         AutoModelForSequenceClassification)
    folder = tmp_path / "bt" / "model"
    assert_published_is_full_weights(folder)
    test = [{"context": r["context"], "response": r["response1"], "principle": ""} for r in world.records[30:40]]
    merged = scores(load_scorer("bt", folder, max_length=128), test)
    trained = scores(Scorer("bt", probe.model.eval(), tok, max_length=128), test)
    assert merged == pytest.approx(trained, abs=1e-4)


def test_policy_sft_and_grpo_train_adapters_and_publish_merged_weights(base_dir, tmp_path):
    sft = PolicySFTConfig(name_or_path=str(base_dir), sft_steps=3, n_examples=24, domains=["general"],
                          per_device_train_batch_size=8, max_length=256, logging_steps=1, save_steps=100, lora=LORA)
    probe = Probe()
    record = train_policy_sft(sft, tmp_path / "sft", callbacks=[probe.callback])
    assert sum(probe.trainable.values()) == lora_count(base_dir, 4)  # no head rows for a policy
    policy = tmp_path / "sft" / "model"
    assert record["model_dir"] == str(policy)
    assert_published_is_full_weights(policy)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        merged, trained = load_causal_lm(policy)(ids).logits, probe.model.eval()(input_ids=ids).logits
        base = load_causal_lm(base_dir)(ids).logits
    assert torch.allclose(merged, trained, atol=1e-4) and not torch.allclose(merged, base, atol=1e-3)

    grpo = AlignmentConfig(reward=RewardConfig(backend="checker", model_path=""), domains=["general"],
                           train_properties=["followup_question"], n_prompts=16, learning_rate=1e-2, max_steps=2,
                           num_generations=2, per_device_train_batch_size=4, max_completion_length=8,
                           logging_steps=1, save_steps=100, lora=LORA)
    probe = Probe()
    rec = train_grpo(grpo, policy, tmp_path / "grpo", callbacks=[probe.callback])
    assert sum(probe.trainable.values()) == lora_count(policy, 4) and rec["global_step"] == 2
    assert_published_is_full_weights(tmp_path / "grpo" / "model")
    with torch.no_grad():
        after = load_causal_lm(tmp_path / "grpo" / "model")(ids).logits
    assert torch.allclose(after, probe.model.eval()(input_ids=ids).logits, atol=1e-4)


def test_an_interrupted_lora_run_resumes_from_its_adapter_checkpoint(base_dir, items, tmp_path):
    from fakes.crash import Crash, crash_after_checkpoint

    cfg = ScalarRMConfig(learning_rate=2e-2, max_steps=6, per_device_train_batch_size=8, max_length=128,
                         logging_steps=1, save_steps=3, lora=LORA)
    whole = train_scalar_rm(cfg, base_dir, items[:32], tmp_path / "whole")
    with pytest.raises(Crash):
        train_scalar_rm(cfg, base_dir, items[:32], tmp_path / "cut", callbacks=[crash_after_checkpoint(3)])
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors").is_file()
    resumed = train_scalar_rm(cfg, base_dir, items[:32], tmp_path / "cut")
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["global_step"] == 6
    assert [p["loss"] for p in resumed["train"]] == pytest.approx([p["loss"] for p in whole["train"]], abs=1e-5)
    a, b = load_causal_lm(tmp_path / "whole" / "model"), load_causal_lm(tmp_path / "cut" / "model")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name
