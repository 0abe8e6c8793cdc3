"""Same inputs, same weights: each trainer (Bradley–Terry, scalar RM, policy SFT) run twice from its command
line in fresh processes, with different hash seeds, gives bit-identical safetensors.

The processes pin one torch thread (``OMP_NUM_THREADS=1``): the thread count is an input too (CPU kernels
reduce in thread-sized chunks), so runs with different counts need not agree to the last bit.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fakes.tiny_models import save_base
from rlbff_lib.core.io import write_jsonl
from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.principles.datasets import preference_pairs
from rlbff_lib.synthetic.world import WorldConfig, corpus_texts, generate_world
from rlbff_lib.training.launch import TrainJob

ROOT = Path(__file__).resolve().parents[2]
TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=512)
STEPS = {"max_steps": 4, "save_steps": 2, "logging_steps": 1, "max_length": 192}  # a checkpoint on the way


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    world = generate_world(WorldConfig(n_prompts=120, seed=0))
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=1000))
    folder = tmp_path_factory.mktemp("inputs")
    base = save_base(tok, TINY, folder / "base")
    pairs, _ = preference_pairs(world.records)
    write_jsonl(folder / "pairs.jsonl", pairs[:24])
    truth = {(t["id"], t["response"]): t["properties"] for t in world.truth}
    items = [{"item_id": f"{r['id']}-{j}", "context": r["context"], "response": r[f"response{j}"],
              "principle": "The response ends with a follow-up question.", "domain": r["domain"],
              "label": "Yes" if truth[(r["id"], j)]["followup_question"] else "No"}
             for r in world.records[:20] for j in (1, 2)]
    write_jsonl(folder / "items.jsonl", items)
    return base, folder


def run_twice(module: str, job: TrainJob, tmp_path: Path) -> list[dict]:
    """Run ``python -m module train`` on ``job`` in two fresh processes (hash seeds 1 and 2); their weights."""
    weights = []
    for k in (1, 2):
        out = tmp_path / f"run{k}"
        path = TrainJob(**{**job.__dict__, "output_dir": str(out)}).write(tmp_path / f"job{k}.json")
        env = {**os.environ, "PYTHONHASHSEED": str(k), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-m", module, "train", "--config", str(path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        log = json.loads((out / "training_log.json").read_text())
        assert log["global_step"] == STEPS["max_steps"] and log["torch_threads"] == 1
        weights.append(load_file(str(out / "model" / "model.safetensors")))
    return weights


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


@pytest.mark.slow
def test_bradley_terry_training_is_bit_identical(inputs, tmp_path):
    base, folder = inputs
    job = TrainJob(model=str(base), train_file=str(folder / "pairs.jsonl"), output_dir="",
                   config={**STEPS, "per_device_train_batch_size": 4})
    a, b = run_twice("rlbff_lib.reward_models.bradley_terry", job, tmp_path)
    assert "score.weight" in a  # the fresh head, initialised under the run's seed
    assert_bit_identical(a, b)
    base_weights = load_file(str(base / "model.safetensors"))
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], base_weights["model.layers.0.mlp.up_proj.weight"])


@pytest.mark.slow
def test_scalar_rm_training_is_bit_identical(inputs, tmp_path):
    base, folder = inputs
    job = TrainJob(model=str(base), train_file=str(folder / "items.jsonl"), output_dir="",
                   config={**STEPS, "per_device_train_batch_size": 4})
    assert_bit_identical(*run_twice("rlbff_lib.reward_models.scalar", job, tmp_path))


@pytest.mark.slow
def test_policy_sft_is_bit_identical(inputs, tmp_path):
    base, _ = inputs
    config = {"sft_steps": STEPS["max_steps"], "n_examples": 24, "domains": ["general"], "per_device_train_batch_size": 4,
              "max_length": 256, "logging_steps": 1, "save_steps": 2,
              "fixed_properties": {"concise": True, "bulleted_list": False, "worked_example": False}}
    job = TrainJob(model=str(base), train_file="", output_dir="", config=config)
    assert_bit_identical(*run_twice("rlbff_lib.alignment.policy", job, tmp_path))


@pytest.mark.slow
def test_bradley_terry_resumed_run_is_bit_identical(inputs, tmp_path):
    """Interrupted after its checkpoint of step 2 and run again: the same bits as the run never interrupted."""
    from fakes.crash import Crash, crash_after_checkpoint
    from rlbff_lib.core.io import read_jsonl
    from rlbff_lib.reward_models.bradley_terry import BTConfig, train_bt

    base, folder = inputs
    pairs = read_jsonl(folder / "pairs.jsonl")
    cfg = BTConfig(**STEPS, per_device_train_batch_size=4)
    train_bt(cfg, base, pairs, tmp_path / "whole")
    with pytest.raises(Crash):
        train_bt(cfg, base, pairs, tmp_path / "cut", callbacks=[crash_after_checkpoint(2)])
    assert train_bt(cfg, base, pairs, tmp_path / "cut")["resumed_from"].endswith("checkpoint-2")
    assert_bit_identical(load_file(str(tmp_path / "whole" / "model" / "model.safetensors")),
                         load_file(str(tmp_path / "cut" / "model" / "model.safetensors")))
