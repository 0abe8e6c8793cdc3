"""A real 2-process data-parallel run on CPU (gloo) through `accelerate launch`."""
import json
import random

import pytest
import torch

from rlbff_lib.training.launch import TrainJob, launch
from rlbff_lib.core.io import write_jsonl
from rlbff_lib.models.lm import ModelSizeConfig, build_qwen3
from rlbff_lib.reward_models.scorers import load_model, load_scorer
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.synthetic.world import PROPERTIES, WorldConfig, corpus_texts, generate_world

TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)


@pytest.mark.slow
def test_scalar_rm_trains_on_two_cpu_processes(tmp_path, capsys):
    world = generate_world(WorldConfig(n_prompts=20, seed=4))
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=500))
    base = tmp_path / "base"
    build_qwen3(tok, TINY, seed=0).save_pretrained(base)
    tok.save_pretrained(base)
    rng = random.Random(0)
    truth = {(t["id"], t["response"]): t["properties"] for t in world.truth}
    items = [{"item_id": f"{r['id']}-{j}", "prompt_id": r["id"], "domain": r["domain"], "context": r["context"],
              "response": r[f"response{j}"], "principle": rng.choice(PROPERTIES["followup_question"].phrasings),
              "label": "Yes" if truth[(r["id"], j)]["followup_question"] else "No"}
             for r in world.records for j in (1, 2)]
    write_jsonl(tmp_path / "train.jsonl", items[:32])
    write_jsonl(tmp_path / "val.jsonl", items[32:])
    job = TrainJob(model=str(base), train_file=str(tmp_path / "train.jsonl"), eval_file=str(tmp_path / "val.jsonl"),
                   output_dir=str(tmp_path / "rm"),
                   config={"max_steps": 4, "per_device_train_batch_size": 4, "max_length": 128, "logging_steps": 1,
                           "save_steps": 2, "learning_rate": 1e-3})
    job_path = job.write(tmp_path / "job.json")

    launch("rlbff_lib.reward_models.scalar", job_path, "cpu_2proc.yaml", num_processes=2)

    out = capsys.readouterr().out
    assert out.count("[scalar_rm] step 4/4") == 1  # logged by the main process only, forwarded here
    log = json.loads((tmp_path / "rm" / "training_log.json").read_text())
    assert log["world_size"] == 2
    assert log["steps_per_rank"] == [4, 4]  # both processes took part in every optimizer step
    assert log["global_step"] == 4 and [p["step"] for p in log["train"]] == [1, 2, 3, 4]
    assert 0 <= log["extra"]["eval_accuracy"] <= 1 and log["extra"]["n_eval"] == len(items) - 32
    ckpt = tmp_path / "rm" / "checkpoints" / "checkpoint-4"
    assert sorted(p.name for p in ckpt.glob("rng_state*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4 and state["global_step"] == 4
    # the final model: saved whole (safetensors + tokenizer), differs from the base, scores like any causal LM
    model_dir = tmp_path / "rm" / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    model, _ = load_model("scalar", model_dir)
    base_model, _ = load_model("scalar", base)
    assert not torch.allclose(model.lm_head.weight, base_model.lm_head.weight)
    res = load_scorer("scalar", model_dir, max_length=128)(
        [it["context"] for it in items[32:]], [it["response"] for it in items[32:]], [it["principle"] for it in items[32:]])
    labels = [it["label"] for it in items[32:]]
    assert sum((s > 0) == (lab == "Yes") for s, lab in zip(res.scores, labels)) / len(labels) == pytest.approx(
        log["extra"]["eval_accuracy"])


@pytest.mark.slow
def test_bt_entry_point_through_the_single_process_cpu_config(tmp_path):
    world = generate_world(WorldConfig(n_prompts=12, seed=5))
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=400))
    base = tmp_path / "base"
    build_qwen3(tok, TINY, seed=0).save_pretrained(base)
    tok.save_pretrained(base)
    pairs = [{"pair_id": r["id"], "prompt_id": r["id"], "domain": r["domain"], "context": r["context"],
              "chosen": r["response1"], "rejected": r["response2"], "overall_preference": -1, "annotator_spread": 0.5}
             for r in world.records]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    job = TrainJob(model=str(base), train_file=str(tmp_path / "pairs.jsonl"), output_dir=str(tmp_path / "bt"),
                   config={"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 128,
                           "strength_source": "annotator_spread", "adaptive_margin": True})
    launch("rlbff_lib.reward_models.bradley_terry", job.write(tmp_path / "job.json"), "cpu.yaml")
    log = json.loads((tmp_path / "bt" / "training_log.json").read_text())
    assert log["world_size"] == 1 and log["global_step"] == 2 and log["extra"]["n_train"] == len(pairs)
    assert (tmp_path / "bt" / "model" / "model.safetensors").exists()
    assert len((tmp_path / "bt" / "strength.jsonl").read_text().splitlines()) == len(pairs)
