"""bench/budget.py: its sizes against published numbers, and the full profile fitting its GPUs (fails if a stage
does not fit; a profile with the old 16-sequence GRPO micro-batch shows that it can fail)."""
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import budget as B  # noqa: E402

CLUSTER = REPO / "configs" / "slurm" / "cluster.yaml"


def test_parameter_counts_match_the_published_checkpoints():
    # bf16 safetensors index "total_size" of the released checkpoints (2 bytes per parameter)
    assert B.MODELS["meta-llama/Llama-3.3-70B-Instruct"].params * 2 == 141_107_412_992
    qwen = B.MODELS["Qwen/Qwen3-32B"]
    assert qwen.params * 2 == 65_524_246_528
    # Qwen3-32B model card: 32.8B parameters, 31.2B non-embedding
    assert round(qwen.params / 1e9, 1) == 32.8
    assert round((qwen.params - 2 * qwen.vocab * qwen.hidden) / 1e9, 1) == 31.2
    # Qwen3-Embedding-8B (no LM head): 7.57B on its hub page
    assert round(B.MODELS["Qwen/Qwen3-Embedding-8B"].params / 1e9, 2) == 7.57


def test_zero3_states_are_the_zero_papers_16_bytes_per_parameter():
    # ZeRO (Rajbhandari et al. 2020), Figure 1: a 7.5B model on 64 GPUs, P_os+g+p: 1.9 GB per GPU (120 GB unsharded)
    m = types.SimpleNamespace(params=7_500_000_000, layers=1, hidden=1, vocab=1, head="score")
    ds = {"offload_optimizer": False, "live_params": 0, "prefetch_params": 0}
    mem = B.zero3_memory(m, 64, ds, 1, 1, 0, 0, True)
    states = mem["weights"] + mem["gradients"] + mem["optimizer"]
    assert round(states / 1e9, 1) == 1.9 and round(states * 64 / 1e9) == 120
    off = B.zero3_memory(m, 64, dict(ds, offload_optimizer=True), 1, 1, 0, 0, True)
    assert off["optimizer"] == 0 and off["weights"] + off["gradients"] == pytest.approx(4 * 7.5e9 / 64)


def test_the_budget_reads_the_profile_and_its_deepspeed_file():
    ds = B.read_deepspeed("multi_node_zero3.yaml")
    assert ds["file"] == "configs/deepspeed/zero3.json" and not ds["offload_optimizer"]
    assert B.read_deepspeed("multi_node_zero3_offload.yaml")["offload_optimizer"]
    full = yaml.safe_load((REPO / "profiles" / "full.yaml").read_text())
    rep = B.budget(REPO / "params.yaml", "full", CLUSTER, B.GPUS["H200"])
    rows = {r["part"]: r for r in rep["rows"]}
    grpo = rows["policy GRPO, reward judge"]
    g = full["alignment"]["grpo"]
    assert grpo["micro_batch_sequences"] == g["per_device_train_batch_size"]
    assert grpo["seq_len"] == g["max_prompt_length"] + g["max_completion_length"]
    assert grpo["vllm"]["tensor_parallel_size"] == g["vllm_tensor_parallel_size"]
    assert grpo["gpus"] == full["alignment"]["num_processes"]
    # NVIDIA's template: 32 prompts x 16 generations per optimizer step
    assert grpo["completions_per_step"] == 32 * g["num_generations"] == 512
    scalar = rows["scalar RM: SFT on the Yes/No token"]
    assert scalar["gpus"] == full["reward_models"]["num_processes"] and scalar["seq_len"] == 4096
    assert rep["servers"] == ["extraction", "judge", "scorer"]   # what the full profile sends requests to


def test_every_stage_of_the_full_profile_fits_on_h200_nodes(capsys):
    rep = B.budget(REPO / "params.yaml", "full", CLUSTER, B.GPUS["H200"])
    B.show(rep)
    print(capsys.readouterr().out)
    too_big = [f"{r['stage']}: {r['part']}: {r['memory']['total_gib']} GiB" for r in rep["rows"] if not r["fits"]]
    assert not too_big, too_big
    assert rep["nodes_needed"] == 4   # alignment: 2 training nodes + the judge + the scorer
    assert all(r["memory"]["total_gib"] <= B.GPUS["H200"].memory_gib for r in rep["rows"])


def test_on_h100_nodes_every_stage_fits_or_has_a_named_alternative():
    rep = B.budget(REPO / "params.yaml", "full", CLUSTER, B.GPUS["H100"])
    alts = B.alternatives(REPO / "params.yaml", "full", CLUSTER, B.GPUS["H100"], rep)
    failing = [r["part"] for r in rep["rows"] if not r["fits"]]
    assert failing and all(any(a.startswith(p.split(",")[0]) for a in alts) for p in failing), (failing, alts)
    assert all(r["fits"] for r in rep["rows"] if "GRPO" in r["part"] or r.get("server") in ("judge", "scorer"))
    assert any("multi_node_zero3_offload.yaml" in a for a in alts)


def test_a_profile_that_does_not_fit_fails_the_check(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "profiles").mkdir()
    full = yaml.safe_load((REPO / "profiles" / "full.yaml").read_text())
    full["alignment"]["grpo"].update(per_device_train_batch_size=16, gradient_accumulation_steps=2)  # before issue 13
    (tmp_path / "profiles" / "full.yaml").write_text(yaml.safe_dump(full))
    rep = B.budget(tmp_path / "params.yaml", "full", CLUSTER, B.GPUS["H200"])
    bad = [r for r in rep["rows"] if not r["fits"]]
    assert bad and all(r["stage"] == "alignment" and "GRPO" in r["part"] for r in bad)
    assert all(r["phases"]["training"]["total_gib"] > B.GPUS["H200"].memory_gib for r in bad)
