"""How the trainers run: one process here, or many through ``accelerate launch``.

Shared by every trainer (scalar RM, Bradley–Terry, GenRM, policy SFT, GRPO):

- :class:`TrainConfig` (SFT / reward trainers) and :class:`GRPOSettings`: the hyperparameters the trainers share;
  :mod:`rlbff_lib.training.trl_config` turns them into TRL's configs.
- :func:`run_trainer`: resume from the newest *complete* checkpoint (an incomplete or corrupt
  one is detected, reported and deleted, never trusted), train, save the final model
  atomically (temp folder, then rename) and write ``training_log.json`` (loss curves for the
  notebook, world size, ranks that took part, the training call's wall clock: :func:`train_timer`).
- :class:`TrainJob` + :func:`launch`: a job file (JSON) names the base model, data files, output
  folder and config; ``launch`` runs ``python -m <trainer module> train --config JOB.json`` under
  ``accelerate launch`` with an accelerate config from ``configs/accelerate/``.

Output folder layout of every training run::

    output_dir/checkpoints/checkpoint-<step>/   Trainer checkpoints (resume points)
    output_dir/model/                           final model, safetensors + tokenizer
    output_dir/training_log.json                curves and run facts
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from rlbff_lib.core.io import write_json
from rlbff_lib.core.params import REPO_ROOT
from rlbff_lib.core.progress import log, quiet_mode
from rlbff_lib.training.lora import LoraSettings, lora_settings
from rlbff_lib.training.trl_config import check_fields

ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# ------------------------------------------------------------------ config


@dataclass
class TrainConfig:
    """Hyperparameters shared by the SFT and reward-model trainers (units: optimizer steps, tokens).

    learning_rate: peak AdamW learning rate. num_train_epochs: passes over the data (used
    when ``max_steps`` is -1). max_steps: optimizer steps, overrides epochs when > 0.
    per_device_train_batch_size: sequences (or pairs, for BT) per process per micro-step;
    the effective batch is that × gradient_accumulation_steps × number of processes.
    max_length: longest input in tokens; longer conversations are cut from the left
    (see :func:`rlbff_lib.reward_models.prompt.fit_conversation`). seed: model-init and data-order seed.
    warmup_ratio: share of the steps with linear warm-up. lr_scheduler_type: a transformers
    scheduler name. weight_decay, max_grad_norm: AdamW decay, gradient clipping.
    logging_steps: steps between log lines / curve points. save_steps: steps between
    checkpoints. save_total_limit: checkpoints kept. eval_steps: steps between evaluations
    on the eval set (0: none during training). eval_batch_size: sequences per scoring batch.
    gradient_checkpointing: recompute activations in backward (needed for 32B/70B models).
    report_to: experiment tracker (``none``, ``tensorboard``, ``wandb``, ``trackio``; its package must be installed).
    trl_args: any other field of the TRL config class, passed through
    (:mod:`rlbff_lib.training.trl_config`; e.g. ``{"neftune_noise_alpha": 5}``).
    lora: LoRA adapters instead of full weights (:class:`rlbff_lib.training.lora.LoraSettings`; off by default).
    """

    trl_kind: ClassVar[str] = "sft"  # the TRL config class (trl_config.TRL_CLASSES)

    learning_rate: float = 5e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    seed: int = 0
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int = 2
    eval_steps: int = 0
    eval_batch_size: int = 16
    gradient_checkpointing: bool = False
    report_to: Literal["none", "tensorboard", "wandb", "trackio"] = "none"
    trl_args: dict[str, Any] = field(default_factory=dict)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self):
        self.lora = lora_settings(self.lora)
        check_fields(self)


@dataclass
class GRPOSettings:
    """The fields every GRPO run shares (the GenRM's training, the policy's alignment) and their checks;
    :func:`rlbff_lib.training.trl_config.trl_config` makes the ``trl.GRPOConfig`` (units: optimizer steps, tokens,
    completions).

    learning_rate: AdamW LR. max_steps: optimizer steps (-1: ``num_train_epochs`` passes over the
    prompts). num_generations: completions per prompt, the GRPO group. per_device_train_batch_size:
    completions per process per micro-step (prompts per optimizer step = that ×
    gradient_accumulation_steps × processes / num_generations). max_prompt_length: prompt tokens
    (TRL 1.16 has no prompt truncation: the caller cuts or drops longer prompts).
    max_completion_length: generated tokens. temperature, top_p: sampling. beta: KL coefficient
    (> 0 loads a reference model; 0: none, and no ``kl`` is logged). epsilon / epsilon_high: lower /
    upper clip of the ratio. loss_type, scale_rewards, num_iterations: as in ``trl.GRPOConfig``
    ("dapo" = token-level mean over the batch). use_bias_correction_kl: multiply the KL term by the
    importance ratio (TRL's default; NeMo-RL's ``use_on_policy_kl_approximation`` is off).
    vllm_importance_sampling_correction: correct for vLLM's sampling log-probabilities differing from the
    trainer's (TRL's default; NeMo-RL's ``use_importance_sampling_correction`` is off). use_vllm, vllm_mode
    (``colocate`` | ``server``), vllm_server_base_url, vllm_gpu_memory_utilization, vllm_tensor_parallel_size: the
    vLLM generation backend at scale (HF ``generate`` when off). report_to: experiment tracker (completions are
    logged when one is set). trl_args: any other ``trl.GRPOConfig`` field. lora: LoRA adapters instead of full
    weights (:class:`rlbff_lib.training.lora.LoraSettings`; off by default). Others as in :class:`TrainConfig`.
    Subclasses set their own defaults by declaring a field again.
    """

    trl_kind: ClassVar[str] = "grpo"

    learning_rate: float = 3e-4
    max_steps: int = 20
    num_train_epochs: float = 1.0
    num_generations: int = 8
    per_device_train_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    max_prompt_length: int = 512
    max_completion_length: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.01
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    num_iterations: int = 1
    use_bias_correction_kl: bool = True
    vllm_importance_sampling_correction: bool = True
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    seed: int = 0
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "constant"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 5
    save_steps: int = 10
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    report_to: Literal["none", "tensorboard", "wandb", "trackio"] = "none"
    trl_args: dict[str, Any] = field(default_factory=dict)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self):
        self.lora = lora_settings(self.lora)
        check_fields(self)
        if self.num_generations < 2:
            raise ValueError(f"num_generations: GRPO needs >= 2 completions per prompt, got {self.num_generations}")
        for name in ("max_completion_length", "num_iterations", "vllm_tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if (self.per_device_train_batch_size * self.gradient_accumulation_steps) % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size: {self.per_device_train_batch_size} × gradient_accumulation_steps "
                f"{self.gradient_accumulation_steps} must be a multiple of num_generations ({self.num_generations}), "
                "so that every process generates whole groups")
        if self.max_prompt_length < 16:
            raise ValueError(f"max_prompt_length: must be >= 16 tokens, got {self.max_prompt_length}")
        if self.temperature <= 0:
            raise ValueError(f"temperature: must be > 0 (GRPO samples), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.beta < 0:
            raise ValueError(f"beta: must be >= 0, got {self.beta}")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon: must be > 0, got {self.epsilon}")
        if self.epsilon_high < self.epsilon:
            raise ValueError(f"epsilon_high: must be >= epsilon ({self.epsilon}), got {self.epsilon_high}")
        for name, allowed in (("loss_type", ("grpo", "dr_grpo", "dapo", "bnpo")),
                              ("scale_rewards", ("group", "batch", "none")), ("vllm_mode", ("colocate", "server"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(f"vllm_gpu_memory_utilization: must be in (0, 1], got {self.vllm_gpu_memory_utilization}")


# ------------------------------------------------------------------ checkpoints


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the Trainer checkpoint folder ``path`` cannot be trusted, or ``None`` if complete.

    The Trainer writes ``trainer_state.json`` last, so a folder cut short by a crash lacks it
    (or holds one for another step). Beyond that: weights open as safetensors (header and size
    checked) or a DeepSpeed ``global_step<N>`` folder exists, and the optimizer, scheduler
    and RNG files are whole ``torch.save`` zip archives (their central directory, written
    last, is read).
    """
    path = Path(path)
    m = CHECKPOINT_RE.match(path.name)
    if m is None or not path.is_dir():
        return "not a checkpoint-<step> folder"
    step = int(m.group(1))
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        return f"trainer_state.json unreadable ({type(e).__name__})"
    if state.get("global_step") != step:
        return f"trainer_state.json is for step {state.get('global_step')}, folder says {step}"
    deepspeed_dir = path / f"global_step{step}"
    if deepspeed_dir.is_dir():
        if not any(deepspeed_dir.iterdir()):
            return f"{deepspeed_dir.name} is empty"
    else:
        problem = _weights_problem(path)
        if problem:
            return problem
        for name in ("optimizer.pt", "scheduler.pt"):
            if not _is_zip(path / name):
                return f"{name} missing or truncated"
    rng = sorted(path.glob("rng_state*.pth"))
    if not rng:
        return "no rng_state file"
    for p in rng:
        if not _is_zip(p):
            return f"{p.name} truncated"
    return None


