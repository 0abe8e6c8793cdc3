"""Our training configs → TRL's config classes (``SFTConfig``, ``RewardConfig``, ``GRPOConfig``): one mapping.

Every trainer of the project builds its TRL config with :func:`trl_config`; ``trl_args`` passes any other TRL field through.
The shared fields are checked here too (:func:`check_fields`), so each config class checks only its own.

A config class names its TRL class with ``trl_kind`` (``sft`` | ``reward`` | ``grpo``) and may fix settings its trainer
depends on with ``trl_fixed``. :func:`trl_kwargs` then builds, in order:

1. the device and housekeeping defaults: bf16 weights + autocast on CUDA (SDPA / FlashAttention 2), fp32 on CPU, where
   ``use_cpu`` also makes a multi-process run pick the gloo backend; no tqdm in quiet mode; ``run_name`` from the folder;
2. each field of :data:`FIELD_MAP` the config has, under TRL's name (``warmup_ratio`` → ``warmup_steps``: a float in
   [0, 1) is a ratio in transformers 5; ``gradient_checkpointing`` → ``activation_checkpointing``, 5.23's name);
3. what follows from those (``data_seed`` = ``seed``, evaluation on or off, GRPO's ``log_completions`` when a tracker is
   set and ``vllm_max_model_length``), the kind's and the class's fixed settings;
4. ``trl_args`` last: any other field of the TRL class. It may change the defaults of step 1 (e.g.
   ``dataloader_num_workers``, ``model_init_kwargs``); a key that steps 2–3 set is rejected when the params are
   checked, naming the parameter that sets it, and so is a key that is not a field of the TRL class.

GRPOConfig's own defaults differ from TrainingArguments and from the paper's NeMo-RL runs (bf16 on, gradient
checkpointing on, LR 1e-6, ``beta`` 0, ``loss_type`` "dapo", ``use_bias_correction_kl`` on): every one is set
explicitly, precision in step 1, the others from fields of :class:`rlbff_lib.training.launch.GRPOSettings`.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

TRL_CLASSES = {"sft": "SFTConfig", "reward": "RewardConfig", "grpo": "GRPOConfig"}
REPORT_TO = ("none", "tensorboard", "wandb", "trackio")
# the package each tracker needs (transformers raises at Trainer start without it)
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}

# our field -> the TRL field it sets; a config maps the ones it has (and the TRL class knows)
FIELD_MAP = {
    "learning_rate": "learning_rate",
    "num_train_epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "per_device_train_batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_length": "max_length",
    "seed": "seed",
    "warmup_ratio": "warmup_steps",
    "lr_scheduler_type": "lr_scheduler_type",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "eval_steps": "eval_steps",
    "gradient_checkpointing": "activation_checkpointing",
    "report_to": "report_to",
    "center_rewards_coefficient": "center_rewards_coefficient",
    "chat_template_kwargs": "chat_template_kwargs",
    # GRPO
    "num_generations": "num_generations",
    "max_completion_length": "max_completion_length",
    "temperature": "temperature",
    "top_p": "top_p",
    "beta": "beta",
    "epsilon": "epsilon",
    "epsilon_high": "epsilon_high",
    "loss_type": "loss_type",
    "scale_rewards": "scale_rewards",
    "num_iterations": "num_iterations",
    "use_bias_correction_kl": "use_bias_correction_kl",
    "vllm_importance_sampling_correction": "vllm_importance_sampling_correction",
    "use_vllm": "use_vllm",
    "vllm_mode": "vllm_mode",
    "vllm_server_base_url": "vllm_server_base_url",
    "vllm_gpu_memory_utilization": "vllm_gpu_memory_utilization",
    "vllm_tensor_parallel_size": "vllm_tensor_parallel_size",
}
# TRL fields derived from ours (step 3), with the parameter that sets them
DERIVED = {
    "output_dir": "the run folder (checkpoints/ is where a run resumes from)",
    "save_strategy": "save_steps",
    "eval_strategy": "eval_steps",
    "eval_steps": "eval_steps",
    "data_seed": "seed",
    "gradient_checkpointing": "gradient_checkpointing (TRL's deprecated alias of activation_checkpointing)",
    "log_completions": "report_to",
    "vllm_max_model_length": "max_prompt_length + max_completion_length",
}
# settings a kind's trainer code depends on
KIND_FIXED = {
    "sft": {},
    "reward": {},
    "grpo": {"remove_unused_columns": False,  # the reward functions read the dataset's extra columns
             "shuffle_dataset": True},
}


# ------------------------------------------------------------------ checks


@functools.cache
def trl_field_names(kind: str) -> frozenset[str]:
    """The init fields of TRL's config class of ``kind`` (imports TRL: call only when needed)."""
    import dataclasses

    import trl

    return frozenset(f.name for f in dataclasses.fields(getattr(trl, TRL_CLASSES[kind])) if f.init)


def reserved_keys(cfg) -> dict[str, str]:
    """TRL field -> the parameter (or fact) that sets it, for every field :func:`trl_kwargs` sets from ``cfg``."""
    out = {trl: ours for ours, trl in FIELD_MAP.items() if hasattr(cfg, ours)}
    out.update(DERIVED)
    out.update({k: f"the {cfg.trl_kind} trainer (fixed)" for k in KIND_FIXED[cfg.trl_kind]})
    out.update({k: f"{type(cfg).__name__} (fixed)" for k in getattr(cfg, "trl_fixed", {})})
    return out


