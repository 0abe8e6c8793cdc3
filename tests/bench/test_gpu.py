"""bench/gpu.py: its MFU numerator against torch's FLOP counter, the no-GPU message, and every code path on CPU
(--cpu-check: the bare training step, HF generate, the project's scalar-RM and GRPO trainers under accelerate)."""
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import gpu as G  # noqa: E402


@pytest.mark.parametrize("arch,seq", [(G.Arch(64, 2, 4, 2, 16, 128, True, vocab_size=512), 128),
                                      (G.Arch(96, 3, 6, 2, 16, 160, False, vocab_size=700), 256)])
def test_train_flops_match_torchs_flop_counter(arch, seq):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(**asdict(arch), attn_implementation="eager", use_cache=False))
    n = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, arch.vocab_size, (1, seq))
    with FlopCounterMode(display=False) as counter:   # every matmul of forward + backward, attention included
        model(input_ids=ids, labels=ids).loss.backward()
    assert counter.get_total_flops() == pytest.approx(G.train_flops_per_token(arch, n, seq) * seq, rel=0.01)


def test_published_sizes():
    # Qwen3 model cards: total / non-embedding parameters, at the cards' precision
    for name, total, non_embedding in (("0.6B", "0.6", "0.44"), ("1.7B", "1.7", "1.4"), ("4B", "4.0", "3.6"),
                                       ("8B", "8.2", "6.95")):
        arch = G.ARCHS[name]
        n = G._count(arch)
        embed = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
        digits = lambda card: len(card.split(".")[1])  # noqa: E731
        assert f"{n / 1e9:.{digits(total)}f}" == total
        assert f"{(n - embed) / 1e9:.{digits(non_embedding)}f}" == non_embedding


def test_without_a_gpu_it_says_so_and_measures_nothing():
    before = (REPO / "bench" / "results.json").read_bytes()
    res = subprocess.run([sys.executable, "bench/gpu.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "no CUDA GPU here" in res.stdout and "nothing was measured" in res.stdout
    assert (REPO / "bench" / "results.json").read_bytes() == before


@pytest.mark.slow
def test_cpu_check_runs_every_path(tmp_path):
    before = (REPO / "bench" / "results.json").read_bytes()
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, "bench/gpu.py", "--cpu-check", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (REPO / "bench" / "results.json").read_bytes() == before   # --cpu-check saves nothing
    assert r["matmul_peak_tflops"] > 0
    tiny = r["models"]["tiny"]
    t = tiny["train"]
    assert t["tokens_per_s"] > 0 and t["mfu"] == pytest.approx(t["model_tflops"] / r["matmul_peak_tflops"], abs=1e-3)
    assert tiny["generate_hf"]["generated_tokens"] == 2 * 8 and tiny["generate_vllm"]["skipped"] == "--cpu-check"
    rm, grpo = r["trainers"]["scalar_rm"], r["trainers"]["grpo"]
    assert "error" not in rm and "error" not in grpo, (rm.get("error"), grpo.get("error"))
    assert rm["accelerate_config"] == "cpu.yaml" and rm["steps"] == 2 and rm["tokens_per_s"] > 0
    assert grpo["steps"] == 2 and grpo["completions_per_step"] == 16 and grpo["generated_tokens_per_s"] > 0