def _is_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def _weights_problem(folder: Path) -> str | None:
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return "model.safetensors.index.json unreadable"
    elif (folder / "model.safetensors").exists():
        shards = ["model.safetensors"]
    elif (folder / "adapter_model.safetensors").exists():  # a LoRA run's checkpoint (rlbff_lib.training.lora)
        shards = ["adapter_model.safetensors"]
    else:
        return "no safetensors weights"
    for shard in shards:
        try:
            with safe_open(str(folder / shard), "pt") as f:
                f.keys()
        except Exception as e:  # safetensors raises its own error type for a cut file
            return f"{shard} unreadable ({str(e)[:80]})"
    return None


def find_resume_checkpoint(checkpoint_dir: str | Path) -> tuple[str | None, list[tuple[str, str]]]:
    """(newest complete checkpoint or ``None``, [(skipped folder, reason), ...]).

    Newer folders that fail :func:`checkpoint_problem` are skipped, never trusted.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return None, []
    folders = [p for p in checkpoint_dir.iterdir() if CHECKPOINT_RE.match(p.name) and p.is_dir()]
    folders.sort(key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)), reverse=True)
    bad = []
    for p in folders:
        problem = checkpoint_problem(p)
        if problem is None:
            return str(p), bad
        bad.append((str(p), problem))
    return None, bad


# ------------------------------------------------------------------ callbacks


def _callbacks():
    from transformers import TrainerCallback

    class LogLineCallback(TrainerCallback):
        """One short line per logging step (papermill-friendly), from the main process only."""

        def __init__(self, name: str):
            self.name = name

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            keys = ("loss", "eval_loss", "accuracy", "eval_accuracy", "learning_rate", "grad_norm")
            parts = [f"{k} {logs[k]:.4g}" for k in keys if isinstance(logs.get(k), (int, float))]
            if parts:
                log(f"[{self.name}] step {state.global_step}/{state.max_steps} " + " ".join(parts))

    class StepCountCallback(TrainerCallback):
        """Counts the optimizer steps this process took part in (gathered at the end)."""

        def __init__(self):
            self.steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return LogLineCallback, StepCountCallback


def quiet_libraries() -> None:
    """In quiet mode, turn off the progress bars of ``datasets`` and ``transformers`` (loading, mapping),
    and transformers 5's notice that ``is_gradient_checkpointing`` is deprecated (library code reads the
    property at every checkpoint save: two lines per save in every training log)."""
    if quiet_mode():
        import warnings

        import datasets
        import transformers

        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def attach_callbacks(trainer, name: str):
    """Quiet mode: swap the Trainer's per-log dict printer for one short line per log."""
    from transformers.trainer_callback import PrinterCallback

    LogLineCallback, StepCountCallback = _callbacks()
    if quiet_mode():
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(LogLineCallback(name))
    counter = StepCountCallback()
    trainer.add_callback(counter)
    return counter