def check_trl_args(cfg) -> None:
    """``cfg.trl_args``: every key a field of the TRL class that no parameter of ours sets.

    Raises ``ValueError("trl_args.<key>: ...")`` (the params loader prefixes the section path). Imports TRL only
    when ``trl_args`` is not empty.
    """
    args = cfg.trl_args
    if not isinstance(args, dict):
        raise ValueError(f"trl_args: expected a mapping of TRL config fields, got {args!r}")
    if not args:
        return
    names = trl_field_names(cfg.trl_kind)
    reserved = reserved_keys(cfg)
    for key in args:
        if key not in names:
            raise ValueError(f"trl_args.{key}: not a field of trl.{TRL_CLASSES[cfg.trl_kind]} (TRL's documentation "
                             "lists them)")
        if key in reserved:
            raise ValueError(f"trl_args.{key}: set by {reserved[key]}; change that instead")


def check_report_to(report_to: str) -> None:
    """``report_to``: one of :data:`REPORT_TO`, and its tracker's package installed."""
    if report_to not in REPORT_TO:
        raise ValueError(f"report_to: must be one of {list(REPORT_TO)}, got {report_to!r}")
    packages = TRACKER_PACKAGES.get(report_to, ())
    if packages and not any(importlib.util.find_spec(p) is not None for p in packages):
        raise ValueError(f"report_to: {report_to} needs the package {packages[0]!r}, not installed here "
                         f"(pip install {packages[0]})")


def check_fields(cfg) -> None:
    """Check the fields of :data:`FIELD_MAP` shared by the training configs (those ``cfg`` has), ``report_to`` and
    ``trl_args``; raises ``ValueError`` starting with the field's name."""
    has = lambda name: hasattr(cfg, name)
    if has("learning_rate") and not 0 < cfg.learning_rate < 1:
        raise ValueError(f"learning_rate: must be in (0, 1), got {cfg.learning_rate}")
    if has("num_train_epochs") and cfg.num_train_epochs <= 0:
        raise ValueError(f"num_train_epochs: must be > 0, got {cfg.num_train_epochs}")
    if has("max_steps") and (cfg.max_steps == 0 or cfg.max_steps < -1):
        raise ValueError(f"max_steps: must be -1 (use epochs) or >= 1, got {cfg.max_steps}")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps",
                 "save_total_limit", "eval_batch_size"):
        if has(name) and getattr(cfg, name) < 1:
            raise ValueError(f"{name}: must be >= 1, got {getattr(cfg, name)}")
    if has("max_length") and cfg.max_length < 16:
        raise ValueError(f"max_length: must be >= 16 tokens, got {cfg.max_length}")
    if has("warmup_ratio") and not 0 <= cfg.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio: must be in [0, 1), got {cfg.warmup_ratio}")
    if has("weight_decay") and (cfg.weight_decay < 0 or cfg.max_grad_norm <= 0):
        raise ValueError(f"weight_decay/max_grad_norm: must be >= 0 / > 0, got {cfg.weight_decay}/{cfg.max_grad_norm}")
    if has("eval_steps") and cfg.eval_steps < 0:
        raise ValueError(f"eval_steps: must be >= 0, got {cfg.eval_steps}")
    check_report_to(cfg.report_to)
    check_trl_args(cfg)


# ------------------------------------------------------------------ the mapping


def trl_kwargs(cfg, output_dir: str | Path, has_eval: bool = False) -> dict[str, Any]:
    """Keyword arguments of TRL's config class ``cfg.trl_kind`` for our config ``cfg`` (module docstring, steps 1–4).

    output_dir: the checkpoints folder. has_eval: an eval dataset is given (evaluation every ``eval_steps`` when
    the config has ``eval_steps`` > 0).
    """
    import torch

    from rlbff_lib.core.progress import quiet_mode
    from rlbff_lib.models.lm import attn_implementation, device_and_dtype

    kind = cfg.trl_kind
    _, dtype = device_and_dtype()
    cuda = torch.cuda.is_available()
    if kind == "grpo" and cfg.use_vllm and not cuda:
        raise ValueError("use_vllm: vLLM generation needs CUDA GPUs; set use_vllm: false on CPU")
    out = Path(output_dir)
    kw: dict[str, Any] = dict(  # 1. device and housekeeping defaults
        bf16=cuda, fp16=False, use_cpu=not cuda, disable_tqdm=quiet_mode(), dataloader_num_workers=0,
        ddp_find_unused_parameters=False, logging_first_step=True, run_name="/".join(out.parts[-3:-1]) or None,
        model_init_kwargs={"dtype": dtype, "attn_implementation": attn_implementation()},
    )
    names = trl_field_names(kind)
    kw.update({trl: getattr(cfg, ours) for ours, trl in FIELD_MAP.items() if hasattr(cfg, ours) and trl in names})
    evaluate = has_eval and getattr(cfg, "eval_steps", 0) > 0  # 3. derived and fixed
    kw.update(output_dir=str(out), save_strategy="steps", eval_strategy="steps" if evaluate else "no",
              eval_steps=cfg.eval_steps if evaluate else None, data_seed=cfg.seed)
    if kind == "grpo":
        kw.update(chat_template_kwargs=dict(kw.get("chat_template_kwargs") or {}) or None,
                  log_completions=cfg.report_to != "none",
                  vllm_max_model_length=(cfg.max_prompt_length + cfg.max_completion_length) if cfg.use_vllm else None)
    kw.update(KIND_FIXED[kind])
    kw.update(getattr(cfg, "trl_fixed", {}))
    kw.update(cfg.trl_args)  # 4. the pass-through
    return kw


def trl_config(cfg, output_dir: str | Path, has_eval: bool = False):
    """TRL's config object (``trl.SFTConfig`` / ``RewardConfig`` / ``GRPOConfig``) of our config ``cfg``."""
    import trl

    return getattr(trl, TRL_CLASSES[cfg.trl_kind])(**trl_kwargs(cfg, output_dir, has_eval))
