"""The full profile's budget on paper: per stage, GPUs, nodes, memory per GPU and hours, on H100 / H200 nodes.

    .venv/bin/python bench/budget.py [--gpu H200|H100|both] [--params params.yaml] [--profile full] [--no-save]

It READS what it budgets: the merged parameters (``params.yaml`` with ``profiles/<profile>.yaml`` over it,
validated by the stage config classes), the accelerate configs they name and the DeepSpeed JSON those
point to (``configs/deepspeed/``), and the cluster file of the SLURM launcher (``configs/slurm/cluster.yaml``:
GPUs per node, the inference servers each stage brings up). Nothing is measured here (no GPU on this
machine); every number is arithmetic on the published model configs (:data:`MODELS`), GPU datasheets
(:data:`GPUS`), the paper's data sizes (:data:`DATA`) and the ASSUMPTIONS in :data:`ASSUME`, printed with
the budget. When ``bench/results.json`` holds a ``gpu`` entry (``bench/gpu.py`` on a GPU), its measured MFU
is printed beside the assumed one.

Memory per GPU (GiB, 2^30 bytes), per phase; a stage fits when its peak phase plus ``runtime_reserve_gib``
is at most the GPU's CUDA-visible memory:

- ZeRO-3 training (Rajbhandari et al. 2020, mixed-precision Adam: 2 + 2 + 12 = 16 bytes per parameter):
  bf16 weights 2P/N, bf16 gradients 2P/N, fp32 master weights + two Adam moments 12P/N over N GPUs (the
  12 bytes in host memory when the DeepSpeed file offloads the optimizer); the gathered bf16 parameters
  ZeRO-3 keeps live (``stage3_max_live_parameters`` + ``stage3_prefetch_bucket_size``, 2 bytes each);
  activations with gradient checkpointing per micro-batch of b sequences of T tokens: the checkpointed
  layer inputs L·b·T·h·2 bytes, plus one layer's recomputed activations and their gradients
  2·34·b·T·h bytes (Korthikanti et al. 2022; FlashAttention: no T² term); logits b·T_logit·V ×
  ``logit_bytes`` (the causal-LM loss upcasts to fp32; GRPO scores the completion tokens only; a
  Bradley–Terry head has none); a GRPO reference model (beta > 0) as ZeRO-3 bf16 shards 2P/N.
- vLLM: an engine with tensor parallel t takes ``gpu_memory_utilization`` × memory of each of its GPUs:
  weights 2P/t, a fixed ``vllm_overhead_gib`` (CUDA graphs, sampler, activations of a step) and the KV
  cache (2·L·kv_heads·head_dim·2 bytes per token, split over t) in the rest; it must hold at least one
  ``max_model_len`` sequence. Colocated with training (TRL ``vllm_mode: colocate``) it shares the GPU:
  with sleep mode the engine frees its weights and KV cache during the optimizer phase (peak = max of
  the two phases); without, both are resident at once.
- Serving with HF (the scoring service, ``device_map: auto``): bf16 weights 2P over the replica's GPUs.

Time: training FLOPs per token 6·N + 12·L·H·Q·T (PaLM; N = parameters in matmuls), forward-only passes
2·N + 4·L·H·Q·T. A ZeRO-3 micro-step takes max(compute, communication): compute = FLOPs / (peak ×
``mfu``), communication = two all-gathers of the bf16 weights (forward; backward with the checkpoint
recompute, parameters reused) and one reduce-scatter of bf16 gradients = 6P bytes at the ASSUMED
effective bus bandwidth of ZeRO-3's collectives (within a node: NVLink; across nodes: InfiniBand);
forward-only ZeRO-3 passes gather 2P. The implied MFU is printed: for a 70B model across nodes at ~1.5K
tokens per micro-step it is communication-bound, far under the compute-bound assumption. Decoding (vLLM
rollouts, judges, evaluation answers) is bandwidth-bound: a step reads an engine's weights and the KV
cache of its batch once at ``decode_bandwidth_efficiency`` of the HBM bandwidth; the batch is what its
KV cache holds (at most ``max_num_seqs``); a generation phase lasts at least its longest completion.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

import common

GIB = 2 ** 30


# ------------------------------------------------------------------ hardware and models


@dataclass(frozen=True)
class GPU:
    """An 8-GPU node's accelerator: CUDA-visible memory (GiB), bf16 dense peak (TFLOP/s), HBM (TB/s)."""

    name: str
    memory_gib: float
    bf16_tflops: float
    hbm_tb_s: float


GPUS = {  # NVIDIA H100 / H200 SXM datasheets (bf16 dense, no sparsity); memory as torch reports it
    "H100": GPU("H100-SXM-80GB", 79.1, 989.0, 3.35),
    "H200": GPU("H200-SXM-141GB", 139.8, 989.0, 4.8),
}


@dataclass(frozen=True)
class Model:
    """A dense decoder (Llama / Qwen3 layout: GQA attention, SwiGLU MLP), sizes from its ``config.json``.

    qk_norm: Qwen3's per-head RMSNorm of queries and keys. head: ``lm`` (vocabulary logits) or
    ``score`` (a Bradley–Terry scalar head, hidden → 1, no LM head).
    """

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qk_norm: bool
    head: str = "lm"

    @property
    def params(self) -> int:
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        norms = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        embed = self.vocab * self.hidden
        out = self.hidden if self.head == "score" else (0 if self.tied else self.vocab * self.hidden)
        return self.layers * (attn + mlp + norms) + embed + out + self.hidden

    @property
    def matmul_params(self) -> int:
        """Parameters in matmuls: all but the input-embedding lookup (a tied embedding is the LM head)."""
        return self.params - (0 if self.tied and self.head == "lm" else self.vocab * self.hidden)

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * 2  # K and V, bf16

    def train_flops(self, tokens: float, seq: float) -> float:
        return (6 * self.matmul_params + 12 * self.layers * self.heads * self.head_dim * seq) * tokens

    def forward_flops(self, tokens: float, seq: float) -> float:
        return (2 * self.matmul_params + 4 * self.layers * self.heads * self.head_dim * seq) * tokens

    def as_score_model(self) -> "Model":
        return Model(self.name + " + scalar head", self.hidden, self.layers, self.heads, self.kv_heads, self.head_dim,
                     self.intermediate, self.vocab, self.tied, self.qk_norm, head="score")