# ------------------------------------------------------------------ running


def save_final(trainer, final_dir: str | Path) -> None:
    """Save the trained model (safetensors) and tokenizer to ``final_dir`` atomically.

    Every rank calls ``trainer.save_model`` (ZeRO-3 gathers the shards then); the main
    process writes to ``<final_dir>.tmp`` and renames it over ``final_dir``, so a crash
    leaves either the old model or the new one, never a mix. A LoRA run's adapter is merged into
    the base weights there (:func:`rlbff_lib.training.lora.merge_saved_adapter`): the final model is
    always full safetensors weights.
    """
    final_dir = Path(final_dir)
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    main = trainer.accelerator.is_main_process
    if main and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if main:
        from accelerate.utils import is_peft_model

        from rlbff_lib.training.lora import merge_saved_adapter

        model = trainer.accelerator.unwrap_model(trainer.model)
        if is_peft_model(model):
            merge_saved_adapter(model, tmp)
        problem = _weights_problem(tmp)
        if problem:
            raise RuntimeError(f"final save to {tmp} is incomplete: {problem}")
        old = final_dir.with_name(final_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if final_dir.exists():
            final_dir.rename(old)
        tmp.rename(final_dir)
        if old.exists():
            shutil.rmtree(old)
    trainer.accelerator.wait_for_everyone()


def split_log_history(history: list[dict]) -> tuple[list[dict], list[dict]]:
    """Trainer ``log_history`` → (train points, eval points), each ``{"step", ...metrics}``."""
    train, evals = [], []
    for rec in history:
        if "loss" in rec:
            train.append({"step": rec["step"], **{k: v for k, v in rec.items() if k != "step"}})
        elif any(k.startswith("eval_") for k in rec):
            evals.append({"step": rec["step"], **{k: v for k, v in rec.items() if k != "step"}})
    return train, evals


def prepare_resume(trainer, name: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The trainer's newest complete checkpoint (or None) and the incomplete ones, which the main
    process deletes (logged); every process waits for that. Call on every process."""
    acc = trainer.accelerator
    resume, bad = find_resume_checkpoint(trainer.args.output_dir)
    acc.wait_for_everyone()
    if acc.is_main_process:
        for folder, why in bad:
            log(f"[{name}] skipping incomplete checkpoint {folder}: {why}; deleting it")
            shutil.rmtree(folder, ignore_errors=True)
        if resume:
            log(f"[{name}] resuming from {resume}")
    acc.wait_for_everyone()
    return resume, bad


def train_timer() -> Callable[[int, str | None], dict]:
    """Start the clock of a run's training call (just before ``trainer.train``). Call the result after the final
    save with ``(global_step, resumed_from)`` for the record's timing fields: ``started_at`` (ISO 8601, UTC),
    ``wall_s`` (seconds since, this process's training and final save; loading the model and data before it, and
    evaluation after it, are not counted) and ``timed_steps`` (optimizer steps taken in that time: ``global_step``
    less the step of the checkpoint it resumed from). A resumed run's ``wall_s`` covers the resumed part only."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    t0 = time.perf_counter()

    def fields(global_step: int, resumed_from: str | None) -> dict:
        m = CHECKPOINT_RE.match(Path(resumed_from).name) if resumed_from else None
        return {"started_at": started_at, "wall_s": round(time.perf_counter() - t0, 3),
                "timed_steps": global_step - (int(m.group(1)) if m else 0)}

    return fields


def run_trainer(trainer, output_dir: str | Path, name: str, extra: dict | None = None) -> dict:
    """Train with resume, save ``output_dir/model`` atomically, write ``training_log.json``.

    Call on every process. Returns the log (also on non-main processes, unwritten there):
    ``train``/``eval`` curves (loss in nats per answer token or per pair), ``world_size``, ``torch_threads``,
    ``steps_per_rank`` (optimizer steps each process took part in, gathered over the
    process group), ``resumed_from``, ``skipped_checkpoints``, ``started_at``, ``wall_s``, ``timed_steps``
    (:func:`train_timer`: a resumed run's count from its resume point) and ``extra``.
    """
    import torch

    output_dir = Path(output_dir)
    acc = trainer.accelerator
    counter = attach_callbacks(trainer, name)
    resume, bad = prepare_resume(trainer, name)
    timer = train_timer()
    result = trainer.train(resume_from_checkpoint=resume)
    steps = acc.gather(torch.tensor([counter.steps], device=acc.device)).tolist()
    save_final(trainer, output_dir / "model")
    timing = timer(trainer.state.global_step, resume)
    train, evals = split_log_history(trainer.state.log_history)
    record = {
        "name": name,
        "train": train,
        "eval": evals,
        "train_loss": result.training_loss,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "world_size": acc.num_processes,
        "torch_threads": torch.get_num_threads(),  # an input of the result's last bits (CPU kernels reduce per thread)
        "steps_per_rank": steps,
        "resumed_from": resume,
        "skipped_checkpoints": [{"folder": f, "reason": r} for f, r in bad],
        **timing,
        "model_dir": str(output_dir / "model"),
        "extra": extra if extra is not None else {},
    }
    if acc.is_main_process:
        write_json(output_dir / "training_log.json", record)
    acc.wait_for_everyone()
    return record


# ------------------------------------------------------------------ jobs and accelerate launch


@dataclass
class TrainJob:
    """What one training run needs, as a JSON file passed to a trainer's command line.

    model: base model folder or hub name (causal LM; BT adds a scalar head). train_file /
    eval_file: JSONL (RM items for the scalar RM, preference pairs for BT). output_dir: see
    the module docstring. config: the trainer's config fields (``ScalarRMConfig`` / ``BTConfig``).
    """

    model: str
    train_file: str
    output_dir: str
    config: dict
    eval_file: str | None = None

    def write(self, path: str | Path) -> Path:
        write_json(path, dataclasses.asdict(self))
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> "TrainJob":
        raw = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"{path}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})")
        return cls(**raw)


def job_cli(argv: list[str] | None, prog: str, run_job: Callable[[TrainJob], dict]) -> int:
    """``python -m <prog> train --config JOB.json``: the entry point of each trainer module."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=f"Train with {prog} from a job file.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run the training job")
    train.add_argument("--config", required=True, help="job JSON (see rlbff_lib.training.launch.TrainJob)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_job(TrainJob.read(args.config))
    return 0


def launch(trainer_module_entry: str, config_path: str | Path, accelerate_config: str | Path = "cpu.yaml",
           num_processes: int | None = None, env: dict[str, str] | None = None, prefix: str = "") -> None:
    """Run ``python -m <trainer_module_entry> train --config <config_path>`` under ``accelerate launch``.

    trainer_module_entry: ``"rlbff_lib.reward_models.scalar"`` or ``"rlbff_lib.reward_models.bradley_terry"``.
    accelerate_config: a path, or a file name under ``configs/accelerate/``.
    num_processes: overrides the config's (e.g. the GPU count). The child runs in this
    process's working directory (relative paths in the job resolve as here), with the
    repository on ``PYTHONPATH``. The child's output is
    forwarded line by line to this process's stdout (so a notebook shows it), each line after
    ``prefix`` (which tells apart runs launched side by side); a non-zero
    exit raises ``RuntimeError`` with the last 40 lines.
    """
    cfg = Path(accelerate_config)
    if not cfg.exists() and (ACCELERATE_CONFIGS / cfg).exists():
        cfg = ACCELERATE_CONFIGS / cfg
    if not cfg.exists():
        raise FileNotFoundError(f"accelerate config {accelerate_config} not found (nor under {ACCELERATE_CONFIGS})")
    from rlbff_lib.training.slurm import launch_command  # several machines: srun over the SLURM training nodes

    cmd = launch_command(cfg, num_processes, ["-m", trainer_module_entry, "train", "--config", str(config_path)])
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
    child_env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    child_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    child_env.update(env or {})
    log(f"launch: {' '.join(cmd)}")
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            print(prefix + line, end="", flush=True)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        raise RuntimeError(f"{trainer_module_entry} exited with code {rc}; last lines:\n" + "\n".join(tail))
