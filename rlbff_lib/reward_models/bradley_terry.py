"""The Bradley–Terry baseline: a pairwise scalar reward model (TRL ``RewardTrainer``).

A causal-LM checkpoint gets a scalar head (``AutoModelForSequenceClassification`` with
``num_labels=1``: TRL loads the model from its path with a fresh ``score`` layer) and reads
the reward at the last token of ``conversation + assistant response`` (no principle).
Pairs come from HelpSteer3 preferences: ``{"pair_id", "context", "chosen", "rejected",
"overall_preference", "annotator_spread", ...}``.

Loss per pair, with Δ = r(chosen) − r(rejected), m the margin and α the label smoothing::

    L = −[(1 − α) log σ(Δ − m) + α log σ(−(Δ − m))]        (α = 0, m = 0: plain BT)

Options from Secrets of RLHF Part II (reference §7), each off by default:

- preference strength per pair (``strength_source``): ``ensemble`` trains ``ensemble_size``
  plain BT models on shuffled orders (seeds ``seed+1 .. seed+M``: data order and head init)
  and takes, per pair, the mean and population std of d_m = r_m(chosen) − r_m(rejected);
  ``annotator_spread`` uses HelpSteer3's annotators instead: strength = |overall_preference|
  − annotator_spread (the mean preference minus one standard deviation of the individual
  scores: high only when the annotators agree that the preference is strong).
- ``flip_share``: swap chosen/rejected of that share of pairs with the lowest strength
  (their strength changes sign too).
- ``label_smoothing``: α above.
- ``adaptive_margin``: m = ``margin_scale`` × strength, passed to TRL as its ``margin`` column.

Command line: ``python -m rlbff_lib.reward_models.bradley_terry train --config JOB.json`` (see :mod:`rlbff_lib.training.launch`).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Sequence

from rlbff_lib.training.launch import TrainConfig, TrainJob, job_cli, quiet_libraries, run_trainer
from rlbff_lib.reward_models.prompt import encode_response

STRENGTH_SOURCES = ("none", "ensemble", "annotator_spread")


@dataclass
class BTConfig(TrainConfig):
    """Bradley–Terry training (fields of :class:`rlbff_lib.training.launch.TrainConfig` plus the options).

    per_device_train_batch_size counts pairs (each pair is two sequences).
    strength_source: ``none``, ``ensemble`` or ``annotator_spread`` (module docstring).
    ensemble_size: M reward models for ``ensemble`` (Secrets of RLHF II: 10).
    flip_share: share of pairs, weakest first, whose labels are swapped (0: none).
    label_smoothing: α in [0, 0.5). adaptive_margin: use m = margin_scale × strength.
    margin_scale: strength → margin (reward units per strength unit).
    center_rewards_coefficient: TRL's penalty on (r_c + r_r)² (None: off).
    """

    trl_kind: ClassVar[str] = "reward"  # trl.RewardConfig

    learning_rate: float = 3e-3
    num_train_epochs: float = 2.0
    strength_source: Literal["none", "ensemble", "annotator_spread"] = "none"
    ensemble_size: int = 10
    flip_share: float = 0.0
    label_smoothing: float = 0.0
    adaptive_margin: bool = False
    margin_scale: float = 1.0
    center_rewards_coefficient: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.strength_source not in STRENGTH_SOURCES:
            raise ValueError(f"strength_source: must be one of {list(STRENGTH_SOURCES)}, got {self.strength_source!r}")
        if self.ensemble_size < 2:
            raise ValueError(f"ensemble_size: must be >= 2, got {self.ensemble_size}")
        if not 0 <= self.flip_share < 1:
            raise ValueError(f"flip_share: must be in [0, 1), got {self.flip_share}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing: must be in [0, 0.5), got {self.label_smoothing}")
        if self.margin_scale < 0:
            raise ValueError(f"margin_scale: must be >= 0, got {self.margin_scale}")
        if (self.flip_share > 0 or self.adaptive_margin) and self.strength_source == "none":
            raise ValueError("strength_source: flip_share and adaptive_margin need a preference strength "
                             "('ensemble' or 'annotator_spread'), got 'none'")
        if self.center_rewards_coefficient is not None and self.center_rewards_coefficient < 0:
            raise ValueError(f"center_rewards_coefficient: must be >= 0 or null, got {self.center_rewards_coefficient}")

    def plain(self, seed: int) -> "BTConfig":
        """The same training without options, with another seed (an ensemble member)."""
        return dataclasses.replace(self, seed=seed, strength_source="none", flip_share=0.0, label_smoothing=0.0,
                                   adaptive_margin=False)


# ------------------------------------------------------------------ loss


def bt_loss(delta, margin=None, label_smoothing: float = 0.0):
    """Mean BT loss over pairs.

    delta: Tensor [B], r(chosen) − r(rejected). margin: Tensor [B] or None (0).
    Returns −[(1−α) log σ(Δ − m) + α log σ(−(Δ − m))] averaged over B (nats per pair).
    """
    import torch.nn.functional as F

    z = delta if margin is None else delta - margin
    loss = -F.logsigmoid(z)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)
    return loss.mean()


@functools.cache
def reward_trainer_class():
    """``BTRewardTrainer`` (built on first use, so importing this module does not import TRL)."""
    from trl import RewardTrainer

    class BTRewardTrainer(RewardTrainer):
        """TRL's ``RewardTrainer`` with :func:`bt_loss` (label smoothing) in ``compute_loss``.

        TRL 1.16's own loss is −log σ(Δ − margin) (+ the centring term); this keeps its
        margin column, centring term and logged metrics and adds α.
        """

        def __init__(self, *args, label_smoothing: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.label_smoothing = label_smoothing

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            mode = "train" if self.model.training else "eval"
            margin = inputs.pop("margin", None)
            inputs["use_cache"] = False
            outputs = model(**inputs)
            chosen, rejected = outputs.logits.squeeze(-1).chunk(2)
            loss = bt_loss(chosen - rejected, margin, self.label_smoothing)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * ((chosen + rejected) ** 2).mean()
            acc = self.accelerator
            if mode == "train":
                tokens = acc.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += tokens // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            with torch.no_grad():
                self._metrics[mode]["accuracy"].append(
                    acc.gather_for_metrics((chosen > rejected).float().mean()).mean().item())
                self._metrics[mode]["margin"].append(acc.gather_for_metrics((chosen - rejected).mean()).mean().item())
                self._metrics[mode]["mean_reward"].append(acc.gather(outputs.logits).mean().item())
            return (loss, outputs) if return_outputs else loss

    return BTRewardTrainer


# ------------------------------------------------------------------ preference strength and flipping


def annotator_strength(pairs: Sequence[dict]) -> list[float]:
    """Per pair: |overall_preference| − annotator_spread (Likert points, −3..3 scale)."""
    return [abs(p["overall_preference"]) - p["annotator_spread"] for p in pairs]


def ensemble_strength(deltas: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """deltas [M][N] (d_m per model and pair) → (mean [N], population std [N])."""
    cols = list(zip(*deltas))
    return [statistics.fmean(c) for c in cols], [statistics.pstdev(c) for c in cols]


def flip_weakest(pairs: Sequence[dict], strength: Sequence[float], share: float
                 ) -> tuple[list[dict], list[float], list[int]]:
    """Swap chosen/rejected of the ``share`` of pairs with the lowest strength.

    Returns (pairs, strength with the flipped ones negated, indices flipped). Ties in
    strength are broken by position, so the result is deterministic.
    """
    k = int(round(share * len(pairs)))
    weakest = sorted(range(len(pairs)), key=lambda i: (strength[i], i))[:k]
    flipped = set(weakest)
    out, s = [], []
    for i, (p, st) in enumerate(zip(pairs, strength)):
        if i in flipped:
            p = {**p, "chosen": p["rejected"], "rejected": p["chosen"], "flipped": True}
            st = -st
        out.append(p)
        s.append(st)
    return out, s, sorted(weakest)


# ------------------------------------------------------------------ data and training


def build_pair_rows(pairs: Sequence[dict], tokenizer, max_length: int, margins: Sequence[float] | None = None
                    ) -> tuple[list[dict], int]:
    """Pairs → TRL-ready rows ``{"chosen_ids", "rejected_ids"[, "margin"]}``, and how many were cut."""
    rows, cut = [], 0
    for i, p in enumerate(pairs):
        c, tc = encode_response(tokenizer, p["context"], p["chosen"], max_length)
        r, tr = encode_response(tokenizer, p["context"], p["rejected"], max_length)
        cut += tc or tr
        row = {"chosen_ids": c, "rejected_ids": r}
        if margins is not None:
            row["margin"] = float(margins[i])
        rows.append(row)
    return rows, cut


def _fit(cfg: BTConfig, model: str | Path, rows: list[dict], eval_rows: list[dict], output_dir: Path, tokenizer,
         name: str, extra: dict, callbacks: list | None):
    """Build the trainer and run it; returns (training log, trainer)."""
    from datasets import Dataset

    from rlbff_lib.training.trl_config import trl_config

    args = trl_config(cfg, output_dir / "checkpoints", has_eval=bool(eval_rows))
    trainer = reward_trainer_class()(
        model=str(model),
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows and cfg.eval_steps > 0 else None,
        processing_class=tokenizer,
        callbacks=callbacks,
        label_smoothing=cfg.label_smoothing,
    )
    return run_trainer(trainer, output_dir, name, extra), trainer


def pair_deltas(model, tokenizer, pairs: Sequence[dict], batch_size: int, max_length: int) -> list[float]:
    """r(chosen) − r(rejected) per pair under a BT model (:class:`rlbff_lib.reward_models.scorers.Scorer`)."""
    from rlbff_lib.reward_models.scorers import Scorer

    scorer = Scorer("bt", model, tokenizer, max_length=max_length, batch_size=batch_size)
    conv = [p["context"] for p in pairs]
    chosen = scorer(conv, [p["chosen"] for p in pairs]).scores
    rejected = scorer(conv, [p["rejected"] for p in pairs]).scores
    return [c - r for c, r in zip(chosen, rejected)]


def preference_strength(cfg: BTConfig, model: str | Path, pairs: Sequence[dict], output_dir: str | Path
                        ) -> tuple[list[float], list[float] | None]:
    """(strength [N], uncertainty [N] or None) of ``cfg.strength_source`` for ``pairs``.

    ``ensemble`` trains its members under ``output_dir/ensemble/member_<m>`` (each resumes
    like any run) and scores every pair with each member on every process; it needs whole
    (not ZeRO-3-sharded) weights, so run it without DeepSpeed.
    """
    if cfg.strength_source == "annotator_spread":
        return annotator_strength(pairs), None
    if cfg.strength_source != "ensemble":
        raise ValueError(f"strength_source: {cfg.strength_source!r} gives no strength")
    from rlbff_lib.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model)
    rows, _ = build_pair_rows(pairs, tokenizer, cfg.max_length)
    deltas = []
    for m in range(cfg.ensemble_size):
        member_dir = Path(output_dir) / "ensemble" / f"member_{m}"
        _, trainer = _fit(cfg.plain(cfg.seed + 1 + m), model, rows, [], member_dir, tokenizer, f"bt_member_{m}", {},
                          None)
        if trainer.is_deepspeed_enabled:
            raise ValueError("strength_source: 'ensemble' scores with whole weights; run it without DeepSpeed")
        member = trainer.accelerator.unwrap_model(trainer.model)
        deltas.append(pair_deltas(member, tokenizer, pairs, cfg.eval_batch_size, cfg.max_length))
    return ensemble_strength(deltas)


def train_bt(cfg: BTConfig, model: str | Path, train_pairs: Sequence[dict], output_dir: str | Path,
             eval_pairs: Sequence[dict] | None = None, callbacks: list | None = None) -> dict:
    """Train the BT baseline on preference pairs; returns the training log.

    Writes ``output_dir/model`` (sequence-classification head, safetensors + tokenizer),
    checkpoints, ``training_log.json`` and, with a strength source, ``strength.jsonl``
    (per pair: strength, uncertainty, flipped). With ``eval_pairs``, the log's ``extra``
    holds the final pairwise accuracy (chosen scored above rejected).
    """
    from rlbff_lib.core.io import write_json, write_jsonl
    from rlbff_lib.models.tokenizer import load_tokenizer

    quiet_libraries()
    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(model)
    pairs, margins, extra = list(train_pairs), None, {}
    if cfg.strength_source != "none":
        strength, spread = preference_strength(cfg, model, pairs, output_dir)
        pairs, strength, flipped = flip_weakest(pairs, strength, cfg.flip_share)
        if cfg.adaptive_margin:
            margins = [cfg.margin_scale * s for s in strength]
        write_jsonl(output_dir / "strength.jsonl", [
            {"pair_id": p.get("pair_id"), "strength": s, "uncertainty": None if spread is None else spread[i],
             "flipped": bool(p.get("flipped"))} for i, (p, s) in enumerate(zip(pairs, strength))])
        extra.update(n_flipped=len(flipped), strength_mean=statistics.fmean(strength))
    rows, cut = build_pair_rows(pairs, tokenizer, cfg.max_length, margins)
    eval_rows, eval_cut = build_pair_rows(eval_pairs, tokenizer, cfg.max_length) if eval_pairs else ([], 0)
    extra.update(n_train=len(rows), train_truncated=cut, n_eval=len(eval_rows), eval_truncated=eval_cut)
    record, trainer = _fit(cfg, model, rows, eval_rows, output_dir, tokenizer, "bt", extra, callbacks)
    # Final accuracy on the main process (ZeRO-3 shards the weights: evaluate the saved model instead)
    if eval_pairs and trainer.accelerator.is_main_process and not trainer.is_deepspeed_enabled:
        trained = trainer.accelerator.unwrap_model(trainer.model)
        deltas = pair_deltas(trained, tokenizer, eval_pairs, cfg.eval_batch_size, cfg.max_length)
        record["extra"]["eval_pair_accuracy"] = sum(d > 0 for d in deltas) / len(deltas)
        write_json(output_dir / "training_log.json", record)
    return record


# ------------------------------------------------------------------ a principle-blind model on principle items


def fit_threshold(scores: Sequence[float], labels: Sequence[bool | str]) -> tuple[float, float]:
    """The threshold t maximising accuracy of "Yes iff score > t": (t, accuracy in [0, 1]).

    labels: booleans or "Yes"/"No". Candidates: midpoints between consecutive distinct
    scores, and one below the minimum / above the maximum (all Yes / all No); among equally
    accurate thresholds the lowest wins.
    """
    if not scores or len(scores) != len(labels):
        raise ValueError(f"scores/labels: need the same non-zero length, got {len(scores)}/{len(labels)}")
    y = [lab == "Yes" if isinstance(lab, str) else bool(lab) for lab in labels]
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    s = [scores[i] for i in order]
    ys = [y[i] for i in order]
    n_yes = sum(ys)
    # threshold below everything: every item predicted Yes
    best_t, best_correct = s[0] - 1.0, n_yes
    correct = n_yes
    for k in range(len(s)):  # move item k (and ties) to the "No" side
        correct += -1 if ys[k] else 1
        if k + 1 < len(s) and s[k + 1] == s[k]:
            continue
        t = (s[k] + s[k + 1]) / 2 if k + 1 < len(s) else s[k] + 1.0
        if correct > best_correct:
            best_t, best_correct = t, correct
    return best_t, best_correct / len(s)


def run_job(job: TrainJob) -> dict:
    """Run a :class:`~rlbff_lib.training.launch.TrainJob` whose files hold preference pairs."""
    from rlbff_lib.core.io import read_jsonl
    from rlbff_lib.core.params import build

    cfg = build(BTConfig, job.config, "bt")
    eval_pairs = read_jsonl(job.eval_file) if job.eval_file else None
    return train_bt(cfg, job.model, read_jsonl(job.train_file), job.output_dir, eval_pairs)


def main(argv: list[str] | None = None) -> int:
    return job_cli(argv, "rlbff_lib.reward_models.bradley_terry", run_job)


if __name__ == "__main__":
    raise SystemExit(main())
