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
- ``contrastive_weight`` β (Secrets II §4.1, "contrastive learning for reward modeling"; its
  instance-based SimCSE variant on the *difference* representation): per pair, d = h(chosen) −
  h(rejected), h the last-layer hidden state [H] the score head reads; two views of each d by
  dropout (p = ``contrastive_dropout``; ours: on d, as the tiny models carry no dropout of their
  own); SimCSE's loss (Gao et al. 2021, eq. 1) over the B pairs of the batch, temperature τ::

      L_cl = −(1/B) Σ_i log( exp(cos(z_i, z'_i)/τ) / Σ_j exp(cos(z_i, z'_j)/τ) ),   L = L_BT + β L_cl

  (the paper's cluster-based SwAV variant is not implemented).
- ``metarm_file`` (Secrets II §4.2, MetaRM; Dou et al. 2024, arXiv 2405.00438, Algorithm 1): unlabelled
  responses of a shifted distribution, JSONL ``{"context", "responses": [k >= 2 strings]}`` (or
  ``chosen``/``rejected``, labels unused). Each optimizer step t takes ``metarm_batch_size`` of
  those prompts X_s and the pair batch X_t::

      J(θ)  = (2/k²) Σ_{x ∈ X_s} Σ_{i<j} σ(|r_θ(x, s_i) − r_θ(x, s_j)|)     (difference loss)
      θ'    = θ + η ∇_θ J(θ)                                                (one ascent step, η = metarm_step_size)
      θ_t+1 = θ − α ∇_θ' L_BT(θ'; X_t)                                      (the optimizer's step, at θ)

  first-order, as first-order MAML: the gradient of the BT loss taken at θ' is applied to θ
  (the exact ∇_θ would add η ∇²J ∇L, a Hessian-vector product).

Determinism: two runs with the same inputs, config and torch thread count give bit-identical
weights, also after a resume (``tests/reward_models/test_determinism.py`` trains twice in fresh
processes with different hash seeds). The thread count is an input: CPU kernels reduce in
per-thread chunks, so 1 and 2 threads differ in the last bits, and ``accelerate launch`` takes the
count from ``OMP_NUM_THREADS``, else from the physical cores it sees (the training log records
``torch_threads``).

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
    contrastive_weight: β of the SimCSE term (0: off); contrastive_temperature: τ (SimCSE: 0.05);
    contrastive_dropout: dropout probability that makes the two views.
    metarm_file: the MetaRM meta set (None: off); metarm_step_size: η of the ascent step (parameter
    units per unit gradient); metarm_batch_size: meta prompts per optimizer step.
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
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.05
    contrastive_dropout: float = 0.1
    metarm_file: str | None = None
    metarm_step_size: float = 1e-3
    metarm_batch_size: int = 4

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
        if self.contrastive_weight < 0:
            raise ValueError(f"contrastive_weight: must be >= 0, got {self.contrastive_weight}")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature: must be > 0, got {self.contrastive_temperature}")
        if not 0 <= self.contrastive_dropout < 1:
            raise ValueError(f"contrastive_dropout: must be in [0, 1), got {self.contrastive_dropout}")
        if self.metarm_step_size < 0:
            raise ValueError(f"metarm_step_size: must be >= 0, got {self.metarm_step_size}")
        if self.metarm_batch_size < 1:
            raise ValueError(f"metarm_batch_size: must be >= 1, got {self.metarm_batch_size}")

    def plain(self, seed: int) -> "BTConfig":
        """The same training without options, with another seed (an ensemble member)."""
        return dataclasses.replace(self, seed=seed, strength_source="none", flip_share=0.0, label_smoothing=0.0,
                                   adaptive_margin=False, contrastive_weight=0.0, metarm_file=None)


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


def simcse_loss(z1, z2, temperature: float):
    """SimCSE's contrastive loss (Gao et al. 2021, eq. 1) of two views z1, z2 [B, H] of B instances.

    −(1/B) Σ_i log( exp(cos(z1_i, z2_i)/τ) / Σ_j exp(cos(z1_i, z2_j)/τ) ): the other instances'
    second views are the negatives. A batch of one gives 0.
    """
    import torch
    import torch.nn.functional as F

    sim = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / temperature  # [B, B]
    return F.cross_entropy(sim, torch.arange(sim.shape[0], device=sim.device))


def difference_loss(rewards) -> "torch.Tensor":
    """MetaRM's difference loss J: (2/k²) Σ_x Σ_{i<j} σ(|r_i − r_j|) over prompts x, each a Tensor [k] of the
    rewards of its k responses (k may differ between prompts). Higher: responses told apart more."""
    import torch

    total = 0.0
    for r in rewards:
        k = r.shape[0]
        gaps = (r.unsqueeze(0) - r.unsqueeze(1)).abs()  # [k, k]
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=r.device), diagonal=1)
        total = total + 2.0 / k ** 2 * torch.sigmoid(gaps[upper]).sum()
    return total


