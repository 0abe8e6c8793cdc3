"""GPU throughput of the paper-scale building blocks on one GPU: bf16 peak, training MFU, the project's trainers
under DeepSpeed ZeRO-3, rollout generation.

    .venv/bin/python bench/gpu.py                       # meant to take < 8 min on one H200; into bench/results.json
    .venv/bin/python bench/gpu.py --models 1.7B         # a subset
    .venv/bin/python bench/gpu.py --cpu-check [--out F] # every code path on tiny models on CPU (seconds), not saved

On a machine without CUDA (and without ``--cpu-check``) it says so and measures nothing. On a GPU machine that
lacks TRL / DeepSpeed / accelerate at the project's pins, install them first from wheels made here with
``pip download --no-deps -d wheels trl==1.16.0 accelerate==1.15.0 deepspeed==0.19.8`` (then ``pip install
--no-deps wheels/*``); the CUDA build of torch and transformers already there are used as they are.

Measured, in bf16, with RANDOM-initialised Qwen3 architectures of the published config sizes (:data:`ARCHS`;
weights do not change the cost):

1. ``matmul_peak_tflops``: the best of large square ``torch.matmul`` (bf16, 4096-16384), the achievable dense
   peak used as the MFU denominator (the H200 datasheet's ~989 TFLOP/s is reported beside it).
2. ``train``: bare PyTorch training steps as the scalar principle RM trains (loss on the last token, batch 1,
   ``--seq-len`` tokens, gradient checkpointing, fused AdamW on bf16 parameters, no ZeRO): tokens/s, and
   ``MFU = model FLOPs per token (6·N + 12·L·H·Q·T, PaLM; N = parameters in matmuls) × tokens/s / peak``
   (:func:`train_flops_per_token`; tests check it against torch's FLOP counter); ``HFU`` adds the checkpoint
   recompute (8·N + 16·L·H·Q·T).
3. ``trainer_zero3``: the project's scalar-RM trainer (:func:`rlbff_lib.reward_models.scalar.train_scalar_rm`,
   TRL ``SFTTrainer``) launched like the pipeline launches it (``accelerate launch``, ``multi_gpu_zero3.yaml``:
   DeepSpeed ZeRO-3, ``configs/deepspeed/zero3.json``) on one GPU, ``--trainer-model`` at ``--seq-len`` tokens;
   step times from a callback, tokens/s and MFU after ``--warmup`` steps, peak memory.
4. ``grpo_zero3``: the project's GRPO trainer (:func:`rlbff_lib.alignment.grpo.train_grpo`, checker reward, HF
   ``generate`` rollouts) the same way with ``--grpo-model``: seconds per optimizer step, generated tokens/s.
5. ``generate_hf``: rollout sampling with HF ``generate`` (``--gen-batch`` sequences, ``--gen-new`` tokens after
   ``--gen-prompt``), and ``generate_vllm`` the same with vLLM when installed (child process). Generated tokens/s.

Results are merged into ``bench/results.json`` under ``gpu`` (``bench/report.py`` writes RESULTS.md from it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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
    "4B": Arch(2560, 36, 32, 8, 128, 9728, True),       # Qwen/Qwen3-4B
    "8B": Arch(4096, 36, 32, 8, 128, 12288, False),     # Qwen/Qwen3-8B
}
TINY = Arch(64, 2, 4, 2, 16, 128, True, vocab_size=512)  # --cpu-check only


def build(arch: Arch, dtype, device, max_len: int):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlbff_lib.models.lm import attn_implementation

    cfg = Qwen3Config(**asdict(arch), max_position_embeddings=max(max_len, 128),
                      attn_implementation=attn_implementation(), use_cache=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(cfg).to(dtype)
    return model


def matmul_parameters(arch: Arch, n_params: int) -> int:
    """N: parameters taking part in matmuls (every weight but the input-embedding lookup; a tied
    embedding is the LM head, so it counts once)."""
    return n_params - (0 if arch.tie_word_embeddings else arch.vocab_size * arch.hidden_size)


def train_flops_per_token(arch: Arch, n_params: int, seq_len: int, recompute: bool = False) -> float:
    """Model FLOPs of one training token (PaLM): 6·N + 12·L·H·Q·T; with ``recompute`` the hardware FLOPs of
    gradient checkpointing, 8·N + 16·L·H·Q·T."""
    n = matmul_parameters(arch, n_params)
    attn = arch.num_hidden_layers * arch.num_attention_heads * arch.head_dim * seq_len
    return (8 * n + 16 * attn) if recompute else (6 * n + 12 * attn)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


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


def rates(arch: Arch, n_params: int, seq_len: int, tokens_per_s: float, peak_tflops: float) -> dict:
    model = train_flops_per_token(arch, n_params, seq_len) * tokens_per_s
    hardware = train_flops_per_token(arch, n_params, seq_len, recompute=True) * tokens_per_s
    return {"tokens_per_s": round(tokens_per_s, 1), "model_tflops": round(model / 1e12, 4),
            "mfu": round(model / 1e12 / peak_tflops, 4), "hfu": round(hardware / 1e12 / peak_tflops, 4)}


def train_throughput(arch: Arch, device, dtype, seq_len: int, warmup: int, steps: int, peak_tflops: float) -> dict:
    """Tokens/s, MFU and HFU of bare scalar-RM-style training steps (see the module docstring)."""
    import torch

    model = build(arch, dtype, device, seq_len)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=fused)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, arch.vocab_size, (1, seq_len), generator=gen).to(device)
    labels = torch.full_like(ids, -100)
    labels[0, -1] = ids[0, -1]  # the answer token only, as the scalar principle RM trains

    def step():
        model(input_ids=ids, labels=labels).loss.backward()
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
    out = {"parameters": n_params, "matmul_parameters": matmul_parameters(arch, n_params), "seq_len": seq_len,
           "steps": steps, "seconds_per_step": round(seconds / steps, 4),
           **rates(arch, n_params, seq_len, seq_len * steps / seconds, peak_tflops),
           "optimizer": f"torch AdamW{' (fused)' if fused else ''} on {str(dtype).replace('torch.', '')} parameters, "
                        "no fp32 master copy, no ZeRO", "gradient_checkpointing": True}
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    del model, opt
    free(device)
    return out


# ------------------------------------------------------------------ the project's trainers, as the pipeline runs them


def small_tokenizer():
    """A byte-level BPE tokenizer with the project's chat template, trained in seconds on the smoke world."""
    from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
    from rlbff_lib.synthetic import world as W

    return train_tokenizer(list(W.corpus_texts(W.generate_world(W.WorldConfig(n_prompts=60, seed=0)))),
                           TokenizerConfig(vocab_size=600))


