"""GPU throughput of the paper-scale building blocks, for a machine with an NVIDIA GPU.

    .venv/bin/python bench/gpu.py                      # 0.6B, 1.7B and 8B Qwen3 architectures
    .venv/bin/python bench/gpu.py --models 0.6B 1.7B   # a subset
    .venv/bin/python bench/gpu.py --cpu-check          # every code path on a tiny model on CPU, nothing saved

On a machine without CUDA it prints why and exits (status 0) without measuring anything.

Measured, in bf16 on one GPU, with RANDOM-initialised Qwen3 architectures built from the published
config sizes (:data:`ARCHS`; weights do not change the cost):

1. ``matmul_peak_tflops``: the best of large square ``torch.matmul`` (bf16, 4096-16384), timed with
   CUDA events: the achievable dense peak used as the MFU denominator (the H200's spec sheet says
   ~989 TFLOP/s dense bf16, also reported).
2. Scalar-RM training (``train``): full fine-tuning steps as the scalar principle RM trains
   (causal LM, loss on the last token only, per-device batch 1, ``--seq-len`` tokens, gradient
   checkpointing, fused AdamW on bf16 parameters, no ZeRO). Tokens/s and
   ``MFU = (6·N + 12·L·H·Q·T) · tokens/s / peak`` (PaLM's convention: N = parameters doing matmuls
   (the input embedding lookup excluded), L layers, H·Q = heads × head dim, T = sequence length;
   the causal mask and checkpointing recompute are not counted); ``HFU`` adds the recomputed
   forward: ``(8·N + 16·L·H·Q·T)``.
3. GRPO rollouts (``generate``): sampling ``--gen-new`` tokens after ``--gen-prompt`` random prompt
   tokens for ``--gen-batch`` sequences, with HF ``generate`` and, when vLLM is installed, with
   vLLM (in a child process, from the same random weights saved to disk). Tokens/s counts
   generated tokens only.

Results are merged into ``bench/results.json`` under ``gpu``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import common

H200_SPEC_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H200 SXM datasheet, bf16 dense (no sparsity)


@dataclass
class Arch:
    """Qwen3 sizes from the published ``config.json`` of each checkpoint."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    tie_word_embeddings: bool
    vocab_size: int = 151936


ARCHS = {
    "0.6B": Arch(1024, 28, 16, 8, 128, 3072, True),     # Qwen/Qwen3-0.6B
    "1.7B": Arch(2048, 28, 16, 8, 128, 6144, True),     # Qwen/Qwen3-1.7B
    "8B": Arch(4096, 36, 32, 8, 128, 12288, False),     # Qwen/Qwen3-8B
}
TINY = Arch(64, 2, 4, 2, 16, 128, True, vocab_size=512)  # --cpu-check only


