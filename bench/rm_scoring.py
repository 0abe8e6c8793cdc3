"""Scalar principle-RM scoring throughput: the library scorer against a bare forward pass.

    .venv/bin/python bench/rm_scoring.py [--n 192] [--batch-size 16] [--max-length 1024] [--reps 5] [--threads 1]

Inputs: (prompt, response) pairs of RM-Bench (chat and code files of the local benchmarks folder,
realistic mixed lengths), shuffled with a fixed seed, each scored under one principle. Model: the
smoke reward model ``models/assets/base_reward`` when present, else a random Qwen3 of the smoke
``assets`` size with the smoke tokenizer (weights do not change the cost).

Three measurements, interleaved within each repetition (so a burst of load on a shared machine
hits all three alike), medians over ``--reps``:

- ``library``: the scalar :class:`rlbff_lib.reward_models.scorers.Scorer` from raw text: chat-template rendering, tokenization,
  left truncation, length-sorted batches, left padding, forward with ``logits_to_keep=1`` under
  ``torch.inference_mode``, logit(Yes) − logit(No), scores back in input order.
- ``bare``: only the model forward (+ the Yes − No subtraction) on the SAME pre-built padded
  tensors the library builds (same sorting, batches, padding), under ``inference_mode``.
- ``naive``: the bare forward on batches of the same size in random order (no length bucketing),
  each padded to its longest member.

Reported: ``ratio_to_bare_forward`` = bare seconds / library seconds (the library's throughput as
a share of the bare model's; goal >= 0.9), ``bucketed_speedup`` = naive seconds / bare seconds,
sequences/s and real (unpadded) tokens/s of each, padding efficiency (real / padded tokens), and
the time the library spends tokenizing (measured apart, once per repetition).

Threads: one torch thread by default. On a shared, busy 2-core machine, two OpenMP threads spin-wait
for each other whenever another process takes a core, which makes every timing several times
slower and far noisier (the test suite pins one thread for the same reason); ``--threads 0`` keeps
torch's default.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import common  # noqa: F401  (puts the repository on sys.path)
import torch

PRINCIPLE = "is factually correct"


def load_pairs(n: int, seed: int) -> tuple[list[str], list[str], str]:
    """``n`` (prompt, response) pairs from the local RM-Bench chat + code files (shuffled)."""
    from rlbff_lib.evaluation import benchmarks as bm

    data = bm.load_rmbench(domains=("chat", "code"), use_hub=False)
    pairs = [(r["prompt"], text) for r in data.records for text in (*r["chosen"], *r["rejected"])]
    if not pairs:
        raise SystemExit(f"no RM-Bench records found (missing: {data.missing}); set {bm.ENV_VAR}")
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:n]
    return [p for p, _ in pairs], [r for _, r in pairs], ", ".join(data.sources.values())


def load_model():
    """(model, tokenizer, description): the smoke reward model, or a random one of its size."""
    from rlbff_lib.stages.assets import AssetsConfig
    from rlbff_lib.models.lm import build_qwen3, count_parameters, load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    base = common.REPO_ROOT / "models" / "assets" / "base_reward"
    if (base / "model.safetensors").exists():
        model, tok, where = load_causal_lm(base), load_tokenizer(base), "models/assets/base_reward"
    else:
        folder = common.REPO_ROOT / "models" / "assets" / "tokenizer"
        if not folder.exists():
            raise SystemExit("no smoke tokenizer: run `dvc repro assets` first")
        tok = load_tokenizer(folder)
        model = build_qwen3(tok, AssetsConfig().models["reward"], seed=0)
        where = "random Qwen3 of the smoke assets size"
    return model.eval(), tok, f"{where} ({count_parameters(model) / 1e6:.2f}M parameters, {model.dtype})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=192, help="sequences scored per measurement")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=1024,
                    help="the RM's window per input: prompt + answer token (the smoke RM's)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="print only; leave bench/results.json alone")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from rlbff_lib.models.batching import left_pad, length_batches
    from rlbff_lib.reward_models.prompt import as_messages, encode_rm_prompt
    from rlbff_lib.reward_models.scorers import Scorer
    from rlbff_lib.models.tokenizer import answer_token_ids

    prompts, responses, source = load_pairs(args.n, args.seed)
    model, tok, model_desc = load_model()
    yes, no = answer_token_ids(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = model.get_input_embeddings().weight.device

    def tokenize() -> list[list[int]]:
        return [encode_rm_prompt(tok, as_messages(p), r, PRINCIPLE, args.max_length - 1)[0]
                for p, r in zip(prompts, responses)]

    seqs = tokenize()
    lengths = [len(s) for s in seqs]
    sorted_idx = length_batches(lengths, args.batch_size)
    shuffled = list(range(len(seqs)))
    random.Random(args.seed + 1).shuffle(shuffled)
    random_idx = [shuffled[i:i + args.batch_size] for i in range(0, len(shuffled), args.batch_size)]
    bucketed = [left_pad([seqs[i] for i in idx], pad, device) for idx in sorted_idx]
    naive = [left_pad([seqs[i] for i in idx], pad, device) for idx in random_idx]

    def bare(batches) -> list[float]:
        out = []
        with torch.inference_mode():
            for ids, mask, pos in batches:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                               logits_to_keep=1).logits[:, -1, :]
                out += (logits[:, yes] - logits[:, no]).float().cpu().tolist()
        return out

    scorer = Scorer("scalar", model, tok, max_length=args.max_length, batch_size=args.batch_size)

    def library() -> list[float]:
        return scorer(prompts, responses, PRINCIPLE).scores

    # warm-up (allocator, kernels), and a check that both paths compute the same scores
    lib_scores, bare_scores = library(), bare(bucketed)
    order = [i for idx in sorted_idx for i in idx]
    diff = max(abs(lib_scores[i] - s) for i, s in zip(order, bare_scores))
    bare(naive)

    times = {"library": [], "bare": [], "naive": [], "tokenize": []}
    for rep in range(args.reps):
        steps = [("library", library), ("bare", lambda: bare(bucketed)), ("naive", lambda: bare(naive)),
                 ("tokenize", tokenize)]
        if rep % 2:  # alternate the order too, so neither path always runs first
            steps = steps[2::-1] + steps[3:]
        for name, fn in steps:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    real = sum(lengths)
    padded = {"bucketed": sum(b[0].numel() for b in bucketed), "naive": sum(b[0].numel() for b in naive)}
    ratio = med["bare"] / med["library"]
    speedup = med["naive"] / med["bare"]
    result = {
        "ratio_to_bare_forward": round(ratio, 4),
        "bucketed_speedup": round(speedup, 4),
        "goal_ratio_to_bare_forward": 0.9,
        "library_tokenize_share": round(med["tokenize"] / med["library"], 4),
        "sequences": len(seqs), "batch_size": args.batch_size, "max_length": args.max_length,
        "real_tokens": real, "mean_tokens": round(real / len(seqs), 1), "min_tokens": min(lengths),
        "max_tokens": max(lengths), "truncated_inputs": sum(l >= args.max_length - 1 for l in lengths),
        "padding_efficiency": {k: round(real / v, 4) for k, v in padded.items()},
        "throughput": {k: {"sequences_per_s": round(len(seqs) / med[k], 2), "tokens_per_s": round(real / med[k], 1)}
                       for k in ("library", "bare", "naive")},
        "timings": {k: common.summary(v) for k, v in times.items()},
        "max_abs_score_difference_library_vs_bare": diff,
        "model": model_desc, "inputs": f"RM-Bench chat+code (prompt, response) pairs from {source}",
        "principle": PRINCIPLE, "reps": args.reps,
        "machine": common.machine(torch.get_num_threads()),
    }
    common.show("rm_scoring", {"ratio_to_bare_forward": ratio, "bucketed_speedup": speedup},
                {"library": f"{len(seqs) / med['library']:.1f} seq/s, {real / med['library']:.0f} tok/s",
                 "bare": f"{len(seqs) / med['bare']:.1f} seq/s, {real / med['bare']:.0f} tok/s",
                 "naive": f"{len(seqs) / med['naive']:.1f} seq/s",
                 "tokenize share of library time": f"{med['tokenize'] / med['library']:.3f}",
                 "padding efficiency": result["padding_efficiency"], "model": model_desc,
                 "machine": result["machine"]})
    if not args.no_save:
        common.merge_results("rm_scoring", result)


if __name__ == "__main__":
    main()