def save_random_model(arch: Arch, tok, folder: Path, max_len: int) -> Path:
    """A random Qwen3 of ``arch`` (bf16 on CUDA, fp32 on CPU) and ``tok`` saved as a model folder."""
    from rlbff_lib.models.lm import device_and_dtype

    device, dtype = device_and_dtype()
    model = build(arch, dtype, device, max_len)
    model.save_pretrained(folder)
    del model
    free(device)
    tok.save_pretrained(folder)
    return folder


def step_timer(result_path: str):
    """A TrainerCallback writing, on the main process, every optimizer step's wall time and the peak memory."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], None

        def on_step_begin(self, args, state, control, **kw):
            sync(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
            self.times.append(time.perf_counter() - self.t0)

        def on_train_end(self, args, state, control, **kw):
            if state.is_world_process_zero:
                peak = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None
                curves = [{k: v for k, v in h.items() if k in ("step", "completions/mean_length", "loss")}
                          for h in state.log_history]
                Path(result_path).write_text(json.dumps({"step_seconds": self.times, "peak_memory_gib": peak,
                                                         "log": curves}))

    return StepTimer()


def trainer_child(kind: str, job_path: str, result_path: str) -> None:
    """Inside ``accelerate launch``: the project's trainer on the job, timed by :func:`step_timer`."""
    from rlbff_lib.training.launch import TrainJob

    job = TrainJob.read(job_path)
    if kind == "scalar":
        from rlbff_lib.core.io import read_jsonl
        from rlbff_lib.reward_models.scalar import ScalarRMConfig, train_scalar_rm

        train_scalar_rm(ScalarRMConfig(**job.config), job.model, read_jsonl(job.train_file), job.output_dir,
                        callbacks=[step_timer(result_path)])
    else:
        from rlbff_lib.alignment.grpo import AlignmentConfig, PrincipleReward, train_grpo
        from rlbff_lib.models.tokenizer import load_tokenizer

        cfg = AlignmentConfig(**job.config)
        reward = PrincipleReward(cfg.reward, policy_tokenizer=load_tokenizer(job.model))
        train_grpo(cfg, job.model, job.output_dir, reward=reward, callbacks=[step_timer(result_path)])


