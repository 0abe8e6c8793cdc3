"""A compute budget for the paper-scale profile, on paper: GPUs, memory per GPU, tokens, hours.

    .venv/bin/python bench/budget.py [--mfu 0.40] [--gpus-70b 16] [--gpus-32b 16]

Nothing here is measured on a GPU: this machine has none. Every number is arithmetic on (a) the
paper's data sizes (reference §1-§6), (b) the published model sizes, (c) H200 datasheet figures
and (d) ASSUMPTIONS, each listed in the output (``assumptions``) and in ``bench/RESULTS.md``.
When ``bench/results.json`` holds a ``gpu`` entry (``bench/gpu.py`` run on a GPU), its measured
MFU is printed beside the assumed one.

Conventions. Training FLOPs = (6·N + 12·L·H·Q·T)·tokens (PaLM; N = parameters doing matmuls, T =
tokens per sequence), ×4/3 with activation checkpointing (the recomputed forward) for the
hardware; hours = FLOPs / (GPUs × MFU × peak). Memory per GPU under ZeRO-3 = 16 bytes/parameter
(bf16 weights and gradients, fp32 master weights and two Adam moments) / GPUs + activations of
one micro-batch of one sequence (checkpointed layer inputs L·T·h·2 bytes, one layer's working
set 34·T·h bytes (Korthikanti et al. 2022, with FlashAttention: no T² term), logits T·V·6 bytes).
Decoding (GRPO rollouts, GenRM judgements) is bounded by memory bandwidth: every step reads the
weights once and the KV cache of the batch; the batch is what fits beside the weights.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

import yaml

import common

H200 = {"bf16_dense_tflops_spec": 989.0,      # NVIDIA H200 SXM datasheet
        "bf16_matmul_tflops_measured": 790.0,  # this workplace's measurement of achievable bf16 matmul on H200
        "hbm_tb_s": 4.8, "memory_gb": 141.0}   # datasheet (the device reports ~139 GiB usable)


@dataclass
class Model:
    """A dense decoder (Llama / Qwen3 layout: GQA attention, SwiGLU MLP)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def params(self) -> int:
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        norms = 2 * self.hidden + 2 * self.head_dim
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * (attn + mlp + norms) + embed + self.hidden

    @property
    def matmul_params(self) -> int:
        return self.params - (0 if self.tied else self.vocab * self.hidden)

    def kv_bytes_per_token(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * 2  # K and V, bf16

    def train_flops_per_token(self, seq: int) -> float:
        return 6 * self.matmul_params + 12 * self.layers * self.heads * self.head_dim * seq

    def activation_gb(self, seq: int) -> float:
        """One sequence of ``seq`` tokens with activation checkpointing, bf16 (estimate)."""
        checkpoints = self.layers * seq * self.hidden * 2
        working = 34 * seq * self.hidden
        logits = seq * self.vocab * 6
        return (checkpoints + working + logits) / 1e9


LLAMA_70B = Model("Llama-3.3-70B-Instruct", 8192, 80, 64, 8, 128, 28672, 128256, False)
QWEN3_32B = Model("Qwen3-32B", 5120, 64, 64, 8, 128, 25600, 151936, False)
QWEN3_EMB_8B = Model("Qwen3-Embedding-8B", 4096, 36, 32, 8, 128, 12288, 151665, False)

# The paper's data (reference §1-§6)
DATA = {
    "feedback_samples": 40_821,          # HelpSteer3-Feedback
    "annotators_per_response": 3,        # up to 3 feedback texts per response
    "principles_extracted": 1_200_000,   # "about 1.2 M principles"
    "principle_items": 33_905,           # released `principle` config (after consensus)
    "preference_pairs": 40_476,          # HelpSteer3 `preference` config
    "train_share": 0.95,                 # HelpSteer3's 95/5 split
    "rm_max_tokens": 4096,               # scalar RM / BT context (card)
    "genrm_max_tokens": 8192,            # GenRM context (card)
}
# The paper-scale profile's GRPO runs (profiles/full.yaml): steps, and for the policy one run per reward and seed
FULL = yaml.safe_load((common.REPO_ROOT / "profiles" / "full.yaml").read_text())
GRPO_RUNS = {
    "genrm_grpo_32b": {"steps": FULL["reward_models"]["genrm"]["grpo"]["max_steps"], "runs": 1, "judged_share": 0.0},
    "policy_grpo_32b": {
        "steps": FULL["alignment"]["grpo"]["max_steps"],
        "runs": len(FULL["alignment"]["rewards"]) * len(FULL["alignment"]["seeds"]),
        # the GenRM (in process or served: "judge") writes reasoning per answer; the BT RM one forward pass
        "judged_share": sum(r in ("genrm", "judge") for r in FULL["alignment"]["rewards"]) / len(FULL["alignment"]["rewards"]),
    },
}
# Assumptions (not in the paper): each one is printed with the budget
ASSUME = {
    "mfu": 0.40,
    "rm_mean_tokens": 1500,              # mean tokens of (conversation + response + principle turn), cap 4,096
    "feedback_tokens": 200,              # a 2-10 sentence feedback text
    "chars_per_token": 4.0,              # English, DeepSeek-V3 tokenizer
    "extraction_output_tokens": 250,     # the JSON list of ~5 principles with evidence
    "api_latency_s": 10.0,               # one DeepSeek-V3 answer of ~250 tokens through an API
    "api_concurrency": 32,               # principles.extraction.concurrency of profiles/full.yaml
    "self_hosted_output_tok_s": 5000.0,  # DeepSeek-V3 (FP8) on 8 H200 with vLLM/SGLang, aggregate decode
    "principle_tokens": 12,              # a principle phrase with the embedder's instruction
    "grpo_prompts": 32, "grpo_generations": 16,  # NVIDIA's template; steps and runs: GRPO_RUNS (profiles/full.yaml)
    "genrm_prompt_tokens": 2000, "genrm_completion_tokens": 1000,  # reasoning + judgement
    "policy_prompt_tokens": 500, "policy_completion_tokens": 2000,  # thinking mode
    "judge_tokens_per_completion": 1000,  # GenRM reasoning to judge one policy answer
    "decode_bandwidth_efficiency": 0.5,  # share of HBM bandwidth a decode step achieves
    "grpo_logprob_passes": 2,            # reference + old-policy log-probabilities: 2 extra forwards
}


def train_hours(model: Model, tokens: float, seq: int, gpus: int, mfu: float) -> dict:
    flops = model.train_flops_per_token(seq) * tokens
    effective = gpus * mfu * H200["bf16_dense_tflops_spec"] * 1e12
    return {"tokens": tokens, "model_flops": flops, "hardware_flops": flops * 4 / 3, "hours": flops / effective / 3600}


def zero3_memory(model: Model, gpus: int, seq: int) -> dict:
    states = 16 * model.params / gpus / 1e9
    act = model.activation_gb(seq)
    return {"states_gb": round(states, 1), "activations_gb": round(act, 1), "total_gb": round(states + act, 1),
            "fits": states + act < H200["memory_gb"] * 0.9}


def min_gpus(model: Model, seq: int) -> int:
    """Fewest GPUs (a multiple of 8: whole machines) whose ZeRO-3 share fits in 90% of an H200."""
    n = 8
    while not zero3_memory(model, n, seq)["fits"]:
        n += 8
    return n


def decode_tok_s_per_gpu(model: Model, context: int) -> dict:
    """Roofline of decoding with the model replicated on each GPU: the batch is what fits beside
    the weights (KV cache of ``context`` tokens per sequence); one step reads weights + KV."""
    weights = model.params * 2
    room = H200["memory_gb"] * 0.9e9 - weights
    batch = max(1, int(room // (model.kv_bytes_per_token() * context)))
    step_bytes = weights + batch * model.kv_bytes_per_token() * context
    steps_per_s = H200["hbm_tb_s"] * 1e12 * ASSUME["decode_bandwidth_efficiency"] / step_bytes
    return {"batch": batch, "tokens_per_s": round(steps_per_s * batch, 1)}


def budget(mfu: float, gpus_70b: int, gpus_32b: int) -> dict:
    stages = {}
    # 1. extraction through an API (and self-hosted as an alternative)
    requests = DATA["feedback_samples"] * 2 * DATA["annotators_per_response"]
    prompt_chars = (common.REPO_ROOT / "rlbff_lib" / "prompts" / "extraction_v1.txt").read_text().__len__()
    in_tokens = requests * (prompt_chars / ASSUME["chars_per_token"] + ASSUME["feedback_tokens"])
    out_tokens = requests * ASSUME["extraction_output_tokens"]
    stages["extraction"] = {
        "what": "DeepSeek-V3-0324 reads every feedback text (one request each)",
        "requests": requests, "input_tokens": round(in_tokens), "output_tokens": round(out_tokens),
        "api_hours": requests * ASSUME["api_latency_s"] / ASSUME["api_concurrency"] / 3600,
        "self_hosted": {"gpus": 8, "hours": out_tokens / ASSUME["self_hosted_output_tok_s"] / 3600},
        "gpus": 0}
    # 2. embedding of every principle
    emb_tokens = DATA["principles_extracted"] * ASSUME["principle_tokens"]
    emb_flops = 2 * QWEN3_EMB_8B.matmul_params * emb_tokens
    stages["embedding"] = {"what": "Qwen3-Embedding-8B embeds every extracted principle (forward only)",
                           "gpus": 1, "tokens": emb_tokens, "model_flops": emb_flops,
                           "hours": emb_flops / (mfu * H200["bf16_dense_tflops_spec"] * 1e12) / 3600,
                           "memory_gb": round(QWEN3_EMB_8B.params * 2 / 1e9 + 2, 1)}
    # 3-4. scalar RM and BT, Llama-3.3-70B, ZeRO-3, one epoch
    seq = DATA["rm_max_tokens"]
    for name, what, sequences in (
            ("scalar_rm_70b", "scalar principle RM: one epoch over the train principle items",
             DATA["principle_items"] * DATA["train_share"]),
            ("bt_70b", "Bradley-Terry RM: one epoch over the train preference pairs (2 sequences each)",
             2 * DATA["preference_pairs"] * DATA["train_share"])):
        typical = train_hours(LLAMA_70B, sequences * ASSUME["rm_mean_tokens"], ASSUME["rm_mean_tokens"], gpus_70b, mfu)
        worst = train_hours(LLAMA_70B, sequences * seq, seq, gpus_70b, mfu)
        stages[name] = {"what": what, "gpus": gpus_70b, "min_gpus": min_gpus(LLAMA_70B, seq),
                        "memory_per_gpu": zero3_memory(LLAMA_70B, gpus_70b, seq), "sequences": round(sequences),
                        "typical": typical, "all_at_max_length": worst, "hours": typical["hours"]}
    # 5-6. GRPO of the GenRM and of the policy, Qwen3-32B
    for name, what, prompt, completion, judge in (
            ("genrm_grpo_32b", "GenRM GRPO (reward: log P(label) - log P(other) at the judgement)",
             ASSUME["genrm_prompt_tokens"], ASSUME["genrm_completion_tokens"], 0),
            ("policy_grpo_32b", "policy GRPO (reward: the GenRM judges each final answer)",
             ASSUME["policy_prompt_tokens"], ASSUME["policy_completion_tokens"], ASSUME["judge_tokens_per_completion"])):
        plan = GRPO_RUNS[name]
        seqs = ASSUME["grpo_prompts"] * ASSUME["grpo_generations"] * plan["steps"] * plan["runs"]
        tokens = seqs * (prompt + completion)
        train = train_hours(QWEN3_32B, tokens, prompt + completion, gpus_32b, mfu)
        logprob_flops = ASSUME["grpo_logprob_passes"] * 2 * QWEN3_32B.matmul_params * tokens
        logprob_hours = logprob_flops / (gpus_32b * mfu * H200["bf16_dense_tflops_spec"] * 1e12) / 3600
        decode = decode_tok_s_per_gpu(QWEN3_32B, prompt + completion)
        rollout_tokens = seqs * completion
        judge_tokens = seqs * judge * plan["judged_share"] if name == "policy_grpo_32b" else seqs * judge
        decode_hours = (rollout_tokens + judge_tokens) / (decode["tokens_per_s"] * gpus_32b) / 3600
        stages[name] = {"what": what, "gpus": gpus_32b, "min_gpus": min_gpus(QWEN3_32B, prompt + completion),
                        "memory_per_gpu": zero3_memory(QWEN3_32B, gpus_32b, DATA["genrm_max_tokens"]),
                        "sequences": seqs, "steps": plan["steps"], "runs": plan["runs"], "train": train, "logprob_hours": logprob_hours,
                        "rollout_tokens": rollout_tokens, "judge_tokens": judge_tokens,
                        "decode_roofline_per_gpu": decode, "decode_hours": decode_hours,
                        "hours": train["hours"] + logprob_hours + decode_hours}
    gpu_hours = sum(s["hours"] * s["gpus"] for name, s in stages.items() if name != "extraction")  # API: no GPU of ours
    return {"stages": stages, "total_gpu_hours": gpu_hours,
            "models": {m.name: {"params": m.params, "matmul_params": m.matmul_params}
                       for m in (LLAMA_70B, QWEN3_32B, QWEN3_EMB_8B)},
            "h200": H200, "data": DATA, "assumptions": {**ASSUME, "mfu": mfu}}


def measured_mfu() -> dict | None:
    if not common.RESULTS.exists():
        return None
    gpu = json.loads(common.RESULTS.read_text()).get("gpu")
    if not gpu:
        return None
    return {name: row["train"]["mfu"] for name, row in gpu.get("models", {}).items()}


def fmt_h(h: float) -> str:
    return f"{h:,.1f} h" if h >= 1 else f"{h * 60:,.0f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mfu", type=float, default=ASSUME["mfu"], help="ASSUMED model FLOPs utilisation")
    ap.add_argument("--gpus-70b", type=int, default=16, help="H200s for the 70B RMs (2 machines of 8)")
    ap.add_argument("--gpus-32b", type=int, default=16, help="H200s for the 32B GRPO runs")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    b = budget(args.mfu, args.gpus_70b, args.gpus_32b)
    s = b["stages"]
    print(f"Paper-scale budget on H200s, ASSUMED MFU {args.mfu:.0%} of the {H200['bf16_dense_tflops_spec']:.0f} "
          f"TFLOP/s bf16 spec (= {args.mfu * H200['bf16_dense_tflops_spec']:.0f} TFLOP/s per GPU; this workplace "
          f"measured ~{H200['bf16_matmul_tflops_measured']:.0f} TFLOP/s achievable bf16 matmul)")
    e = s["extraction"]
    print(f"- extraction: {e['requests']:,} requests, {e['input_tokens'] / 1e6:.0f}M in / {e['output_tokens'] / 1e6:.0f}M "
          f"out tokens; API at concurrency {ASSUME['api_concurrency']}: {fmt_h(e['api_hours'])}; self-hosted on 8 "
          f"H200: {fmt_h(e['self_hosted']['hours'])}")
    m = s["embedding"]
    print(f"- embedding: {m['tokens'] / 1e6:.1f}M tokens, 1 GPU ({m['memory_gb']} GB): {fmt_h(m['hours'])}")
    for k in ("scalar_rm_70b", "bt_70b"):
        r = s[k]
        mem = r["memory_per_gpu"]
        print(f"- {k}: {r['sequences']:,} sequences, {r['gpus']} GPUs (min {r['min_gpus']}), {mem['total_gb']} GB/GPU "
              f"({mem['states_gb']} states + {mem['activations_gb']} activations at 4K); "
              f"{r['typical']['tokens'] / 1e6:.0f}M tokens: {fmt_h(r['hours'])} "
              f"(every input at 4K: {fmt_h(r['all_at_max_length']['hours'])})")
    for k in ("genrm_grpo_32b", "policy_grpo_32b"):
        r = s[k]
        print(f"- {k}: {r['sequences']:,} rollouts, {r['gpus']} GPUs (min {r['min_gpus']}), "
              f"{r['memory_per_gpu']['total_gb']} GB/GPU at 8K; train {fmt_h(r['train']['hours'])} + log-probs "
              f"{fmt_h(r['logprob_hours'])} + decode {fmt_h(r['decode_hours'])} "
              f"({r['decode_roofline_per_gpu']['tokens_per_s']:,.0f} tok/s/GPU roofline) = {fmt_h(r['hours'])}")
    print(f"total: {b['total_gpu_hours']:,.0f} H200 GPU-hours (extraction through the API not included)")
    meas = measured_mfu()
    if meas:
        print(f"measured MFU of bench/gpu.py (scalar-RM-style training, one GPU): {meas}")
        b["measured_mfu"] = meas
    if not args.no_save:
        common.merge_results("budget", {**b, "machine": common.machine()})


if __name__ == "__main__":
    main()
