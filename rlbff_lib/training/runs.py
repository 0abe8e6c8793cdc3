"""Keyed training runs: one folder per (config, base-model weights, data files), reused once finished.

A run lives in ``<runs_dir>/<name>-<key>/`` (:func:`run_dir`); a stage reruns it with :func:`launch_or_reuse`: a
finished run is returned as is, any other state is launched again and resumes from its newest complete checkpoint.

- :func:`run_key`: 12 hex digits of the SHA-256 (:func:`rlbff_lib.core.io.stable_hash`) of the config, the base
  model (the digest of its safetensors weights when it is a folder, else its hub name) and the digests of the data
  files. A changed config, retrained base model or edited data file gets a fresh folder, so stale checkpoints are
  never resumed. Fields that do not change what is trained (:data:`NOT_IN_KEY`) and fields added after the key was
  defined, while at the value every older run had (:data:`ADDED_FIELDS`), stay out of it: a run made before they
  existed keeps its folder. A ``lora`` block that is off (:class:`rlbff_lib.training.lora.LoraSettings`) is such a
  field whatever its other settings; switched on, it is part of the key.
- :func:`finished_run`: ``training_log.json`` (written after the final model) names a model folder with safetensors
  weights, and the config the run recorded (the log's ``config`` or ``extra.config``, else the folder's
  ``job.json``) equals the one asked for. A log that records none is trusted to its keyed folder.
- :func:`publish`: the finished model copied (hard links) to its published place, replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from rlbff_lib.core.io import stable_hash
from rlbff_lib.core.progress import log

NOT_IN_KEY = ("report_to",)  # logging only: a tracker switched on reuses and resumes the same run
ADDED_FIELDS = {"trl_args": {}, "use_bias_correction_kl": True, "vllm_importance_sampling_correction": True,
                # BTConfig: Secrets II contrastive learning and MetaRM (off)
                "contrastive_weight": 0.0, "contrastive_temperature": 0.05, "contrastive_dropout": 0.1,
                "metarm_file": None, "metarm_step_size": 1e-3, "metarm_batch_size": 4}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_digest(model: str | Path) -> str:
    """What identifies a base model in a run key: the digest of ``model/model.safetensors``, of every shard
    (sorted by name) for sharded weights, else ``model`` itself (a hub name)."""
    folder = Path(model)
    if (folder / "model.safetensors").is_file():
        return file_digest(folder / "model.safetensors")
    shards = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return stable_hash([file_digest(p) for p in shards]) if shards else str(model)


def _lora_off(key: str, value: Any) -> bool:
    return key == "lora" and isinstance(value, dict) and not value.get("enabled")


def key_config(config: Any) -> Any:
    """``config`` (nested dicts) as it enters a run key: without :data:`NOT_IN_KEY`, without the fields of
    :data:`ADDED_FIELDS` that hold their old value, and without a ``lora`` block that is off."""
    if not isinstance(config, dict):
        return config
    return {k: key_config(v) for k, v in config.items()
            if k not in NOT_IN_KEY and not (k in ADDED_FIELDS and v == ADDED_FIELDS[k]) and not _lora_off(k, v)}


def run_key(config: dict, model: str | Path, files: Sequence[str | Path | None] = ()) -> str:
    """12 hex digits identifying a training run: its config, base model and data contents (``None`` files skipped)."""
    return stable_hash(key_config(config), model_digest(model), [file_digest(f) for f in files if f])[:12]


def run_dir(runs_dir: str | Path, name: str, config: dict, model: str | Path,
            files: Sequence[str | Path | None] = ()) -> Path:
    """The folder of a keyed run: ``runs_dir/<name>-<run_key(...)>``."""
    return Path(runs_dir) / f"{name}-{run_key(config, model, files)}"


def _recorded_config(output_dir: Path, record: dict) -> dict | None:
    if "config" in record:
        return record["config"]
    if "config" in (record.get("extra") or {}):
        return record["extra"]["config"]
    try:
        return json.loads((output_dir / "job.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return None


def finished_run(output_dir: str | Path, config: dict) -> dict | None:
    """The training log of the run in ``output_dir`` when it finished with ``config``, else None (module docstring).

    The log's ``model_dir`` (default ``output_dir/model``) must hold safetensors weights. Configs are compared as
    JSON data through :func:`key_config`. Resuming a finished Trainer run would train one step more: callers return
    this record instead.
    """
    output_dir = Path(output_dir)
    try:
        record = json.loads((output_dir / "training_log.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = Path(record.get("model_dir") or output_dir / "model")
    if not model.is_dir() or not any(model.glob("*.safetensors")):
        return None
    saved = _recorded_config(output_dir, record)
    if saved is not None and key_config(saved) != key_config(json.loads(json.dumps(config))):
        return None
    return record


def launch_or_reuse(entry: str, job, config: dict | None = None, accelerate_config: str | Path = "cpu.yaml",
                    num_processes: int | None = None, env: dict[str, str] | None = None, prefix: str = "",
                    name: str | None = None) -> dict:
    """The training log of the run ``job`` (a :class:`~rlbff_lib.training.launch.TrainJob`) describes.

    Finished with ``config`` (default ``job.config``; :func:`finished_run`): returned as is. Otherwise
    ``job.output_dir/job.json`` is written and ``python -m <entry> train`` runs under ``accelerate launch``
    (:func:`rlbff_lib.training.launch.launch`; resumes from the run's newest complete checkpoint). Raises
    ``RuntimeError`` when the child exits without a finished run.
    """
    from rlbff_lib.training.launch import launch

    folder = Path(job.output_dir)
    name = name or entry.rsplit(".", 1)[-1]
    config = job.config if config is None else config
    done = finished_run(folder, config)
    if done is not None:
        log(f"[{name}] run {folder.name} already complete")
        return done
    log(f"[{name}] training in {folder}")
    launch(entry, job.write(folder / "job.json"), accelerate_config, num_processes, env, prefix)
    record = finished_run(folder, config)
    if record is None:
        raise RuntimeError(f"{folder}: {entry} exited without a finished run (training_log.json naming a model "
                           "with safetensors weights and this config)")
    return record


def publish(model_dir: str | Path, target: str | Path) -> Path:
    """Make ``target`` a copy of the finished ``model_dir`` (hard links, or a copy across filesystems), built beside
    it and swapped in by two renames: a reader sees the old copy or the new one, never a half-written folder."""
    model_dir, target = Path(model_dir), Path(target)
    tmp, old = (target.with_name(f".{target.name}.{s}") for s in ("tmp", "old"))
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(model_dir, tmp, copy_function=os.link)
    except OSError:  # another filesystem: copy instead
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target
