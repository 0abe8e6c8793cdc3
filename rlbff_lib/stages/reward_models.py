"""The ``reward_models`` stage: train the scalar principle RM, the Bradley–Terry baseline and
the GenRM on the principles stage's data, then measure them (paper §4).

Each trainer runs as an ``accelerate launch`` subprocess (:func:`rlbff_lib.training.launch.launch`)
from a job file. A run lives in ``models/rm_runs/<name>-<key>/`` where ``key`` hashes the
trainer config, the base model and the content of the data files: that folder is a DVC
``persist: true`` output, so an interrupted run resumes from its last checkpoint when the
stage is run again, and a changed config or dataset gets a fresh folder (stale checkpoints
are never resumed). The finished model is published to ``models/reward_models/<name>/``
(hard links, no copy of the weights).

Measurements (``metrics/reward_models.json``):

- accuracy on the validation principle items and on PrincipleBench, per model; the scalar RM
  and the GenRM answer Yes when their log-odds score > 0; the Bradley–Terry model never sees
  the principle, so it scores the response alone and answers Yes when its reward exceeds a
  threshold fitted on the validation items (:func:`rlbff_lib.reward_models.bradley_terry.fit_threshold`, the
  threshold that maximises validation accuracy), the only way a principle-blind model can
  answer a principle question;
- ``principlebench.majority_baseline``: the accuracy of always answering the majority label of
  PrincipleBench;
- calibration of the scalar RM and GenRM: P(Yes) = sigmoid(score) binned against the observed
  Yes rate, with the expected calibration error;
- per-domain and, in the synthetic world, per-property accuracy.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rlbff_lib.reward_models.bradley_terry import BTConfig
from rlbff_lib.reward_models.genrm import GenRMConfig
from rlbff_lib.reward_models.scalar import ScalarRMConfig

MODELS = ("scalar", "bt", "genrm")
ENTRY = {"scalar": "rlbff_lib.reward_models.scalar", "bt": "rlbff_lib.reward_models.bradley_terry", "genrm": "rlbff_lib.reward_models.genrm"}


@dataclass
class RewardModelsConfig:
    """The ``reward_models`` stage.

    train: which models to train (subset of scalar, bt, genrm). scalar / bt / genrm: their
    trainer configs. accelerate_config: a file under ``configs/accelerate/`` (``cpu.yaml`` in
    smoke, ``multi_gpu_zero3.yaml`` / ``multi_node_zero3.yaml`` at scale). num_processes:
    overrides the config's process count (null: the config's). score_batch_size: sequences per
    scoring batch. genrm_eval_limit: items of each evaluation set the GenRM judges (it
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
    genrm_eval_limit: int | None = 60
    calibration_bins: int = 10

    def __post_init__(self):
        bad = [m for m in self.train if m not in MODELS]
        if bad or not self.train:
            raise ValueError(f"train: must be a non-empty subset of {list(MODELS)}, got {self.train}")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"num_processes: must be >= 1 or null, got {self.num_processes}")
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


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_key(config: dict, model: str, files: Sequence[str | Path]) -> str:
    """12 hex digits identifying a training run: its config, base model and data contents."""
    from rlbff_lib.core.io import stable_hash

    model_id = model
    weights = Path(model) / "model.safetensors"
    if weights.exists():
        model_id = file_digest(weights)
    return stable_hash(config, model_id, [file_digest(f) for f in files if f])[:12]


def publish(model_dir: str | Path, target: str | Path) -> Path:
    """Make ``target`` a copy of the finished ``model_dir`` (hard links; replaced atomically)."""
    model_dir, target = Path(model_dir), Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(model_dir, tmp, copy_function=os.link)
    except OSError:  # another filesystem: copy instead
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def train_one(name: str, config, base_model: str, train_file: Path, eval_file: Path | None, runs_dir: Path,
              accelerate_config: str, num_processes: int | None) -> dict:
    """Train model ``name`` in its keyed run folder (resuming); returns the run's training log,
    whose ``model_dir`` is the finished model.

    A run whose ``training_log.json`` names an existing final model is complete and not
    launched again; any other state resumes from the run's newest complete checkpoint.
    """
    import json

    from rlbff_lib.training.launch import TrainJob, launch
    from rlbff_lib.core.progress import log

    cfg = asdict(config)
    run_dir = runs_dir / f"{name}-{run_key(cfg, base_model, [train_file, eval_file])}"
    log_path = run_dir / "training_log.json"
    if log_path.exists():
        record = json.loads(log_path.read_text())
        if Path(record.get("model_dir", "")).is_dir():
            log(f"[{name}] run {run_dir.name} already complete")
            return record
    job = TrainJob(model=str(base_model), train_file=str(train_file), output_dir=str(run_dir), config=cfg,
                   eval_file=str(eval_file) if eval_file else None)
    job_path = job.write(run_dir / "job.json")
    log(f"[{name}] training in {run_dir}")
    launch(ENTRY[name], job_path, accelerate_config, num_processes)
    return json.loads(log_path.read_text())