MODELS = {  # hub name -> published config.json sizes
    "meta-llama/Llama-3.3-70B-Instruct": Model("Llama-3.3-70B-Instruct", 8192, 80, 64, 8, 128, 28672, 128256,
                                               False, False),
    "Qwen/Qwen3-32B": Model("Qwen3-32B", 5120, 64, 64, 8, 128, 25600, 151936, False, True),
    "Qwen/Qwen3-Embedding-8B": Model("Qwen3-Embedding-8B", 4096, 36, 32, 8, 128, 12288, 151665, True, True),
}
DEEPSEEK_V3_WEIGHT_GB = 671 * 1.0  # 671B parameters in FP8 (1 byte each; model card), for the self-hosted extraction
DEEPSEEK_V3_ACTIVE_PARAMS = 37e9    # activated per token (MoE; model card)
DEEPSEEK_V3_KV_BYTES_PER_TOKEN = 61 * (512 + 64) * 2  # MLA: compressed KV (512) + RoPE key (64) per layer, bf16

# The paper's data (reference §1-§6) and the benchmarks' published sizes
DATA = {
    "feedback_samples": 40_821,          # HelpSteer3-Feedback
    "annotators_per_response": 3,        # up to 3 feedback texts per response
    "principles_extracted": 1_200_000,   # "about 1.2 M principles"
    "principle_items": 33_905,           # released `principle` config (after consensus)
    "preference_pairs": 40_476,          # HelpSteer3 `preference` config
    "train_share": 0.95,                 # HelpSteer3's 95/5 split
    "rmbench_responses": 1_327 * 6,      # RM-Bench: 1,327 prompts x (3 chosen + 3 rejected), each scored alone
    "judgebench_responses": 350 * 2,     # JudgeBench GPT-4o split: 350 pairs
    "principlebench_items": 4_000,       # profile: bench.max_items_per_domain 1,000 x 4 domains (upper bound)
    "mtbench_turns": 80 * 2,             # MT-Bench: 80 questions, 2 turns
    "arena_questions": 750,              # Arena-Hard v2
}

# ASSUMPTIONS: not in the paper, not measurable here; each is printed with the budget
ASSUME = {
    "mfu": 0.40,                          # compute-bound training/forward MFU (model FLOPs / bf16 dense peak)
    "zero3_busbw_gb_s": {"node": 150.0, "nodes": 80.0},  # effective bus bandwidth of ZeRO-3's per-layer
    # all-gathers / reduce-scatters: within a node (NVLink, ~1/3 of NCCL's peak) and across nodes
    # (8x400 Gb/s InfiniBand per node, ~1/4 of NCCL's peak): DeepSpeed's per-layer collectives stay well under it
    "runtime_reserve_gib": 3.0,           # CUDA context, NCCL buffers, allocator fragmentation, per GPU
    "vllm_overhead_gib": 3.0,             # vLLM's non-KV memory beyond the weights (CUDA graphs, sampler, a step's activations)
    "logit_bytes_sft": 12,                # bytes per logit of the causal-LM loss (bf16 logits, fp32 copy, fp32 log-softmax/grad)
    "logit_bytes_grpo": 6,                # TRL GRPO (fused log-prob kernel): bf16 logits, their gradient, a temperature-scaled copy
    "decode_bandwidth_efficiency": 0.5,   # share of HBM bandwidth a decode step achieves
    "rm_mean_tokens": 1500,               # mean tokens of (conversation + response + principle turn)
    "extraction_input_tokens": 900,       # extraction prompt + one feedback text
    "extraction_output_tokens": 250,      # the JSON list of ~5 principles with evidence
    "api_latency_s": 10.0,                # one DeepSeek-V3 answer through a hosted API
    "principle_tokens": 12,               # a principle phrase with the embedder's instruction
    "genrm_prompt_mean": 2000, "genrm_completion_mean": 1000,    # GenRM GRPO rollouts: prompt, reasoning + judgement
    "policy_prompt_mean": 800, "policy_completion_mean": 3000,   # policy GRPO rollouts (thinking mode)
    "judge_completion_mean": 800,         # the served GenRM's reasoning + judgement per policy answer
    "bench_judgement_mean": 1000,         # GenRM reasoning per benchmark response (rm_eval)
    "mtbench_answer_mean": 2000, "arena_answer_mean": 4000,     # policy answers in thinking mode
    "vllm_sync_and_wake_s": 10.0,         # per GRPO step: sleep/wake of the colocated engine, weight hand-over
}


# ------------------------------------------------------------------ reading what is budgeted


def load_profile(params_path: Path, profile: str) -> dict:
    """Stage configs of ``params_path`` with ``profiles/<profile>.yaml`` merged over it (validated)."""
    from rlbff_lib.core import params as P

    raw = yaml.safe_load(params_path.read_text()) or {}
    if profile != "smoke":
        raw = P.deep_merge(raw, yaml.safe_load((params_path.parent / "profiles" / f"{profile}.yaml").read_text()))
    return {name: P.build(P.section_class(name), raw.get(name) or {}, name) for name in P.SECTIONS}