def launch_child(kind: str, job, folder: Path, accelerate_config: str) -> dict:
    """Run :func:`trainer_child` under ``accelerate launch`` (one process) and read its timings."""
    from rlbff_lib.training.slurm import launch_command

    job_path, result = folder / f"{kind}_job.json", folder / f"{kind}_result.json"
    job.write(job_path)
    cmd = launch_command(accelerate_config, 1, [str(Path(__file__).resolve()), "--trainer-child", kind,
                                                 str(job_path), str(result)])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(common.REPO_ROOT),
                                                                       os.environ.get("PYTHONPATH")])),
           "RLBFF_PAPERMILL": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=common.REPO_ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if res.returncode or not result.exists():
        return {"error": f"exit {res.returncode}: {(res.stdout + res.stderr)[-2000:]}"}
    out = json.loads(result.read_text())
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def trainer_zero3(arch: Arch, tok, seq_len: int, warmup: int, steps: int, peak: float, accelerate_config: str,
                  folder: Path) -> dict:
    """The scalar-RM trainer on ``steps`` + ``warmup`` items of exactly ``seq_len`` tokens."""
    from rlbff_lib.core.io import write_jsonl
    from rlbff_lib.training.launch import TrainJob

    arch = Arch(**{**asdict(arch), "vocab_size": max(arch.vocab_size, len(tok))})  # every token id has a row
    model = save_random_model(arch, tok, folder / "rm_base", seq_len)
    text = " ".join(["The answer explains each step and cites the source."] * (seq_len // 4))
    items = [{"context": [{"role": "user", "content": text}], "response": "A short answer.",
              "principle": "is concise", "label": "Yes" if k % 2 else "No"} for k in range(warmup + steps)]
    write_jsonl(folder / "items.jsonl", items)
    cfg = {"learning_rate": 1e-6, "max_steps": warmup + steps, "per_device_train_batch_size": 1,
           "max_length": seq_len, "gradient_checkpointing": True, "logging_steps": 1, "save_steps": 10 ** 6,
           "warmup_ratio": 0.0}
    job = TrainJob(model=str(model), train_file=str(folder / "items.jsonl"), output_dir=str(folder / "rm_run"),
                   config=cfg)
    out = launch_child("scalar", job, folder, accelerate_config)
    if "error" in out:
        return out
    timed = out["step_seconds"][warmup:]
    n_params = _count(arch)
    return {"accelerate_config": accelerate_config, "parameters": n_params, "seq_len": seq_len, "steps": len(timed),
            "seconds_per_step": round(statistics.median(timed), 4),
            **rates(arch, n_params, seq_len, seq_len / statistics.median(timed), peak),
            "peak_memory_gib": None if out["peak_memory_gib"] is None else round(out["peak_memory_gib"], 2),
            "wall_s": out["wall_s"]}


def grpo_zero3(arch: Arch, tok, gen_new: int, completions: int, warmup: int, steps: int, accelerate_config: str,
               folder: Path) -> dict:
    """The GRPO trainer: ``completions`` per step (groups of 8) of up to ``gen_new`` tokens, HF generate rollouts."""
    from rlbff_lib.training.launch import TrainJob

    arch = Arch(**{**asdict(arch), "vocab_size": len(tok)})  # sampled ids must decode
    policy = save_random_model(arch, tok, folder / "policy", 2048)
    cfg = {"reward": {"backend": "checker", "model_path": ""}, "domains": ["general"],
           "train_properties": ["concise"], "n_prompts": 64, "learning_rate": 1e-6, "max_steps": warmup + steps,
           "num_generations": 8, "per_device_train_batch_size": completions, "max_completion_length": gen_new,
           "temperature": 1.0, "logging_steps": 1, "save_steps": 10 ** 6, "gradient_checkpointing": True}
    job = TrainJob(model=str(policy), train_file="", output_dir=str(folder / "grpo_run"), config=cfg)
    out = launch_child("grpo", job, folder, accelerate_config)
    if "error" in out:
        return out
    timed = out["step_seconds"][warmup:]
    lengths = [h["completions/mean_length"] for h in out["log"] if "completions/mean_length" in h][warmup:]
    per_step = completions * (statistics.mean(lengths) if lengths else gen_new)
    return {"accelerate_config": accelerate_config, "parameters": _count(arch), "vocab_size": arch.vocab_size,
            "completions_per_step": completions, "max_completion_length": gen_new, "steps": len(timed),
            "seconds_per_step": round(statistics.median(timed), 3),
            "generated_tokens_per_s": round(per_step / statistics.median(timed), 1),
            "peak_memory_gib": None if out["peak_memory_gib"] is None else round(out["peak_memory_gib"], 2),
            "wall_s": out["wall_s"]}


def _count(arch: Arch) -> int:
    """Parameters of ``arch`` without building it (meta device)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(**asdict(arch)))
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ generation


def prompts(arch: Arch, batch: int, length: int) -> list[list[int]]:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(1)
    return torch.randint(0, arch.vocab_size, (batch, length), generator=gen).tolist()


def hf_generate(arch: Arch, device, dtype, batch: int, prompt_len: int, new_tokens: int, save_dir: str | None) -> dict:
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
            "new_tokens": new_tokens, "generated_tokens": generated, "seconds": round(seconds, 3),
            "tokens_per_s": round(generated / seconds, 1)}


def vllm_child(model_dir: str, batch: int, prompt_len: int, new_tokens: int, vocab: int) -> None:
    """In a fresh process: vLLM generation from ``model_dir`` (token ids in, token ids out); prints JSON."""
    import torch
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

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
    print("VLLM_RESULT " + json.dumps({"engine": f"vLLM {vllm.__version__}", "batch": batch,
                                       "prompt_tokens": prompt_len, "new_tokens": new_tokens,
                                       "seconds": round(seconds, 3), "tokens_per_s": round(generated / seconds, 1)}))


def vllm_generate(model_dir: str, arch: Arch, batch: int, prompt_len: int, new_tokens: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--vllm-child", model_dir, "--gen-batch", str(batch),
                          "--gen-prompt", str(prompt_len), "--gen-new", str(new_tokens),
                          "--vocab", str(arch.vocab_size)], capture_output=True, text=True, timeout=1200)
    for line in res.stdout.splitlines():
        if line.startswith("VLLM_RESULT "):
            return json.loads(line[len("VLLM_RESULT "):])
    return {"engine": "vLLM", "error": f"exit {res.returncode}: {res.stderr[-1500:]}"}


def installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["1.7B", "8B"], choices=list(ARCHS))
    ap.add_argument("--trainer-model", default="1.7B", choices=list(ARCHS), help="size of the ZeRO-3 trainer runs")
    ap.add_argument("--grpo-model", default="0.6B", choices=list(ARCHS))
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--gen-prompt", type=int, default=1024)
    ap.add_argument("--gen-new", type=int, default=512)
    ap.add_argument("--grpo-completions", type=int, default=64, help="completions per GRPO step (groups of 8)")
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--no-trainers", action="store_true", help="skip the accelerate-launched trainer runs")
    ap.add_argument("--cpu-check", action="store_true", help="run every path on tiny models on CPU; save nothing")
    ap.add_argument("--out", default=None, help="also write the result JSON here")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--vllm-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--trainer-child", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, default=151936, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.vllm_child:
        return vllm_child(args.vllm_child, args.gen_batch, args.gen_prompt, args.gen_new, args.vocab)
    if args.trainer_child:
        return trainer_child(*args.trainer_child)

    import torch

    torch.set_num_threads(1) if args.cpu_check else None
    if not torch.cuda.is_available() and not args.cpu_check:
        print("bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}). It measures bf16 GPU throughput and needs an NVIDIA GPU with a CUDA build "
              "of torch; nothing was measured. Use --cpu-check to exercise its code paths on CPU.")
        return
    if args.cpu_check:
        device, dtype = torch.device("cpu"), torch.float32
        archs = {"tiny": TINY}
        trainer_arch, grpo_arch, accelerate_config = TINY, TINY, "cpu.yaml"
        sizes, reps = [256], 3
        args.seq_len, args.warmup, args.steps = 128, 1, 2
        args.gen_batch, args.gen_prompt, args.gen_new, args.grpo_completions = 2, 16, 8, 16
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        archs = {k: ARCHS[k] for k in args.models}
        trainer_arch, grpo_arch = ARCHS[args.trainer_model], ARCHS[args.grpo_model]
        accelerate_config = "multi_gpu_zero3.yaml"
        sizes, reps = [4096, 8192, 16384], 20
        torch.backends.cuda.matmul.allow_tf32 = False
    start = time.perf_counter()
    peak = matmul_peak(device, dtype, sizes, reps)
    print(f"matmul peak: {peak['matmul_peak_tflops']:.4g} TFLOP/s ({peak['per_size_tflops']})", flush=True)
    use_vllm = not args.no_vllm and not args.cpu_check and installed("vllm")
    results = {}
    for name, arch in archs.items():
        print(f"--- {name}: bare training", flush=True)
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
                row["generate_vllm"] = {"engine": "vLLM", "skipped": "--cpu-check" if args.cpu_check
                                        else "--no-vllm" if args.no_vllm else "not installed"}
        results[name] = row
    result = {**peak, "h200_spec_bf16_dense_tflops": H200_SPEC_BF16_DENSE_TFLOPS, "models": results,
              "machine": common.machine(), "dtype": str(dtype).replace("torch.", "")}
    if not args.no_trainers:
        missing = [m for m in ("trl", "accelerate") + (() if args.cpu_check else ("deepspeed",)) if not installed(m)]
        if missing:
            result["trainers"] = {"skipped": f"not installed: {', '.join(missing)}"}
        else:
            tok = small_tokenizer()
            with tempfile.TemporaryDirectory(dir=common.REPO_ROOT / "bench") as tmp:
                label = "tiny" if args.cpu_check else args.trainer_model
                print(f"--- {label}: scalar-RM trainer, {accelerate_config}", flush=True)
                t = trainer_zero3(trainer_arch, tok, args.seq_len, args.warmup, args.steps,
                                  peak["matmul_peak_tflops"], accelerate_config, Path(tmp))
                print(f"    {t}", flush=True)
                label_g = "tiny" if args.cpu_check else args.grpo_model
                print(f"--- {label_g}: GRPO trainer, {accelerate_config}", flush=True)
                g = grpo_zero3(grpo_arch, tok, args.gen_new, args.grpo_completions, args.warmup, args.steps,
                               accelerate_config, Path(tmp))
                print(f"    {g}", flush=True)
            result["trainers"] = {"scalar_rm": {"model": label, **t}, "grpo": {"model": label_g, **g}}
    if device.type == "cuda":
        result["gpu_name"] = torch.cuda.get_device_name(0)
        result["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if not args.cpu_check and not args.no_save:
        common.merge_results("gpu", result)


if __name__ == "__main__":
    main()