def build(arch: Arch, dtype, device, max_len: int):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlbff_lib.models.lm import attn_implementation

    cfg = Qwen3Config(**{k: v for k, v in asdict(arch).items()}, max_position_embeddings=max(max_len, 128),
                      attn_implementation=attn_implementation(), use_cache=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(cfg).to(dtype)
    return model


def matmul_flops_per_token(arch: Arch, n_params: int) -> int:
    """N: parameters taking part in matmuls (every weight but the input-embedding lookup; a tied
    embedding is the LM head, so it counts once)."""
    return n_params - (0 if arch.tie_word_embeddings else arch.vocab_size * arch.hidden_size)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype, sizes: list[int], reps: int) -> dict:
    """Best achieved TFLOP/s of ``a @ b`` over square sizes (2·n³ FLOPs each)."""
    import torch

    best, per_size = 0.0, {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        tflops = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12
        per_size[str(n)] = round(tflops, 4)
        best = max(best, tflops)
        del a, b
    return {"matmul_peak_tflops": best, "per_size_tflops": per_size}


def train_throughput(arch: Arch, device, dtype, seq_len: int, warmup: int, steps: int, peak_tflops: float) -> dict:
    """Tokens/s, MFU and HFU of scalar-RM-style training steps (see the module docstring)."""
    import torch

    model = build(arch, dtype, device, seq_len)
    model.config.use_cache = False
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=fused)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, arch.vocab_size, (1, seq_len), generator=gen).to(device)
    labels = torch.full_like(ids, -100)
    labels[0, -1] = ids[0, -1]  # the answer token only, as the scalar principle RM trains

    def step():
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - t0
    tokens_per_s = seq_len * steps / seconds
    n = matmul_flops_per_token(arch, n_params)
    attn = arch.num_hidden_layers * arch.num_attention_heads * arch.head_dim * seq_len
    model_flops = (6 * n + 12 * attn) * tokens_per_s
    hardware_flops = (8 * n + 16 * attn) * tokens_per_s
    out = {"parameters": n_params, "matmul_parameters": n, "seq_len": seq_len, "steps": steps,
           "seconds_per_step": round(seconds / steps, 4), "tokens_per_s": round(tokens_per_s, 1),
           "model_tflops": round(model_flops / 1e12, 4), "mfu": round(model_flops / 1e12 / peak_tflops, 4),
           "hfu": round(hardware_flops / 1e12 / peak_tflops, 4),
           "optimizer": f"torch AdamW{' (fused)' if fused else ''} on {str(dtype).replace('torch.', '')} parameters, "
                        "no fp32 master copy, no ZeRO",
           "gradient_checkpointing": True}
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    del model, opt
    free(device)
    return out


def free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def prompts(arch: Arch, batch: int, length: int) -> list[list[int]]:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(1)
    return torch.randint(0, arch.vocab_size, (batch, length), generator=gen).tolist()


def hf_generate(arch: Arch, device, dtype, batch: int, prompt_len: int, new_tokens: int, save_dir: str | None
                ) -> dict:
    """Generated tokens/s of HF ``generate`` (sampling, fixed length); saves the weights for vLLM."""
    import torch

    model = build(arch, dtype, device, prompt_len + new_tokens).eval()
    if save_dir:
        model.save_pretrained(save_dir)
    ids = torch.tensor(prompts(arch, batch, prompt_len), device=device)
    mask = torch.ones_like(ids)
    kwargs = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens,
                  min_new_tokens=new_tokens, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        model.generate(ids[:, :16], **{**kwargs, "attention_mask": mask[:, :16], "max_new_tokens": 4,
                                       "min_new_tokens": 4})  # warm-up
        sync(device)
        t0 = time.perf_counter()
        out = model.generate(ids, **kwargs)
        sync(device)
        seconds = time.perf_counter() - t0
    generated = (out.shape[1] - prompt_len) * batch
    del model, out
    free(device)
    return {"engine": "transformers generate (KV cache, sampling)", "batch": batch, "prompt_tokens": prompt_len,
            "new_tokens": new_tokens, "seconds": round(seconds, 3), "tokens_per_s": round(generated / seconds, 1)}