def read_deepspeed(accelerate_config: str) -> dict:
    """The DeepSpeed settings behind an accelerate config: offload, live / prefetched parameters."""
    path = Path(accelerate_config)
    if not path.is_file():
        path = common.REPO_ROOT / "configs" / "accelerate" / accelerate_config
    acc = yaml.safe_load(path.read_text())
    if acc.get("distributed_type") != "DEEPSPEED":
        raise ValueError(f"{path}: distributed_type {acc.get('distributed_type')!r}: the paper scale needs DeepSpeed")
    ds_file = common.REPO_ROOT / acc["deepspeed_config"]["deepspeed_config_file"]
    zero = json.loads(ds_file.read_text())["zero_optimization"]
    if zero.get("stage") != 3:
        raise ValueError(f"{ds_file}: zero_optimization.stage must be 3, got {zero.get('stage')}")
    return {"file": str(ds_file.relative_to(common.REPO_ROOT)), "accelerate_config": path.name,
            "offload_optimizer": zero.get("offload_optimizer", {}).get("device", "none") != "none",
            "live_params": int(zero["stage3_max_live_parameters"]),
            "prefetch_params": int(zero["stage3_prefetch_bucket_size"]),
            "num_processes": int(acc["num_processes"])}


def read_cluster(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def model_of(name: str) -> Model:
    if name not in MODELS:
        raise ValueError(f"{name}: no published sizes in bench/budget.py MODELS (known: {', '.join(MODELS)})")
    return MODELS[name]


def trl_field(cfg, name: str, default):
    """A ``trl.GRPOConfig`` field of a GRPO settings object: its dataclass field, else its ``trl_args`` pass-through."""
    if hasattr(cfg, name):
        return getattr(cfg, name)
    return (getattr(cfg, "trl_args", None) or {}).get(name, default)


# ------------------------------------------------------------------ memory


def gib(x: float) -> float:
    return round(x / GIB, 2)


def activation_bytes(m: Model, seqs: int, seq: int, checkpointing: bool) -> float:
    """Activations of one micro-batch: checkpointed layer inputs + one layer's recompute and its gradients;
    without checkpointing every layer keeps its 34·b·T·h bytes."""
    if checkpointing:
        return m.layers * seqs * seq * m.hidden * 2 + 2 * 34 * seqs * seq * m.hidden
    return m.layers * 34 * seqs * seq * m.hidden


def zero3_memory(m: Model, gpus: int, ds: dict, seqs: int, seq: int, logit_tokens: int, logit_bytes: int,
                 checkpointing: bool, reference: bool = False) -> dict:
    """Per-GPU bytes of a ZeRO-3 training micro-step (see the module docstring)."""
    p = m.params
    out = {"weights": 2 * p / gpus, "gradients": 2 * p / gpus,
           "optimizer": 0.0 if ds["offload_optimizer"] else 12 * p / gpus,
           "gathered_params": 2 * min(p, ds["live_params"] + ds["prefetch_params"]),
           "activations": activation_bytes(m, seqs, seq, checkpointing),
           "logits": seqs * logit_tokens * m.vocab * logit_bytes if m.head == "lm" else 0.0}
    if reference:
        out["reference_model"] = 2 * p / gpus
    return out


def vllm_engine(m: Model, gpu: GPU, tp: int, utilization: float, max_model_len: int) -> dict:
    """One vLLM engine over ``tp`` GPUs: per-GPU budget, weights, KV room (bytes) and whether it starts."""
    budget = utilization * gpu.memory_gib * GIB
    weights = 2 * m.params / tp
    kv = budget - weights - ASSUME["vllm_overhead_gib"] * GIB
    need = m.kv_bytes_per_token * max_model_len / tp
    return {"budget": budget, "weights": weights, "kv_cache": max(kv, 0.0), "tp": tp,
            "kv_tokens": int(max(kv, 0.0) * tp // m.kv_bytes_per_token), "starts": kv >= need,
            "one_sequence_kv": need}


def check(parts: dict[str, float], gpu: GPU) -> dict:
    """GiB per part, the total with the runtime reserve, and whether it fits the GPU."""
    total = sum(parts.values()) + ASSUME["runtime_reserve_gib"] * GIB
    return {"parts_gib": {k: gib(v) for k, v in parts.items()}, "runtime_reserve_gib": ASSUME["runtime_reserve_gib"],
            "total_gib": gib(total), "capacity_gib": gpu.memory_gib, "fits": total <= gpu.memory_gib * GIB}


# ------------------------------------------------------------------ time


def busbw(nodes: int) -> float:
    return ASSUME["zero3_busbw_gb_s"]["nodes" if nodes > 1 else "node"] * 1e9


def zero3_seconds(m: Model, flops: float, gathers: int, reduce_scatters: int, nodes: int, gpu: GPU) -> dict:
    """One ZeRO-3 micro-step per GPU: max(compute at the assumed MFU, its collectives at ZeRO-3's bus bandwidth)."""
    compute = flops / (gpu.bf16_tflops * 1e12 * ASSUME["mfu"])
    comm = (gathers + reduce_scatters) * 2 * m.params / busbw(nodes)
    return {"compute_s": compute, "comm_s": comm, "seconds": max(compute, comm)}


def decode(m: Model, gpu: GPU, engine: dict, requests: float, prompt: float, new: float, max_new: int,
           max_num_seqs: int) -> dict:
    """Seconds for one engine to answer ``requests`` (mean ``prompt`` / ``new`` tokens, at most ``max_new``)."""
    tp = engine["tp"]
    batch = max(1, min(max_num_seqs, int(engine["kv_tokens"] // (prompt + new)), math.ceil(requests)))
    bw = gpu.hbm_tb_s * 1e12 * ASSUME["decode_bandwidth_efficiency"]
    read = (engine["weights"] + batch * m.kv_bytes_per_token * (prompt + new / 2) / tp) / bw
    compute = m.forward_flops(batch, prompt + new / 2) / (tp * gpu.bf16_tflops * 1e12 * ASSUME["mfu"])
    step = max(read, compute)  # large batches turn a decode step compute-bound
    tokens_per_s = batch / step
    prefill = m.forward_flops(requests * prompt, prompt) / (tp * gpu.bf16_tflops * 1e12 * ASSUME["mfu"])
    tail = max_new * engine["weights"] / bw  # the longest completion, alone at the end
    seconds = max(requests * new / tokens_per_s, tail) + prefill
    return {"batch": batch, "tokens_per_s": round(tokens_per_s), "seconds": seconds}


# ------------------------------------------------------------------ stages


def server_entries(cluster: dict, stage: str) -> list[dict]:
    return [s for s in cluster.get("servers", []) if s["stage"] == stage]


def stage_needs(server: dict, section) -> bool:
    """A server runs for its stage when the stage's parameters send requests to its local port."""
    return f"127.0.0.1:{server['port']}" in json.dumps(dataclasses.asdict(section))


def rm_training(name: str, cfg, rm: Model, sequences: float, seqs_per_item: int, gpus: int, nodes: int,
                ds: dict, gpu: GPU) -> dict:
    """Scalar RM (SFT on the answer token) or BT RM (pairs, scalar head), ZeRO-3, one run."""
    b = cfg.per_device_train_batch_size * seqs_per_item
    is_bt = rm.head == "score"
    mem = zero3_memory(rm, gpus, ds, b, cfg.max_length, 0 if is_bt else cfg.max_length, ASSUME["logit_bytes_sft"],
                       cfg.gradient_checkpointing)
    epochs = cfg.num_train_epochs
    items = sequences * epochs
    mean = min(ASSUME["rm_mean_tokens"], cfg.max_length)
    micro_steps = items * seqs_per_item / (gpus * b)
    step = zero3_seconds(rm, rm.train_flops(b * mean, mean), 2, 1, nodes, gpu)
    hours = micro_steps * step["seconds"] / 3600
    global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * gpus
    return {"stage": "reward_models", "part": name, "model": rm.name, "gpus": gpus, "nodes": nodes,
            "deepspeed": ds["file"], "micro_batch_sequences": b, "seq_len": cfg.max_length,
            "global_batch": global_batch, "optimizer_steps": math.ceil(items / global_batch),
            "memory": check(mem, gpu), "tokens": items * seqs_per_item * mean,
            "mfu_implied": round(rm.train_flops(b * mean, mean) / (step["seconds"] * gpu.bf16_tflops * 1e12), 3),
            "micro_step": {k: round(v, 2) for k, v in step.items()}, "hours": hours}


def grpo(stage: str, part: str, cfg, m: Model, gpus: int, nodes: int, ds: dict, gpu: GPU, prompt_mean: float,
         completion_mean: float, runs: int, rollout_server: dict | None, reward_seconds: float,
         reward_forward: bool) -> dict:
    """GRPO of a Qwen3-32B-size policy: memory of the generation and training phases, hours of all runs."""
    seq = cfg.max_prompt_length + cfg.max_completion_length
    b = cfg.per_device_train_batch_size
    ref = cfg.beta > 0
    train = zero3_memory(m, gpus, ds, b, seq, cfg.max_completion_length, ASSUME["logit_bytes_grpo"],
                         cfg.gradient_checkpointing, reference=ref)
    resident = {k: train[k] for k in ("weights", "gradients", "optimizer") + (("reference_model",) if ref else ())}
    colocate = cfg.use_vllm and cfg.vllm_mode == "colocate"
    sleep = bool(trl_field(cfg, "vllm_enable_sleep_mode", False))
    tp = cfg.vllm_tensor_parallel_size
    steps_per_generation = trl_field(cfg, "steps_per_generation", None) or cfg.gradient_accumulation_steps
    completions = b * gpus * steps_per_generation  # one generation batch = one optimizer step
    phases, engine = {}, None
    if colocate:
        engine = vllm_engine(m, gpu, tp, cfg.vllm_gpu_memory_utilization, seq)
        vllm_part = {"vllm (weights + KV cache + overhead)": engine["budget"]}
        phases["generation"] = check({**resident, **vllm_part}, gpu)
        phases["training"] = check({**train, **({} if sleep else vllm_part)}, gpu)
        engines = gpus // tp
        max_num_seqs = b * tp * steps_per_generation
    else:
        phases["training"] = check(train, gpu)
        if cfg.use_vllm:
            if rollout_server is None:
                raise ValueError(f"{stage}.{part}: vllm_mode server needs a rollout server in configs/slurm/cluster.yaml")
            engine = vllm_engine(m, gpu, rollout_server["tensor_parallel_size"],
                                 rollout_server["gpu_memory_utilization"], seq)
            engines = rollout_server["nodes"] * rollout_server.get("gpus_per_node", 8) // rollout_server["tensor_parallel_size"]
            max_num_seqs = 256
    memory = max(phases.values(), key=lambda c: c["total_gib"])
    fits = all(c["fits"] for c in phases.values()) and (engine is None or engine["starts"])
    # time of one optimizer step
    gen = decode(m, gpu, engine, completions / engines, prompt_mean, completion_mean, cfg.max_completion_length,
                 max_num_seqs) if engine else None
    mean = prompt_mean + completion_mean
    per_gpu_tokens = completions / gpus * mean
    micro = completions / gpus / b
    old_logps = cfg.use_vllm and trl_field(cfg, "vllm_importance_sampling_correction", True)  # TRL recomputes them
    fwd_passes = int(bool(old_logps)) + int(ref) + int(reward_forward)  # old log-probs, reference, GenRM reward
    train_step = zero3_seconds(m, m.train_flops(b * mean, mean), 2, 1, nodes, gpu)
    fwd_step = zero3_seconds(m, m.forward_flops(b * mean, mean), 1, 0, nodes, gpu)
    train_s = micro * (train_step["seconds"] + fwd_passes * fwd_step["seconds"])
    step_s = (gen["seconds"] if gen else 0.0) + train_s + reward_seconds + (ASSUME["vllm_sync_and_wake_s"] if engine else 0)
    steps = cfg.max_steps
    hours = runs * steps * step_s / 3600
    model_flops = m.train_flops(per_gpu_tokens, mean) + fwd_passes * m.forward_flops(per_gpu_tokens, mean)
    return {"stage": stage, "part": part, "model": m.name, "gpus": gpus, "nodes": nodes, "deepspeed": ds["file"],
            "vllm": ({"mode": cfg.vllm_mode if cfg.use_vllm else "off", "tensor_parallel_size": engine["tp"],
                      "gpu_memory_utilization": round(engine["budget"] / (gpu.memory_gib * GIB), 3),
                      "sleep_mode": sleep if colocate else None, "kv_cache_tokens_per_engine": engine["kv_tokens"],
                      "starts": engine["starts"], "engines": engines} if engine else {"mode": "off"}),
            "micro_batch_sequences": b, "seq_len": seq, "completions_per_step": completions,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "steps": steps, "runs": runs,
            "memory": memory, "phases": phases, "fits": fits,
            "step_seconds": {"generation": round(gen["seconds"], 1) if gen else None, "training": round(train_s, 1),
                             "reward": round(reward_seconds, 1)},
            "decode_tokens_per_s_per_engine": gen["tokens_per_s"] if gen else None,
            "mfu_implied": round(model_flops / (step_s * gpu.bf16_tflops * 1e12), 3),
            "hours": hours}


def max_colocate_utilization(row: dict, gpu: GPU) -> float:
    """The largest vLLM gpu_memory_utilization whose generation phase still fits beside the training states."""
    gen = row["phases"].get("generation")
    if not gen:
        return float("nan")
    resident = sum(v for k, v in gen["parts_gib"].items() if not k.startswith("vllm"))
    return round((gpu.memory_gib - ASSUME["runtime_reserve_gib"] - resident) / gpu.memory_gib, 3)


def served_scorer(server: dict, rm: Model, gpu: GPU, requests: float, tokens: float) -> dict:
    """The scoring service (rlbff_lib.reward_models.serve): replicas of the RM in bf16 over their GPUs."""
    g = server["gpus_per_replica"]
    replicas = server["nodes"] * 8 // g
    mem = check({"weights": 2 * rm.params / g,
                 "activations": activation_bytes(rm, server.get("batch_size", 8), int(tokens), False) / rm.layers},
                gpu)
    # a replica spread over g GPUs by device_map works one GPU at a time: throughput of one GPU
    seconds = rm.forward_flops(requests * tokens, tokens) / (replicas * gpu.bf16_tflops * 1e12 * ASSUME["mfu"])
    return {"replicas": replicas, "gpus_per_replica": g, "memory": mem, "seconds": seconds}


def budget(params_path: Path, profile: str, cluster_path: Path, gpu: GPU) -> dict:
    cfg = load_profile(params_path, profile)
    cluster = read_cluster(cluster_path)
    per_node = cluster["gpus_per_node"]
    rows = []
    servers_used = []

    def nodes_of(n: int) -> int:
        return math.ceil(n / per_node)

    # principles: extraction (API, or DeepSeek-V3 self-hosted) and the embedder
    ext = cfg["principles"].extraction
    requests = DATA["feedback_samples"] * 2 * DATA["annotators_per_response"]
    self_hosted = [s for s in server_entries(cluster, "principles") if stage_needs(s, cfg["principles"])]
    if ext.backend == "openai" and self_hosted:
        s = self_hosted[0]
        n = s["nodes"] * per_node
        weights = DEEPSEEK_V3_WEIGHT_GB * 1e9 / n
        kv = s["gpu_memory_utilization"] * gpu.memory_gib * GIB - weights - ASSUME["vllm_overhead_gib"] * GIB
        # MoE decode: at a batch of tens of sequences nearly every expert is routed to, so a step reads all
        # the weights; the batch is the client's concurrency (what is in flight), at most what the KV holds
        in_tok, out_tok = ASSUME["extraction_input_tokens"], ASSUME["extraction_output_tokens"]
        batch = max(1, min(ext.concurrency, 256, int(max(kv, 0) * n // (DEEPSEEK_V3_KV_BYTES_PER_TOKEN * (in_tok + out_tok)))))
        step = weights / (gpu.hbm_tb_s * 1e12 * ASSUME["decode_bandwidth_efficiency"])
        prefill = 2 * DEEPSEEK_V3_ACTIVE_PARAMS * requests * in_tok / (n * gpu.bf16_tflops * 1e12 * ASSUME["mfu"])
        hours = (requests * out_tok / (batch / step) + prefill) / 3600 if kv > 0 else 0.0
        rows.append({"stage": "principles", "part": f"extraction: {ext.model} self-hosted by vLLM (TP {n}), "
                     f"principles.extraction.concurrency {ext.concurrency} requests in flight",
                     **({} if kv > 0 else {"note": "does not fit: not timed"}),
                     "gpus": n, "nodes": s["nodes"], "server": s["name"],
                     "memory": check({"weights (FP8)": weights, "vllm overhead": ASSUME["vllm_overhead_gib"] * GIB,
                                      "kv_cache": max(kv, 0)}, gpu) | {"fits": kv > 0},
                     "decode_tokens_per_s": round(batch / step), "requests": requests, "hours": hours})
        servers_used.append(s["name"])
    elif ext.backend == "openai":
        rows.append({"stage": "principles", "part": f"extraction: {ext.model} through an API (concurrency "
                     f"{ext.concurrency})", "gpus": 0, "nodes": 0, "requests": requests,
                     "hours": requests * ASSUME["api_latency_s"] / ext.concurrency / 3600,
                     "memory": {"fits": True, "total_gib": 0.0, "capacity_gib": gpu.memory_gib, "parts_gib": {}}})
    emb = model_of(cfg["principles"].embedder.name_or_path)
    tokens = DATA["principles_extracted"] * ASSUME["principle_tokens"]
    rows.append({"stage": "principles", "part": f"embedding: {emb.name} (forward only, batch "
                 f"{cfg['principles'].embedder.batch_size})", "gpus": 1, "nodes": 1,
                 "memory": check({"weights": 2 * emb.params, "activations": activation_bytes(
                     emb, cfg["principles"].embedder.batch_size, cfg["principles"].embedder.max_seq_length, False)
                     / emb.layers}, gpu),
                 "hours": emb.forward_flops(tokens, ASSUME["principle_tokens"])
                 / (gpu.bf16_tflops * 1e12 * ASSUME["mfu"]) / 3600})

    # reward_models: scalar + BT (Llama-3.3-70B), GenRM GRPO (Qwen3-32B)
    rmc = cfg["reward_models"]
    base_rm = model_of(cfg["assets"].models["reward"].name_or_path)
    ds = read_deepspeed(rmc.accelerate_config)
    gpus = rmc.num_processes or ds["num_processes"]
    train_items = DATA["principle_items"] * DATA["train_share"]
    train_pairs = DATA["preference_pairs"] * DATA["train_share"]
    if "scalar" in rmc.train:
        rows.append(rm_training("scalar RM: SFT on the Yes/No token", rmc.scalar, base_rm, train_items, 1,
                                gpus, nodes_of(gpus), ds, gpu))
    if "bt" in rmc.train:
        rows.append(rm_training("Bradley-Terry RM: pairs", rmc.bt, base_rm.as_score_model(), train_pairs, 2,
                                gpus, nodes_of(gpus), ds, gpu))
    pol = model_of(cfg["assets"].models["policy"].name_or_path)
    rollout = {s["kind"]: s for s in server_entries(cluster, "reward_models") if stage_needs(s, rmc)}
    if "genrm" in rmc.train and "grpo" in rmc.genrm.stages:
        g = rmc.genrm.grpo
        rows.append(grpo("reward_models", "GenRM GRPO", g, pol, gpus, nodes_of(gpus), ds, gpu,
                         ASSUME["genrm_prompt_mean"], ASSUME["genrm_completion_mean"], 1, rollout.get("trl-vllm"), 0.0,
                         reward_forward=True))
        servers_used += [x["name"] for x in rollout.values()]

    # rm_eval: the scalar / BT RM score every response; the GenRM generates its judgement
    ev = cfg["rm_eval"]
    responses = DATA["rmbench_responses"] + DATA["judgebench_responses"] + DATA["principlebench_items"]
    for name, mc in ev.models.items():
        m = (base_rm if mc.kind in ("scalar", "bt") else pol)
        m = m.as_score_model() if mc.kind == "bt" else m
        g = per_node if mc.device_map == "auto" else 1
        mem = {"weights": 2 * m.params / g,
               "activations": activation_bytes(m, mc.batch_size, mc.max_length, False) / m.layers}
        if mc.kind == "genrm":
            mem["kv_cache"] = mc.batch_size * (mc.max_length + mc.max_new_tokens) * m.kv_bytes_per_token / g
            bw = gpu.hbm_tb_s * 1e12 * ASSUME["decode_bandwidth_efficiency"]
            step = 2 * m.params / bw  # device_map auto: the layers run one GPU after another
            hours = responses * ASSUME["bench_judgement_mean"] / (mc.batch_size / step) / 3600
            part = f"{name}: HF generate, one process, batch {mc.batch_size}, device_map {mc.device_map}"
        else:
            hours = m.forward_flops(responses * ASSUME["rm_mean_tokens"], ASSUME["rm_mean_tokens"]) \
                / (gpu.bf16_tflops * 1e12 * ASSUME["mfu"]) / 3600
            part = f"{name}: scoring, batch {mc.batch_size}, device_map {mc.device_map}"
        rows.append({"stage": "rm_eval", "part": part, "model": m.name, "gpus": g, "nodes": 1,
                     "memory": check(mem, gpu), "hours": hours})

    # alignment: policy GRPO per reward and seed, its servers, then the benchmark answers
    al = cfg["alignment"]
    pol_a = model_of(al.policy.name_or_path) if al.policy.name_or_path in MODELS else pol
    ds_a = read_deepspeed(al.accelerate_config)
    gpus_a = al.num_processes or ds_a["num_processes"]
    servers = {s["kind"]: s for s in server_entries(cluster, "alignment") if stage_needs(s, al)}
    g = al.grpo
    steps_per_generation = trl_field(g, "steps_per_generation", None) or g.gradient_accumulation_steps
    completions = g.per_device_train_batch_size * gpus_a * steps_per_generation
    for reward in al.rewards:
        reward_s, reward_fwd, note = 0.0, False, ""
        rc = al.reward_config(reward)
        if reward == "judge" and "vllm" in servers:
            s = servers["vllm"]
            eng = vllm_engine(pol, gpu, s["tensor_parallel_size"], s["gpu_memory_utilization"], s["max_model_len"])
            engines = s["nodes"] * per_node // s["tensor_parallel_size"]
            d = decode(pol, gpu, eng, completions * g.principles_per_prompt / engines,
                       ASSUME["policy_prompt_mean"] + 1000, ASSUME["judge_completion_mean"], rc.genrm_max_new_tokens,
                       256)
            reward_s = d["seconds"]
            rows.append({"stage": "alignment", "part": f"judge server: GenRM ({s['model']}) by vLLM, TP "
                         f"{s['tensor_parallel_size']} x {engines} engines", "model": pol.name,
                         "gpus": s["nodes"] * per_node, "nodes": s["nodes"], "server": s["name"],
                         "memory": check({"weights": eng["weights"], "kv_cache": eng["kv_cache"],
                                          "vllm overhead": ASSUME["vllm_overhead_gib"] * GIB}, gpu)
                         | {"fits": eng["starts"] and eng["budget"] + ASSUME["runtime_reserve_gib"] * GIB
                            <= gpu.memory_gib * GIB},
                         "decode_tokens_per_s_per_engine": d["tokens_per_s"],
                         "hours": 0.0, "note": "up while the stage runs; its time is inside the GRPO steps"})
            servers_used.append(s["name"])
        elif reward in ("scalar", "bt") and getattr(rc, "score_url", None) and "rlbff-score" in servers:
            s = servers["rlbff-score"]
            rm = base_rm.as_score_model() if reward == "bt" else base_rm
            sc = served_scorer(s, rm, gpu, completions * (1 if reward == "bt" else g.principles_per_prompt),
                               ASSUME["policy_prompt_mean"] + 1000)
            reward_s = sc["seconds"]
            rows.append({"stage": "alignment", "part": f"scorer server: {reward} RM ({s['model']}), "
                         f"{sc['replicas']} replicas x {sc['gpus_per_replica']} GPUs", "model": rm.name,
                         "gpus": s["nodes"] * per_node, "nodes": s["nodes"], "server": s["name"],
                         "memory": sc["memory"], "hours": 0.0,
                         "note": "up while the stage runs; its time is inside the GRPO steps"})
            servers_used.append(s["name"])
        elif reward in ("scalar", "bt"):
            rm = base_rm.as_score_model() if reward == "bt" else base_rm
            note = f"the {reward} RM ({rm.name}) is loaded whole on every training rank"
            reward_s = rm.forward_flops(completions * 2000, 2000) / (gpus_a * gpu.bf16_tflops * 1e12 * ASSUME["mfu"])
        row = grpo("alignment", f"policy GRPO, reward {reward}", g, pol_a, gpus_a, nodes_of(gpus_a), ds_a, gpu,
                   ASSUME["policy_prompt_mean"], ASSUME["policy_completion_mean"], len(al.seeds),
                   servers.get("trl-vllm"), reward_s, reward_forward=False)
        if note:
            rm_bytes = 2 * (base_rm.as_score_model() if reward == "bt" else base_rm).params
            for phase in row["phases"].values():
                phase["parts_gib"][f"{reward} RM copy"] = gib(rm_bytes)
                phase["total_gib"] = round(phase["total_gib"] + gib(rm_bytes), 2)
                phase["fits"] = phase["total_gib"] <= gpu.memory_gib
            row["memory"] = max(row["phases"].values(), key=lambda c: c["total_gib"])
            row["fits"] = all(c["fits"] for c in row["phases"].values())
            row["note"] = note
        rows.append(row)
    pe = al.evaluation
    policies = 1 + len(al.rewards) * len(al.seeds)
    answers = DATA["mtbench_turns"] * ASSUME["mtbench_answer_mean"] + DATA["arena_questions"] * ASSUME["arena_answer_mean"]
    bw = gpu.hbm_tb_s * 1e12 * ASSUME["decode_bandwidth_efficiency"]
    step = 2 * pol_a.params / bw
    rows.append({"stage": "alignment", "part": f"benchmark answers: HF generate, one process, batch {pe.batch_size}, "
                 f"{policies} policies, up to {pe.max_new_tokens} tokens", "model": pol_a.name, "gpus": per_node,
                 "nodes": 1, "memory": check({"weights": 2 * pol_a.params / per_node,
                                              "kv_cache": pe.batch_size * pe.max_new_tokens
                                              * pol_a.kv_bytes_per_token / per_node}, gpu),
                 "hours": policies * answers / (pe.batch_size / step) / 3600,
                 "note": "judged by the official OpenAI judges (API, no GPU of ours)"})
    for r in rows:
        r.setdefault("fits", r["memory"]["fits"])
    stage_nodes = {}
    for r in rows:
        stage_nodes.setdefault(r["stage"], {"train": 0, "servers": 0})
        key = "servers" if r.get("server") else "train"
        stage_nodes[r["stage"]][key] = max(stage_nodes[r["stage"]][key], r["nodes"]) if key == "train" else \
            stage_nodes[r["stage"]][key] + r["nodes"]
    gpu_hours = sum(r["hours"] * r["gpus"] for r in rows)
    server_hours = sum(max((x["hours"] for x in rows if x["stage"] == r["stage"] and not x.get("server")), default=0)
                       * r["gpus"] for r in rows if r.get("server"))
    return {"gpu": gpu.name, "gpu_memory_gib": gpu.memory_gib, "gpus_per_node": per_node, "rows": rows,
            "nodes_per_stage": {k: {**v, "total": v["train"] + v["servers"]} for k, v in stage_nodes.items()},
            "nodes_needed": max(v["train"] + v["servers"] for v in stage_nodes.values()),
            "all_fit": all(r["fits"] for r in rows), "gpu_hours": round(gpu_hours + server_hours),
            "colocate_max_utilization": {r["part"]: max_colocate_utilization(r, gpu) for r in rows
                                         if r.get("phases", {}).get("generation")},
            "servers": sorted(set(servers_used))}


def alternatives(params_path: Path, profile: str, cluster_path: Path, gpu: GPU, report: dict) -> list[str]:
    """For a stage that does not fit: the node count (same per-GPU settings) and accumulation keeping the
    global batch, or the DeepSpeed optimizer offload at the profile's node count."""
    out = []
    cfg = load_profile(params_path, profile)
    per_node = report["gpus_per_node"]
    for r in report["rows"]:
        if r["fits"] and r.get("server") == "extraction" and "API" not in r["part"]:
            continue
        if not r["fits"] and r.get("server") == "extraction":
            out.append(f"{r['part']}: the FP8 weights alone take {r['memory']['parts_gib']['weights (FP8)']} GiB "
                       "per GPU: use a hosted API (principles.extraction.base_url) or larger-memory nodes")
            continue
        if r["fits"] or r["stage"] != "reward_models" or "GRPO" in r["part"]:
            continue
        rmc = cfg["reward_models"]
        c = rmc.scalar if r["part"].startswith("scalar") else rmc.bt
        m = model_of(cfg["assets"].models["reward"].name_or_path)
        m = m.as_score_model() if r["part"].startswith("Bradley") else m
        ds = read_deepspeed(rmc.accelerate_config)
        k = c.per_device_train_batch_size * (2 if m.head == "score" else 1)
        for nodes in range(r["nodes"] + 1, 17):
            if r["global_batch"] % (c.per_device_train_batch_size * nodes * per_node):
                continue  # no whole accumulation keeps the global batch
            mem = check(zero3_memory(m, nodes * per_node, ds, k, c.max_length, 0 if m.head == "score" else c.max_length,
                                     ASSUME["logit_bytes_sft"], c.gradient_checkpointing), gpu)
            if mem["fits"]:
                accum = r["global_batch"] / (c.per_device_train_batch_size * nodes * per_node)
                out.append(f"{r['part']}: {nodes} nodes ({mem['total_gib']} GiB/GPU); gradient_accumulation_steps "
                           f"{accum:.0f} keeps the global batch {r['global_batch']}")
                break
        off = dict(ds, offload_optimizer=True)
        mem = check(zero3_memory(m, r["gpus"], off, k, c.max_length, 0 if m.head == "score" else c.max_length,
                                 ASSUME["logit_bytes_sft"], c.gradient_checkpointing), gpu)
        if mem["fits"]:
            out.append(f"{r['part']}: or {r['nodes']} nodes with accelerate_config multi_node_zero3_offload.yaml "
                       f"(optimizer states in host RAM: {mem['total_gib']} GiB/GPU, "
                       f"{12 * m.params / r['nodes'] / 1e9:.0f} GB host memory per node)")
    return out


# ------------------------------------------------------------------ output


def fmt_h(h: float) -> str:
    return f"{h:,.1f} h" if h >= 1 else f"{h * 60:,.0f} min"


def measured_mfu() -> dict | None:
    if not common.RESULTS.exists():
        return None
    gpu = json.loads(common.RESULTS.read_text()).get("gpu")
    if not gpu:
        return None
    return {name: row["train"]["mfu"] for name, row in gpu.get("models", {}).items()}


def show(report: dict) -> None:
    print(f"== {report['gpu']} nodes ({report['gpus_per_node']} x {report['gpu_memory_gib']} GiB): "
          f"{'every stage fits' if report['all_fit'] else 'SOME STAGE DOES NOT FIT'}; at most "
          f"{report['nodes_needed']} nodes at once; {report['gpu_hours']:,} GPU-hours")
    for r in report["rows"]:
        mem = r["memory"]
        parts = ", ".join(f"{k} {v:g}" for k, v in mem.get("parts_gib", {}).items())
        flag = "fits" if r["fits"] else "DOES NOT FIT"
        extra = ""
        if "vllm" in r and r["vllm"]["mode"] != "off":
            v = r["vllm"]
            extra = (f"; vLLM {v['mode']} TP {v['tensor_parallel_size']} util {v['gpu_memory_utilization']:g}"
                     f"{' sleep' if v.get('sleep_mode') else ''}, KV {v['kv_cache_tokens_per_engine']:,} tokens/engine")
        if "mfu_implied" in r:
            extra += f"; implied MFU {r['mfu_implied']:.2f}"
        if len(r.get("phases", {})) > 1:
            extra += "; phases: " + ", ".join(f"{k} {v['total_gib']:g} GiB" for k, v in r["phases"].items())
        print(f"- [{r['stage']}] {r['part']}: {r['gpus']} GPUs / {r['nodes']} node(s); {mem['total_gib']:g} of "
              f"{mem['capacity_gib']:g} GiB per GPU ({parts}; reserve {ASSUME['runtime_reserve_gib']:g}) {flag}; "
              f"{fmt_h(r['hours'])}{extra}" + (f" ({r['note']})" if r.get("note") else ""))
    for part, u in report["colocate_max_utilization"].items():
        print(f"  largest vllm_gpu_memory_utilization that fits for {part}: {u}")
    for line in report.get("alternatives", []):
        print(f"  alternative: {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", choices=["H100", "H200", "both"], default="both")
    ap.add_argument("--params", default=str(common.REPO_ROOT / "params.yaml"))
    ap.add_argument("--profile", default="full")
    ap.add_argument("--cluster", default=str(common.REPO_ROOT / "configs" / "slurm" / "cluster.yaml"))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    kinds = ["H200", "H100"] if args.gpu == "both" else [args.gpu]
    out = {"profile": args.profile, "assumptions": ASSUME, "data": DATA,
           "models": {k: {"params": m.params, "matmul_params": m.matmul_params} for k, m in MODELS.items()},
           "gpus": {k: vars(g) for k, g in GPUS.items()}, "by_gpu": {}}
    for kind in kinds:
        rep = budget(Path(args.params), args.profile, Path(args.cluster), GPUS[kind])
        rep["alternatives"] = alternatives(Path(args.params), args.profile, Path(args.cluster), GPUS[kind], rep)
        show(rep)
        out["by_gpu"][kind] = rep
    print("assumptions (not measured, not in the paper): " + json.dumps(ASSUME))
    meas = measured_mfu()
    if meas:
        print(f"measured MFU of bench/gpu.py (one GPU): {meas}")
        out["measured_mfu"] = meas
    if not args.no_save:
        common.merge_results("budget", {**out, "machine": common.machine()})


if __name__ == "__main__":
    main()