def last_token_index(input_ids, pad_token_id: int):
    """[B] position the sequence-classification head reads in each row of ``input_ids`` [B, L]:
    transformers' rule, the rightmost token that is not ``pad_token_id``."""
    import torch

    non_pad = (input_ids != pad_token_id).to(torch.int32)
    return (torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32) * non_pad).argmax(-1)


def meta_batch(n: int, size: int, step: int, seed: int) -> list[int]:
    """Indices (of n meta prompts) for optimizer step ``step``: consecutive slices of a seeded
    permutation per pass over the n, so a resumed run draws what an uninterrupted one would."""
    import random

    out, pos = [], step * size
    while len(out) < size:
        epoch, i = divmod(pos, n)
        take = random.Random(f"metarm:{seed}:{epoch}").sample(range(n), n)[i:i + size - len(out)]
        out += take
        pos += len(take)
    return out


@functools.cache
def reward_trainer_class():
    """``BTRewardTrainer`` (built on first use, so importing this module does not import TRL)."""
    from trl import RewardTrainer

    class BTRewardTrainer(RewardTrainer):
        """TRL's ``RewardTrainer`` with :func:`bt_loss` (label smoothing) in ``compute_loss``, the SimCSE
        term and the MetaRM step (module docstring).

        TRL 1.16's own loss is −log σ(Δ − margin) (+ the centring term); this keeps its
        margin column, centring term and logged metrics and adds α. ``contrastive``: (β, τ, p) or
        None. ``meta``: token ids [prompt][response] of the meta set or None, with ``meta_step_size``
        η and ``meta_batch_size``.
        """

        def __init__(self, *args, label_smoothing: float = 0.0, contrastive: tuple | None = None,
                     meta: list | None = None, meta_step_size: float = 0.0, meta_batch_size: int = 1, **kwargs):
            super().__init__(*args, **kwargs)
            self.label_smoothing = label_smoothing
            self.contrastive = contrastive
            self.meta, self.meta_step_size, self.meta_batch_size = meta, meta_step_size, meta_batch_size

        def _pad_id(self) -> int:
            return self.accelerator.unwrap_model(self.model).config.get_text_config().pad_token_id

        def contrastive_views(self, d):
            """Two dropout views [B, H] of the difference representations d [B, H]."""
            import torch.nn.functional as F

            p = self.contrastive[2]
            return F.dropout(d, p, training=True), F.dropout(d, p, training=True)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            mode = "train" if self.model.training else "eval"
            margin = inputs.pop("margin", None)
            inputs["use_cache"] = False
            captured = []
            hook = None
            if self.contrastive and mode == "train":  # the hidden states the score head reads
                score = self.accelerator.unwrap_model(model).score
                hook = score.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
            try:
                outputs = model(**inputs)
            finally:
                if hook is not None:
                    hook.remove()
            chosen, rejected = outputs.logits.squeeze(-1).chunk(2)
            loss = bt_loss(chosen - rejected, margin, self.label_smoothing)
            if captured:
                ids = inputs["input_ids"]
                h = captured[0][torch.arange(ids.shape[0], device=ids.device), last_token_index(ids, self._pad_id())]
                h_chosen, h_rejected = h.chunk(2)
                weight, temperature, _ = self.contrastive
                contrastive = simcse_loss(*self.contrastive_views(h_chosen - h_rejected), temperature)
                loss = loss + weight * contrastive
                self._metrics[mode]["contrastive_loss"].append(contrastive.item())
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

        def meta_rewards(self, model, prompts: list[list[list[int]]]) -> list:
            """Rewards [k] of each meta prompt's responses (one padded forward pass)."""
            import torch

            seqs = [ids for responses in prompts for ids in responses]
            pad = self._pad_id()
            width = max(map(len, seqs))
            device = self.accelerator.device
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
            r = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.squeeze(-1)
            return list(r.split([len(responses) for responses in prompts]))

        def training_step(self, model, inputs, num_items_in_batch=None):
            """MetaRM: θ' = θ + η∇J(θ), the usual step's forward and backward at θ', then θ restored (the
            optimizer then applies ∇L(θ') to θ)."""
            if not self.meta:
                return super().training_step(model, inputs, num_items_in_batch)
            import torch

            module = self.accelerator.unwrap_model(model)
            params = [p for p in module.parameters() if p.requires_grad]
            batch = meta_batch(len(self.meta), self.meta_batch_size, self.state.global_step, self.args.seed)
            module.train()
            j = difference_loss(self.meta_rewards(module, [self.meta[i] for i in batch]))
            grads = torch.autograd.grad(j, params, allow_unused=True)
            backup = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p.add_(g, alpha=self.meta_step_size)
            try:
                loss = super().training_step(model, inputs, num_items_in_batch)
            finally:
                with torch.no_grad():
                    for p, b in zip(params, backup):
                        p.copy_(b)
            self._metrics["train"]["difference_loss"].append(j.item())
            return loss

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