def vllm_child(model_dir: str, batch: int, prompt_len: int, new_tokens: int, vocab: int) -> None:
    """In a fresh process: vLLM generation from ``model_dir`` (token ids in, token ids out); prints JSON."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    import torch

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=gen).tolist()
    llm = LLM(model=model_dir, dtype="bfloat16", skip_tokenizer_init=True, max_model_len=prompt_len + new_tokens,
              gpu_memory_utilization=0.85, seed=0)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=new_tokens, min_tokens=new_tokens,
                            ignore_eos=True, detokenize=False)
    llm.generate([TokensPrompt(prompt_token_ids=x[:16]) for x in ids[:4]],
                 SamplingParams(max_tokens=4, ignore_eos=True, detokenize=False))  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], params)
    seconds = time.perf_counter() - t0
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    import vllm

    print("VLLM_RESULT " + json.dumps({"engine": f"vLLM {vllm.__version__}", "batch": batch,
                                       "prompt_tokens": prompt_len, "new_tokens": new_tokens,
                                       "seconds": round(seconds, 3), "tokens_per_s": round(generated / seconds, 1)}))


def vllm_generate(model_dir: str, arch: Arch, batch: int, prompt_len: int, new_tokens: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--vllm-child", model_dir, "--gen-batch", str(batch),
                          "--gen-prompt", str(prompt_len), "--gen-new", str(new_tokens),
                          "--vocab", str(arch.vocab_size)], capture_output=True, text=True, timeout=3600)
    for line in res.stdout.splitlines():
        if line.startswith("VLLM_RESULT "):
            return json.loads(line[len("VLLM_RESULT "):])
    return {"engine": "vLLM", "error": f"exit {res.returncode}: {res.stderr[-1500:]}"}


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--gen-prompt", type=int, default=1024)
    ap.add_argument("--gen-new", type=int, default=512)
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--cpu-check", action="store_true", help="run every path on a tiny model on CPU; save nothing")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--vllm-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, default=151936, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.vllm_child:
        return vllm_child(args.vllm_child, args.gen_batch, args.gen_prompt, args.gen_new, args.vocab)

    import torch

    if not torch.cuda.is_available() and not args.cpu_check:
        print("bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}). It measures bf16 GPU throughput and needs an NVIDIA GPU with a CUDA build "
              "of torch; nothing was measured. Use --cpu-check to exercise its code paths on CPU.")
        return
    if args.cpu_check:
        device, dtype = torch.device("cpu"), torch.float32
        archs = {"tiny": TINY}
        sizes, reps = [256], 3
        args.seq_len, args.warmup, args.steps = 128, 1, 2
        args.gen_batch, args.gen_prompt, args.gen_new = 2, 16, 8
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        archs = {k: ARCHS[k] for k in args.models}
        sizes, reps = [4096, 8192, 16384], 20
        torch.backends.cuda.matmul.allow_tf32 = False
    peak = matmul_peak(device, dtype, sizes, reps)
    print(f"matmul peak: {peak['matmul_peak_tflops']:.4g} TFLOP/s ({peak['per_size_tflops']})", flush=True)
    use_vllm = not args.no_vllm and not args.cpu_check and vllm_installed()
    results = {}
    for name, arch in archs.items():
        print(f"--- {name}: training", flush=True)
        row = {"arch": asdict(arch), "train": train_throughput(arch, device, dtype, args.seq_len, args.warmup,
                                                               args.steps, peak["matmul_peak_tflops"])}
        print(f"    {row['train']}", flush=True)
        with tempfile.TemporaryDirectory(dir=common.REPO_ROOT / "bench") as tmp:
            row["generate_hf"] = hf_generate(arch, device, dtype, args.gen_batch, args.gen_prompt, args.gen_new,
                                             tmp if use_vllm else None)
            print(f"    {row['generate_hf']}", flush=True)
            if use_vllm:
                row["generate_vllm"] = vllm_generate(tmp, arch, args.gen_batch, args.gen_prompt, args.gen_new)
                print(f"    {row['generate_vllm']}", flush=True)
            else:
                row["generate_vllm"] = {"engine": "vLLM", "skipped": "not installed" if not args.cpu_check
                                        else "--cpu-check"}
        results[name] = row
    result = {**peak, "h200_spec_bf16_dense_tflops": H200_SPEC_BF16_DENSE_TFLOPS, "models": results,
              "machine": common.machine(), "dtype": str(dtype).replace("torch.", "")}
    if device.type == "cuda":
        result["gpu_name"] = torch.cuda.get_device_name(0)
        result["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    print(json.dumps(result, indent=1))
    if not args.cpu_check and not args.no_save:
        common.merge_results("gpu", result)


if __name__ == "__main__":
    main()
