"""Secrets of RLHF II on the synthetic world, where the annotators' preference mistakes are known.

Wang et al. 2024 (arXiv 2401.06080) propose, for a Bradley–Terry RM trained on noisy preferences: a preference
strength from an ensemble (§3.1), flipping the weakest pairs, label smoothing and an adaptive margin (§3.2),
contrastive learning (§4.1) and MetaRM (§4.2); :mod:`rlbff_lib.reward_models.bradley_terry` implements them as
options. This ablation asks what the world can answer:

- does the strength find the mistaken pairs? AUROC of −strength against "the label is a mistake" (DeLong
  interval), and the share of mistakes among the weakest 20% (the paper's "likely wrong" stratum; Wilson);
- does each option change the BT's accuracy? Validation pair accuracy against the recorded labels and against the
  labels without mistakes, PrincipleBench items (Yes when the reward exceeds the threshold fitted on the validation
  items, as ``rm_eval`` scores a BT) and pairs (the Yes response scored higher), each with its Wilson interval.

Data: the world of ``params.yaml`` (``data.world``) with ``preference_mistake_rate`` set (annotators who mix up
the two responses; :func:`rlbff_lib.synthetic.world.generate_world` records each pair's mistake in the truth,
read here for evaluation only); its preference pairs split by prompt as the principles stage splits them
(:func:`rlbff_lib.principles.datasets.split_rows`); PrincipleBench and the validation items of a principles run
(``--principles-dir``; the mistakes touch only the preferences, so the items are those of the same world). MetaRM's
meta set: the bench-split pairs' responses, unlabelled (the shifted distribution PrincipleBench draws from).
Every BT is the params' ``reward_models.bt`` with ``--epochs`` and the variant's options, trained in this process.

    python -m rlbff_lib.reward_models.secrets --principles-dir data/principles \\
        --base-model models/assets/base_reward --work /tmp/secrets --out metrics/secrets_ablation.json

Writes ``--out`` (JSON, shown by the report's Secrets-II table) and per-run folders under ``--work`` (a rerun
reuses finished runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Sequence

MISTAKE_RATE = 0.3        # per annotator: ~18% of the smoke world's pairs then carry a mistaken label
WEAKEST_SHARE = 0.2       # Secrets II: the lowest 20% of strength are likely wrong labels
VARIANTS = {              # name -> (label, BTConfig overrides); "meta" is filled with the meta-set file
    "plain": ("plain BT", {}),
    "flip_ensemble": ("flip the weakest 10% (ensemble strength)", {"strength_source": "ensemble", "flip_share": 0.1}),
    "flip_annotators": ("flip the weakest 10% (annotator strength)",
                        {"strength_source": "annotator_spread", "flip_share": 0.1}),
    "smoothing": ("label smoothing α = 0.1", {"label_smoothing": 0.1}),
    "margin": ("adaptive margin (ensemble strength)", {"strength_source": "ensemble", "adaptive_margin": True}),
    # τ = 0.5, not SimCSE's 0.05: at 0.05 the term is ~1e-3 nats on the smoke model (views nearly identical, the
    # other pairs' differences far apart), so it would not train anything
    "contrastive": ("contrastive (SimCSE on differences, β = 0.1, τ = 0.5)",
                    {"contrastive_weight": 0.1, "contrastive_temperature": 0.5}),
    "metarm": ("MetaRM (η = 1e-3, bench responses)", {"metarm_file": "meta"}),
}


# ------------------------------------------------------------------ data


def world_pairs(world_cfg, split_cfg) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """The world's preference pairs per split, and per pair id the truth ``{"mistake", "clean"}`` (the sign the
    annotators would have given without mix-ups: +1 chosen better, −1 rejected better, 0 no preference)."""
    from rlbff_lib.principles.datasets import preference_pairs, split_rows
    from rlbff_lib.synthetic.world import generate_world

    world = generate_world(world_cfg)
    pairs, _ = preference_pairs(world.records)
    truth = {t["id"]: t for t in world.truth if t["response"] == 1}
    facts = {}
    for p in pairs:
        t = truth[p["record_id"]]
        clean = t["preference_without_mistakes"]  # > 0: response2 better; the pair's chosen is response2 iff op > 0
        agree = (clean > 0) == (p["overall_preference"] > 0)
        facts[p["pair_id"]] = {"mistake": bool(t["preference_mistake"]),
                               "clean": 0 if clean == 0 else (1 if agree else -1)}
    return split_rows(pairs, split_cfg), facts


def check_items_match(items: Sequence[dict], pairs: Sequence[dict], path: Path) -> None:
    """The principle items must come from the same world as the pairs (same prompts)."""
    prompts = {json.dumps(p["context"], sort_keys=True) for p in pairs}
    missing = sum(json.dumps(it["context"], sort_keys=True) not in prompts for it in items)
    if missing > len(items) // 2:
        raise ValueError(f"--principles-dir: {missing} of {len(items)} items in {path} come from prompts the world "
                         "of params.yaml does not have (another world's principles run?)")


# ------------------------------------------------------------------ measurement


def unique_scores(model, tokenizer, contexts: Sequence, responses: Sequence[str], max_length: int) -> list[float]:
    """BT rewards of (context, response) inputs, each distinct input scored once (a principle-blind model gives
    equal inputs one score, not scores that differ by the padding of their batches)."""
    from rlbff_lib.reward_models.scorers import Scorer

    keys = [json.dumps([c, r], sort_keys=True) for c, r in zip(contexts, responses)]
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    order = list(first.values())
    scores = Scorer("bt", model, tokenizer, max_length=max_length, batch_size=16)(
        [contexts[i] for i in order], [responses[i] for i in order]).scores
    by_key = dict(zip(first, scores))
    return [by_key[k] for k in keys]


def evaluate(model, tokenizer, max_length: int, val_pairs: Sequence[dict], facts: dict, validation: Sequence[dict],
             bench: Sequence[dict], bench_pairs: Sequence[dict]) -> dict:
    """Pair and PrincipleBench accuracies (percent, Wilson 95%) of one BT model (module docstring)."""
    from rlbff_lib.reward_models.accuracy import item_accuracy, pair_accuracy, rate
    from rlbff_lib.reward_models.bradley_terry import fit_threshold

    def score(rows, field):
        return unique_scores(model, tokenizer, [r["context"] for r in rows], [r[field] for r in rows], max_length)

    chosen, rejected = score(val_pairs, "chosen"), score(val_pairs, "rejected")
    deltas = [c - r for c, r in zip(chosen, rejected)]
    clean = [(d, facts[p["pair_id"]]["clean"]) for d, p in zip(deltas, val_pairs) if facts[p["pair_id"]]["clean"]]
    val_scores = score(validation, "response")
    threshold, fit_acc = fit_threshold(val_scores, [it["label"] for it in validation])
    pb = item_accuracy(score(bench, "response"), bench, threshold)
    pb_pairs = pair_accuracy(score(bench_pairs, "chosen"), score(bench_pairs, "rejected"), bench_pairs)
    return {"validation_pairs": rate([d > 0 for d in deltas]),
            "validation_pairs_clean": rate([d * sign > 0 for d, sign in clean]),
            "principlebench": {k: pb[k] for k in ("accuracy", "ci", "n", "majority", "threshold")},
            "validation_items_fit": 100 * fit_acc,
            "principlebench_pairs": {k: pb_pairs[k] for k in ("accuracy", "ci", "n", "ties")}}


def strength_report(strength: Sequence[float], pairs: Sequence[dict], facts: dict) -> dict:
    """How well low strength points at the mistaken pairs: AUROC of −strength (DeLong 95%), and the share of
    mistakes among the weakest :data:`WEAKEST_SHARE` of pairs against the base rate (Wilson 95%)."""
    from rlbff_lib.core.stats import auroc
    from rlbff_lib.reward_models.accuracy import rate

    mistake = [facts[p["pair_id"]]["mistake"] for p in pairs]
    out = {"auroc": auroc([-s for s, m in zip(strength, mistake) if m], [-s for s, m in zip(strength, mistake) if not m])}
    k = max(1, round(WEAKEST_SHARE * len(pairs)))
    weakest = sorted(range(len(pairs)), key=lambda i: (strength[i], i))[:k]
    out["weakest_share"] = WEAKEST_SHARE
    out["mistakes_in_weakest"] = rate([mistake[i] for i in weakest])
    out["mistakes_overall"] = rate(mistake)
    return out


# ------------------------------------------------------------------ runs


def train_variant(name: str, overrides: dict, base_cfg, model: str, train: list[dict], work: Path, strength,
                  facts: dict, threads: int = 1) -> tuple[dict, float]:
    """Train one variant in ``work/name`` (a finished run is reused); returns (training log, seconds)."""
    import torch

    from rlbff_lib.core.params import build
    from rlbff_lib.reward_models.bradley_terry import BTConfig, train_bt

    cfg = build(BTConfig, {**dataclasses.asdict(base_cfg), **overrides}, "bt")
    folder = work / name
    log_file = folder / "training_log.json"
    if log_file.exists() and (folder / "model" / "model.safetensors").exists():
        return json.loads(log_file.read_text()), 0.0
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.time()
    try:
        pre = strength.get(cfg.strength_source) if cfg.strength_source != "none" else None
        record = train_bt(cfg, model, train, folder, strength=pre)
    finally:
        torch.set_num_threads(before)
    if cfg.flip_share:
        rows = [json.loads(line) for line in (folder / "strength.jsonl").read_text().splitlines()]
        flipped = [r["pair_id"] for r in rows if r["flipped"]]
        record["extra"]["flipped_that_were_mistakes"] = sum(facts[p]["mistake"] for p in flipped)
    return record, time.time() - start


def run_ablation(principles_dir: str | Path, base_model: str | Path, work: str | Path, variants: Sequence[str],
                 mistake_rate: float = MISTAKE_RATE, epochs: float = 1.0, ensemble_size: int = 4,
                 thread_check: bool = True, params_path: str | Path | None = None, limit: int | None = None) -> dict:
    """The ablation of the module docstring; returns the metrics written to ``--out``. ``limit``: at most that many
    training pairs and evaluation items of each kind (a quick trial; None: all)."""
    import torch

    from rlbff_lib.core.io import read_jsonl, write_jsonl
    from rlbff_lib.core.params import load_params, params_file
    from rlbff_lib.models.tokenizer import load_tokenizer
    from rlbff_lib.reward_models.bradley_terry import preference_strength, annotator_strength
    from rlbff_lib.reward_models.scorers import load_model

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"variants: unknown {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    start = time.time()
    params = load_params(params_path or params_file(), ["data", "principles", "reward_models"])
    world_cfg = dataclasses.replace(params["data"].world, preference_mistake_rate=mistake_rate)
    splits, facts = world_pairs(world_cfg, params["principles"].split)
    principles_dir, work = Path(principles_dir), Path(work)
    validation = read_jsonl(principles_dir / "validation.jsonl")
    bench = read_jsonl(principles_dir / "principlebench.jsonl")
    bench_pairs = read_jsonl(principles_dir / "principlebench_pairs.jsonl")
    check_items_match(validation + bench, [p for s in splits.values() for p in s], principles_dir)
    if limit is not None:
        validation, bench, bench_pairs = validation[:limit], bench[:limit], bench_pairs[:limit]
        splits = {s: v[:limit] for s, v in splits.items()}
    work.mkdir(parents=True, exist_ok=True)
    meta_file = work / "meta_set.jsonl"
    write_jsonl(meta_file, [{"context": p["context"], "responses": [p["chosen"], p["rejected"]]}
                            for p in splits["bench"]])
    base_cfg = dataclasses.replace(params["reward_models"].bt, num_train_epochs=epochs, max_steps=-1,
                                   ensemble_size=ensemble_size, save_steps=10_000)
    train, val_pairs = splits["train"], splits["validation"]
    torch.set_num_threads(1)
    strength = {"annotator_spread": (annotator_strength(train), None)}
    t0 = time.time()
    strength["ensemble"] = preference_strength(dataclasses.replace(base_cfg, strength_source="ensemble"),
                                               base_model, train, work / "strength")
    ensemble_seconds = time.time() - t0
    out = {
        "setup": {"world": {"n_prompts": world_cfg.n_prompts, "seed": world_cfg.seed,
                            "preference_mistake_rate": mistake_rate},
                  "pairs": {s: len(v) for s, v in splits.items()},
                  "mistaken_pairs": {s: sum(facts[p["pair_id"]]["mistake"] for p in v) for s, v in splits.items()},
                  "bt": {"num_train_epochs": epochs, "ensemble_size": ensemble_size,
                         "learning_rate": base_cfg.learning_rate, "max_length": base_cfg.max_length,
                         "per_device_train_batch_size": base_cfg.per_device_train_batch_size},
                  "principles_dir": str(principles_dir), "base_model": str(base_model),
                  "items": {"validation": len(validation), "principlebench": len(bench),
                            "principlebench_pairs": len(bench_pairs)},
                  "torch_threads": 1, "ensemble_seconds": round(ensemble_seconds, 1)},
        "strength": {"ensemble": strength_report(strength["ensemble"][0], train, facts),
                     "annotator_spread": strength_report(strength["annotator_spread"][0], train, facts)},
        "variants": {},
        "order": list(variants),
    }
    tokenizer = load_tokenizer(base_model)
    for name in variants:
        label, overrides = VARIANTS[name]
        overrides = {k: (str(meta_file) if v == "meta" else v) for k, v in overrides.items()}
        record, seconds = train_variant(name, overrides, base_cfg, str(base_model), train, work, strength, facts)
        model, _ = load_model("bt", work / name / "model")
        result = evaluate(model, tokenizer, base_cfg.max_length, val_pairs, facts, validation, bench, bench_pairs)
        result.update(label=label, overrides=overrides, train_seconds=round(seconds, 1),
                      train_loss=record.get("train_loss"), n_flipped=record["extra"].get("n_flipped"),
                      flipped_that_were_mistakes=record["extra"].get("flipped_that_were_mistakes"))
        out["variants"][name] = result
        print(f"[secrets] {name}: validation pairs {result['validation_pairs']['accuracy']:.1f}, "
              f"clean {result['validation_pairs_clean']['accuracy']:.1f}, "
              f"PrincipleBench {result['principlebench']['accuracy']:.1f}", flush=True)
    if thread_check and "plain" in variants:
        out["thread_check"] = thread_check_run(base_cfg, str(base_model), train, work, strength, facts, tokenizer,
                                               val_pairs, validation, bench, bench_pairs, out["variants"]["plain"])
    out["setup"]["seconds"] = round(time.time() - start, 1)
    return out


def thread_check_run(base_cfg, model, train, work, strength, facts, tokenizer, val_pairs, validation, bench,
                     bench_pairs, plain: dict) -> dict:
    """The plain BT again with 2 torch threads: are the weights the same bits, and do the numbers hold?"""
    import torch
    from safetensors.torch import load_file

    from rlbff_lib.reward_models.scorers import load_model

    train_variant("plain_2threads", {}, base_cfg, model, train, work, strength, facts, threads=2)
    a = load_file(str(work / "plain" / "model" / "model.safetensors"))
    b = load_file(str(work / "plain_2threads" / "model" / "model.safetensors"))
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    largest = max((float((a[k] - b[k]).abs().max()) for k in differ), default=0.0)
    m, _ = load_model("bt", work / "plain_2threads" / "model")
    result = evaluate(m, tokenizer, base_cfg.max_length, val_pairs, facts, validation, bench, bench_pairs)
    return {"tensors_differing": len(differ), "tensors": len(a), "largest_weight_difference": largest,
            "two_threads": {k: result[k]["accuracy"] for k in ("validation_pairs", "validation_pairs_clean",
                                                                "principlebench", "principlebench_pairs")},
            "one_thread": {k: plain[k]["accuracy"] for k in ("validation_pairs", "validation_pairs_clean",
                                                              "principlebench", "principlebench_pairs")}}


def main(argv: list[str] | None = None) -> int:
    from rlbff_lib.core.io import write_json

    parser = argparse.ArgumentParser(prog="python -m rlbff_lib.reward_models.secrets", description=__doc__.split("\n")[0])
    parser.add_argument("--principles-dir", required=True, help="a principles run (validation, PrincipleBench)")
    parser.add_argument("--base-model", required=True, help="the BT's base model folder")
    parser.add_argument("--work", required=True, help="folder for the runs (not the repository's models/)")
    parser.add_argument("--out", required=True, help="metrics JSON, e.g. metrics/secrets_ablation.json")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--mistake-rate", type=float, default=MISTAKE_RATE)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--ensemble-size", type=int, default=4)
    parser.add_argument("--no-thread-check", action="store_true")
    parser.add_argument("--params", default=None, help="params file (default: the repository's)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many pairs / items of each kind (a trial)")
    args = parser.parse_args(argv)
    out = run_ablation(args.principles_dir, args.base_model, args.work, args.variants, args.mistake_rate,
                       args.epochs, args.ensemble_size, not args.no_thread_check, args.params, args.limit)
    out["setup"]["command"] = "python -m rlbff_lib.reward_models.secrets " + " ".join(argv or __import__("sys").argv[1:])
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