def read_meta_set(path: str | Path, tokenizer, max_length: int) -> list[list[list[int]]]:
    """The MetaRM meta set: per record, the token ids of each response (as scored: conversation + response).

    Records: ``{"context", "responses": [>= 2 strings]}``, or a preference pair (``chosen``, ``rejected``;
    the label is not used). A bad record raises :class:`rlbff_lib.core.io.DataError` naming file, line and field.
    """
    from rlbff_lib.core.io import read_jsonl

    def check(rec: dict, line: int) -> None:
        responses = rec.get("responses", [rec.get("chosen"), rec.get("rejected")])
        if not isinstance(responses, list) or len(responses) < 2 or not all(isinstance(r, str) for r in responses):
            raise ValueError("responses: need a list of >= 2 strings (or chosen and rejected)")
        if not isinstance(rec.get("context"), list):
            raise ValueError("context: must be a list of chat messages")

    records = read_jsonl(path, check)
    if not records:
        raise ValueError(f"metarm_file: {path} holds no records")
    return [[encode_response(tokenizer, rec["context"], r, max_length)[0]
             for r in rec.get("responses", [rec.get("chosen"), rec.get("rejected")])] for rec in records]


def _fit(cfg: BTConfig, model: str | Path, rows: list[dict], eval_rows: list[dict], output_dir: Path, tokenizer,
         name: str, extra: dict, callbacks: list | None, meta: list | None = None):
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
        peft_config=cfg.lora.peft_config("SEQ_CLS"),  # LoRA: the fresh ``score`` head trains whole
        label_smoothing=cfg.label_smoothing,
        contrastive=((cfg.contrastive_weight, cfg.contrastive_temperature, cfg.contrastive_dropout)
                     if cfg.contrastive_weight > 0 else None),
        meta=meta, meta_step_size=cfg.metarm_step_size, meta_batch_size=cfg.metarm_batch_size,
    )
    if meta and trainer.is_deepspeed_enabled:
        raise ValueError("metarm_file: MetaRM steps the whole weights; run it without DeepSpeed")
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
             eval_pairs: Sequence[dict] | None = None, callbacks: list | None = None,
             strength: tuple[list[float], list[float] | None] | None = None) -> dict:
    """Train the BT baseline on preference pairs; returns the training log.

    Writes ``output_dir/model`` (sequence-classification head, safetensors + tokenizer),
    checkpoints, ``training_log.json`` and, with a strength source, ``strength.jsonl``
    (per pair: strength, uncertainty, flipped). With ``eval_pairs``, the log's ``extra``
    holds the final pairwise accuracy (chosen scored above rejected). ``strength``: the
    (strength, uncertainty) of :func:`preference_strength` for ``train_pairs``, computed
    before (several runs share one ensemble); None computes it here.
    """
    from rlbff_lib.core.io import write_json, write_jsonl
    from rlbff_lib.models.tokenizer import load_tokenizer

    quiet_libraries()
    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(model)
    meta = read_meta_set(cfg.metarm_file, tokenizer, cfg.max_length) if cfg.metarm_file else None
    pairs, margins, extra = list(train_pairs), None, {}
    if cfg.strength_source != "none":
        strength, spread = strength or preference_strength(cfg, model, pairs, output_dir)
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
    if meta:
        extra.update(metarm_prompts=len(meta))
    record, trainer = _fit(cfg, model, rows, eval_rows, output_dir, tokenizer, "bt", extra, callbacks, meta)
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