# ------------------------------------------------------------------ measurement


def majority_accuracy(labels: Sequence[str]) -> float:
    """Accuracy of always answering the majority label."""
    if not labels:
        return float("nan")
    yes = sum(lab == "Yes" for lab in labels)
    return max(yes, len(labels) - yes) / len(labels)


def item_accuracy(scores: Sequence[float], items: Sequence[dict], threshold: float = 0.0) -> dict:
    """Accuracy of "Yes iff score > threshold" on RM items, overall, per domain and per property.

    Returns ``{"accuracy", "n", "majority_baseline", "yes_share", "per_domain": {d: {accuracy, n}},
    "per_property": {p: {accuracy, n}}}`` (accuracies in [0, 1]).
    """
    if len(scores) != len(items):
        raise ValueError(f"scores: {len(scores)} for {len(items)} items")
    right = [(s > threshold) == (it["label"] == "Yes") for s, it in zip(scores, items)]
    groups: dict[str, dict[str, list[bool]]] = {"per_domain": defaultdict(list), "per_property": defaultdict(list)}
    for ok, it in zip(right, items):
        groups["per_domain"][it.get("domain") or "?"].append(ok)
        if it.get("property"):
            groups["per_property"][it["property"]].append(ok)
    labels = [it["label"] for it in items]
    out = {
        "accuracy": sum(right) / len(right) if right else float("nan"),
        "n": len(right),
        "majority_baseline": majority_accuracy(labels),
        "yes_share": labels.count("Yes") / len(labels) if labels else float("nan"),
        "threshold": threshold,
    }
    for key, g in groups.items():
        out[key] = {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(g.items())}
    return out


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


def score_items(scorer: Callable, items: Sequence[dict]):
    """Run ``scorer(conversations, responses, principles)`` on RM items; returns its result."""
    return scorer([it["context"] for it in items], [it["response"] for it in items], [it["principle"] for it in items])


def evaluate_model(name: str, scorer: Callable, validation: Sequence[dict], bench: Sequence[dict],
                   bins: int = 10) -> dict:
    """Validation and PrincipleBench accuracy of one model (see the module docstring for the rule).

    ``scorer`` returns an object with ``.scores`` (and optionally ``.truncated`` / ``.missing``).
    The BT model's threshold is fitted on validation; the others use 0 (their score is log-odds).
    """
    from rlbff_lib.reward_models.bradley_terry import fit_threshold

    val = score_items(scorer, validation)
    ben = score_items(scorer, bench)
    threshold = 0.0
    if name == "bt" and validation:
        threshold, _ = fit_threshold(list(val.scores), [it["label"] for it in validation])
    out = {
        "validation": item_accuracy(val.scores, validation, threshold),
        "principlebench": item_accuracy(ben.scores, bench, threshold),
        "truncated": sum(getattr(val, "truncated", []) or []) + sum(getattr(ben, "truncated", []) or []),
    }
    if hasattr(ben, "missing"):
        out["judgement_missing"] = int(getattr(val, "missing", 0)) + int(ben.missing)
    if name != "bt":
        out["calibration"] = calibration(list(val.scores) + list(ben.scores),
                                         [it["label"] for it in list(validation) + list(bench)], bins)
    out["scores"] = {"validation": list(map(float, val.scores)), "principlebench": list(map(float, ben.scores))}
    return out


def training_summary(record: dict) -> dict:
    """A training log without its curves (what goes into the metrics file)."""
    out = {k: v for k, v in record.items() if k not in ("train", "eval", "stages")}
    if "stages" in record:
        out["stages"] = {s: training_summary(r) for s, r in record["stages"].items()}
    return out


def stage_metrics(results: dict, logs: dict, validation: Sequence[dict], bench: Sequence[dict]) -> dict:
    """``metrics/reward_models.json``: ``principlebench.accuracy.<model>``, ``principlebench.majority_baseline``,
    validation accuracy, the per-model details (per domain / property, calibration) and training summaries."""
    bench_labels = [it["label"] for it in bench]
    return {
        "principlebench": {
            "accuracy": {name: r["principlebench"]["accuracy"] for name, r in results.items()},
            "n": {name: r["principlebench"]["n"] for name, r in results.items()},
            "majority_baseline": majority_accuracy(bench_labels),
            "yes_share": bench_labels.count("Yes") / len(bench_labels) if bench_labels else float("nan"),
        },
        "validation": {
            "accuracy": {name: r["validation"]["accuracy"] for name, r in results.items()},
            "majority_baseline": majority_accuracy([it["label"] for it in validation]),
        },
        "models": {name: {k: v for k, v in r.items() if k != "scores"} for name, r in results.items()},
        "training": {name: training_summary(rec) for name, rec in logs.items()},
    }
