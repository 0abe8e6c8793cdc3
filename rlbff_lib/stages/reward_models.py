"""The ``reward_models`` stage: train the scalar principle RM, the Bradley–Terry baseline and
the GenRM on the principles stage's data, then measure them (paper §4).

Each trainer runs as an ``accelerate launch`` subprocess (:func:`rlbff_lib.training.launch.launch`)
from a job file. A run lives in ``models/rm_runs/<name>-<key>/`` where ``key`` hashes the
trainer config, the base model and the content of the data files (:mod:`rlbff_lib.training.runs`): that folder is a DVC
``persist: true`` output, so an interrupted run resumes from its last checkpoint when the
stage is run again, and a changed config or dataset gets a fresh folder (stale checkpoints
are never resumed). The finished model is published to ``models/reward_models/<name>/``
(hard links, no copy of the weights).

Measurements (``outputs/details/reward_models.json``; the headline in ``metrics/reward_models.json``), training
diagnostics on the validation items only (PrincipleBench is scored and published once, by the ``rm_eval`` stage):

- validation accuracy per model, percent with its 95% Wilson interval, by the rule of
  :mod:`rlbff_lib.reward_models.accuracy` (each model through
  :func:`rlbff_lib.reward_models.scorers.load_scorer`, on the window it was trained on); the scalar
  RM and the GenRM answer Yes when their log-odds score > 0; the Bradley–Terry model never sees
  the principle, so it answers Yes when its reward exceeds the threshold that maximises accuracy
  on these same items (:func:`rlbff_lib.reward_models.bradley_terry.fit_threshold`: in-sample, so
  optimistic), the only way a principle-blind model can answer a principle question;
- ``validation.majority_baseline``: the accuracy of always answering the majority label;
- calibration of the scalar RM and GenRM: P(Yes) = sigmoid(score) binned against the observed
  Yes rate, with the expected calibration error;
- per-domain and, in the synthetic world, per-property accuracy.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rlbff_lib.reward_models.bradley_terry import BTConfig
from rlbff_lib.reward_models.genrm import GenRMConfig
from rlbff_lib.reward_models.scalar import ScalarRMConfig
from rlbff_lib.training.runs import publish

MODELS = ("scalar", "bt", "genrm")
ENTRY = {"scalar": "rlbff_lib.reward_models.scalar", "bt": "rlbff_lib.reward_models.bradley_terry", "genrm": "rlbff_lib.reward_models.genrm"}


@dataclass
class RewardModelsConfig:
    """The ``reward_models`` stage.

    train: which models to train (subset of scalar, bt, genrm). scalar / bt / genrm: their
    trainer configs. accelerate_config: a file under ``configs/accelerate/`` (``cpu.yaml`` in
    smoke, ``multi_gpu_zero3.yaml`` / ``multi_node_zero3.yaml`` at scale). num_processes:
    overrides the config's process count (null: the config's). parallel_runs: trainings at once (CPU: they
    share the cores; GPU: 1). score_batch_size: sequences per scoring batch. genrm_eval_limit: items of each evaluation set the GenRM judges (it
    generates its reasoning, ~100x the scalar RM's cost; null: all). calibration_bins: bins of
    the calibration plot.
    """

    train: list[str] = field(default_factory=lambda: list(MODELS))
    scalar: ScalarRMConfig = field(default_factory=ScalarRMConfig)
    bt: BTConfig = field(default_factory=BTConfig)
    genrm: GenRMConfig = field(default_factory=GenRMConfig)
    accelerate_config: str = "cpu.yaml"
    num_processes: int | None = None
    score_batch_size: int = 16
    parallel_runs: int = 2
    genrm_eval_limit: int | None = 60
    calibration_bins: int = 10

    def __post_init__(self):
        bad = [m for m in self.train if m not in MODELS]
        if bad or not self.train:
            raise ValueError(f"train: must be a non-empty subset of {list(MODELS)}, got {self.train}")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"num_processes: must be >= 1 or null, got {self.num_processes}")
        if self.parallel_runs < 1:
            raise ValueError(f"parallel_runs: must be >= 1, got {self.parallel_runs}")
        if self.score_batch_size < 1:
            raise ValueError(f"score_batch_size: must be >= 1, got {self.score_batch_size}")
        if self.genrm_eval_limit is not None and self.genrm_eval_limit < 1:
            raise ValueError(f"genrm_eval_limit: must be >= 1 or null, got {self.genrm_eval_limit}")
        if self.calibration_bins < 2:
            raise ValueError(f"calibration_bins: must be >= 2, got {self.calibration_bins}")
        from rlbff_lib.training.launch import ACCELERATE_CONFIGS

        if not (Path(self.accelerate_config).is_file() or (ACCELERATE_CONFIGS / self.accelerate_config).is_file()):
            raise ValueError(f"accelerate_config: {self.accelerate_config} not found (nor under {ACCELERATE_CONFIGS})")


# ------------------------------------------------------------------ runs


def train_one(name: str, config, base_model: str, train_file: Path, eval_file: Path | None, runs_dir: Path,
              accelerate_config: str, num_processes: int | None, env: dict[str, str] | None = None) -> dict:
    """Train model ``name`` in its keyed run folder (:mod:`rlbff_lib.training.runs`); returns the run's training
    log, whose ``model_dir`` is the finished model. A finished run is not launched again; any other state resumes
    from the run's newest complete checkpoint. env: extra environment of the training subprocess."""
    from rlbff_lib.training.launch import TrainJob
    from rlbff_lib.training.runs import launch_or_reuse, run_dir

    cfg = asdict(config)
    folder = run_dir(runs_dir, name, cfg, base_model, [train_file, eval_file])
    job = TrainJob(model=str(base_model), train_file=str(train_file), output_dir=str(folder), config=cfg,
                   eval_file=str(eval_file) if eval_file else None)
    return launch_or_reuse(ENTRY[name], job, accelerate_config=accelerate_config, num_processes=num_processes,
                           env=env, prefix=f"[{name}] ", name=name)


def train_models(cfg: RewardModelsConfig, principles_dir: str | Path, runs_dir: str | Path,
                 published_dir: str | Path) -> dict[str, dict]:
    """Train each model of ``cfg.train`` (:func:`train_one`, ``cfg.parallel_runs`` at once) on the ``principles``
    stage's files and publish it to ``published_dir/<name>``; returns name -> training log. In a notebook the runs'
    logs are one line (:func:`rlbff_lib.core.progress.collapsed`). The scalar RM and BT start from the base reward
    model, the GenRM from the base policy, its warm-start reasoning taken from the extraction's evidence
    (``candidates.jsonl``)."""
    from concurrent.futures import ThreadPoolExecutor

    from rlbff_lib.core.io import read_jsonl, write_jsonl
    from rlbff_lib.core.progress import collapsed, log
    from rlbff_lib.models.lm import base_model

    P, runs, published = Path(principles_dir), Path(runs_dir), Path(published_dir)
    jobs = {}  # name -> (config, base model, train file, eval file)
    for name in [m for m in MODELS if m in cfg.train]:
        if name == "scalar":
            jobs[name] = (cfg.scalar, base_model("reward"), P / "train.jsonl", P / "validation.jsonl")
        elif name == "bt":
            jobs[name] = (cfg.bt, base_model("reward"), P / "pairs_train.jsonl", P / "pairs_validation.jsonl")
        else:
            from rlbff_lib.reward_models.genrm import attach_reasoning

            genrm_train, counts = attach_reasoning(read_jsonl(P / "train.jsonl"), read_jsonl(P / "candidates.jsonl"))
            log(f"GenRM warm-start reasoning: {counts}")
            write_jsonl(runs / "inputs" / "genrm_train.jsonl", genrm_train)
            write_jsonl(runs / "inputs" / "genrm_eval.jsonl",
                        subsample(read_jsonl(P / "validation.jsonl"), cfg.genrm_eval_limit))
            jobs[name] = (cfg.genrm, base_model("policy"), runs / "inputs" / "genrm_train.jsonl",
                          runs / "inputs" / "genrm_eval.jsonl")
    # CPU: the runs share the cores (a tiny model trains no faster on more threads); GPU: keep parallel_runs 1
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // cfg.parallel_runs))}

    def one(name):
        config, base, train_file, eval_file = jobs[name]
        return train_one(name, config, base, train_file, eval_file, runs, cfg.accelerate_config, cfg.num_processes,
                         env=env)

    with collapsed(f"training {', '.join(jobs)}"), ThreadPoolExecutor(cfg.parallel_runs) as pool:
        logs = dict(zip(jobs, pool.map(one, jobs)))
    for name, record in logs.items():
        publish(record["model_dir"], published / name)
    return logs


# ------------------------------------------------------------------ measurement


def calibration(scores: Sequence[float], labels: Sequence[str], bins: int = 10) -> dict:
    """Reliability of P(Yes) = sigmoid(score): per equal-width bin of predicted probability,
    the mean prediction, the observed Yes rate and the count; plus the expected calibration
    error (ECE, count-weighted mean |observed − predicted|)."""
    rows = [{"lo": b / bins, "hi": (b + 1) / bins, "n": 0, "sum_p": 0.0, "yes": 0} for b in range(bins)]
    for s, lab in zip(scores, labels):
        p = 1 / (1 + math.exp(-max(-50.0, min(50.0, s))))
        r = rows[min(bins - 1, int(p * bins))]
        r["n"] += 1
        r["sum_p"] += p
        r["yes"] += lab == "Yes"
    out, ece, n = [], 0.0, max(1, len(scores))
    for r in rows:
        if r["n"]:
            pred, obs = r["sum_p"] / r["n"], r["yes"] / r["n"]
            ece += r["n"] / n * abs(obs - pred)
            out.append({"lo": r["lo"], "hi": r["hi"], "n": r["n"], "predicted": pred, "observed": obs})
    return {"bins": out, "ece": ece}


def subsample(items: Sequence[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """At most ``limit`` items, a deterministic sample keeping the input order (all when None)."""
    import random

    if limit is None or len(items) <= limit:
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def scorer_settings(cfg: RewardModelsConfig, name: str) -> dict:
    """``load_scorer`` arguments of model ``name``: the window it was trained on (scalar and bt:
    their ``max_length``; the GenRM: its GRPO prompt length plus the evaluation's reasoning budget)."""
    if name == "genrm":
        g = cfg.genrm
        return {"max_length": g.grpo.max_prompt_length + g.eval_max_new_tokens, "max_new_tokens": g.eval_max_new_tokens,
                "batch_size": g.eval_batch_size}
    return {"max_length": getattr(cfg, name).max_length, "batch_size": cfg.score_batch_size}


def evaluate_model(name: str, scorer: Callable, validation: Sequence[dict], bins: int = 10) -> dict:
    """Validation accuracy of one model (see the module docstring for the rule).

    ``scorer(conversations, responses, principles)`` returns an object with ``.scores`` (and
    optionally ``.truncated`` / ``.missing``). Returns ``{"validation": item_accuracy(...,
    per_property=True), "truncated", ["judgement_missing"], ["calibration"], "scores"}``.
    """
    from rlbff_lib.reward_models.accuracy import item_accuracy
    from rlbff_lib.reward_models.bradley_terry import fit_threshold

    val = scorer([it["context"] for it in validation], [it["response"] for it in validation],
                 [it["principle"] for it in validation])
    threshold = 0.0
    if name == "bt" and validation:
        threshold, _ = fit_threshold(list(val.scores), [it["label"] for it in validation])
    out = {"validation": item_accuracy(list(val.scores), validation, threshold, per_property=True),
           "truncated": sum(getattr(val, "truncated", []) or [])}
    if hasattr(val, "missing"):
        out["judgement_missing"] = int(val.missing)
    if name != "bt":
        out["calibration"] = calibration(list(val.scores), [it["label"] for it in validation], bins)
    out["scores"] = list(map(float, val.scores))
    return out


def measure(cfg: RewardModelsConfig, names: Sequence[str], validation: Sequence[dict],
            models_dir: str | Path = "models/reward_models") -> dict:
    """:func:`evaluate_model` of each published model in ``names`` (loaded one at a time, then
    released); the GenRM on ``genrm_eval_limit`` validation items (it generates)."""
    from rlbff_lib.core.progress import log
    from rlbff_lib.reward_models.scorers import load_scorer

    results = {}
    for name in names:
        items = subsample(validation, cfg.genrm_eval_limit) if name == "genrm" else list(validation)
        scorer = load_scorer(name, Path(models_dir) / name, **scorer_settings(cfg, name))
        try:
            results[name] = evaluate_model(name, scorer, items, cfg.calibration_bins)
        finally:
            scorer.release()
        v = results[name]["validation"]
        log(f"{name}: validation accuracy {v['accuracy']:.1f} [{v['ci'][0]:.1f}, {v['ci'][1]:.1f}] on {v['n']} items")
    return results


def training_summary(record: dict) -> dict:
    """A training log without its curves (what goes into the metrics file)."""
    out = {k: v for k, v in record.items() if k not in ("train", "eval", "stages")}
    if "stages" in record:
        out["stages"] = {s: training_summary(r) for s, r in record["stages"].items()}
    return out


def stage_metrics(results: dict, logs: dict, validation: Sequence[dict]) -> dict:
    """``outputs/details/reward_models.json``: ``validation.{accuracy,ci,n}.<model>`` (percent, 95% Wilson),
    ``validation.majority_baseline``, the per-model details (per domain / property, calibration)
    and training summaries. No PrincipleBench number: the ``rm_eval`` stage publishes it."""
    from rlbff_lib.reward_models.accuracy import majority_share

    return {
        "validation": {
            "accuracy": {name: r["validation"]["accuracy"] for name, r in results.items()},
            "ci": {name: r["validation"]["ci"] for name, r in results.items()},
            "n": {name: r["validation"]["n"] for name, r in results.items()},
            "majority_baseline": majority_share([it["label"] for it in validation]) if validation else None,
        },
        "models": {name: {k: v for k, v in r.items() if k != "scores"} for name, r in results.items()},
        "training": {name: training_summary(rec) for name, rec in logs.items()},
    }


def headline_metrics(metrics: dict) -> dict:
    """``metrics/reward_models.json`` from :func:`stage_metrics`: per model the validation accuracy (percent) with
    its 95% Wilson interval and item count, and the majority-label baseline (percent)."""
    from rlbff_lib.core.stage import with_ci

    v = metrics.get("validation") or {}
    ci, n = v.get("ci") or {}, v.get("n") or {}
    return {"validation": {name: with_ci(acc, ci.get(name), "accuracy") | {"n": n.get(name)}
                           for name, acc in (v.get("accuracy") or {}).items()},
            "validation_majority": v.get("majority_baseline")}


# ------------------------------------------------------------------ model cards


def model_card_facts(name: str, cfg: RewardModelsConfig, log: dict, result: dict | None, profile: str,
                     majority: tuple[float, int] | None = None) -> dict:
    """The facts of :func:`rlbff_lib.training.model_card.model_card` for published model ``name``: its run's
    ``job.json`` (:func:`~rlbff_lib.training.model_card.run_facts`: base model, data files), its trainer config,
    training log and validation accuracy (percent; ``majority``: the majority-label baseline, percent, and its
    item count)."""
    from rlbff_lib.reward_models.prompt import PRINCIPLE_PROMPT
    from rlbff_lib.training.model_card import run_facts

    run = run_facts(log["model_dir"])
    stages = log.get("stages") or {"": log}
    training = {f"{s + '.' if s else ''}{k}": r.get(k) for s, r in stages.items()
                for k in ("global_step", "train_loss", "world_size", "resumed_from") if k in r}
    accuracy = []
    if result:
        v = result["validation"]
        note = {"bt": "Yes when the reward exceeds the threshold fitted on these items (in-sample)",
                "genrm": f"a seeded subsample of {v['n']} validation items (genrm_eval_limit)"}.get(name, "Yes when score > 0")
        accuracy.append({"set": "validation items (principle, response, Yes/No)", "value": v["accuracy"],
                         "ci": v.get("ci"), "n": v["n"], "unit": "%", "note": note + "; 95% Wilson interval"})
        if majority is not None:
            accuracy.append({"set": "always the majority label (baseline)", "value": majority[0], "n": majority[1],
                             "unit": "%", "note": "on all validation items"})
    return {"kind": name, "name": {"scalar": "Scalar principle RM", "bt": "Bradley–Terry RM", "genrm": "GenRM"}[name],
            "principle_prompt": PRINCIPLE_PROMPT, "base_model": run.get("base_model"), "profile": profile,
            "stage": "the `reward_models` stage (`notebooks/reward_models.ipynb`, `rlbff_lib/stages/reward_models.py`)",
            "data": run.get("data"), "training": training, "parameters": asdict(getattr(cfg, name)), "accuracy": accuracy,
            "notes": ["RM-Bench, JudgeBench and PrincipleBench accuracies (with intervals) are measured by the "
                      "`rm_eval` stage: `metrics/rm_eval.json` (details: `outputs/details/rm_eval.json`)."]}


def write_model_cards(cfg: RewardModelsConfig, logs: dict, results: dict, models_dir: str | Path,
                      validation: Sequence[dict] = (), profile: str | None = None) -> list[Path]:
    """A README.md model card (:mod:`rlbff_lib.training.model_card`) in each published model folder
    ``models_dir/<name>``; ``profile`` defaults to the params file's."""
    from rlbff_lib.core.params import params_file, read_raw
    from rlbff_lib.reward_models.accuracy import majority_share
    from rlbff_lib.training.model_card import write_model_card

    profile = profile or read_raw(params_file()).get("profile", "smoke")
    majority = (majority_share([it["label"] for it in validation]), len(validation)) if validation else None
    return [write_model_card(Path(models_dir) / name,
                             model_card_facts(name, cfg, log, results.get(name), profile, majority))
            for name, log in logs.items()]
