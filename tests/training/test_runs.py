"""Keyed training runs: keys pinned to the ones runs were made with, reuse and relaunch both ways, publishing."""
import json
import os
from dataclasses import asdict, replace

import pytest

from rlbff_lib.alignment.policy import PolicySFTConfig
from rlbff_lib.reward_models.bradley_terry import BTConfig
from rlbff_lib.reward_models.scalar import ScalarRMConfig
from rlbff_lib.training import launch as launcher
from rlbff_lib.training import trl_config
from rlbff_lib.training.launch import TrainJob
from rlbff_lib.training.runs import finished_run, launch_or_reuse, model_digest, publish, run_dir, run_key

# ------------------------------------------------------------------ the keys runs were made with
# Regression oracle: computed once by the code this module replaced (``rlbff_lib.stages.reward_models.run_key`` at
# commit 60b5163), on the configs as they were then (before report_to, trl_args, use_bias_correction_kl and
# vllm_importance_sampling_correction existed), for the files written by ``old_files``.
OLD_CONFIGS = {
    "scalar": {"learning_rate": 0.001, "num_train_epochs": 2.0, "max_steps": -1, "per_device_train_batch_size": 16,
               "gradient_accumulation_steps": 1, "max_length": 1024, "seed": 0, "warmup_ratio": 0.05,
               "lr_scheduler_type": "cosine", "weight_decay": 0.0, "max_grad_norm": 1.0, "logging_steps": 20,
               "save_steps": 100, "save_total_limit": 2, "eval_steps": 0, "eval_batch_size": 16,
               "gradient_checkpointing": False},
    "bt": {"learning_rate": 0.003, "num_train_epochs": 2.0, "max_steps": -1, "per_device_train_batch_size": 8,
           "gradient_accumulation_steps": 1, "max_length": 1024, "seed": 0, "warmup_ratio": 0.05,
           "lr_scheduler_type": "cosine", "weight_decay": 0.0, "max_grad_norm": 1.0, "logging_steps": 10,
           "save_steps": 100, "save_total_limit": 2, "eval_steps": 0, "eval_batch_size": 16,
           "gradient_checkpointing": False, "strength_source": "none", "ensemble_size": 10, "flip_share": 0.0,
           "label_smoothing": 0.0, "adaptive_margin": False, "margin_scale": 1.0, "center_rewards_coefficient": None},
    "policy": {"name_or_path": "models/assets/base_policy", "sft_steps": 150, "n_examples": 2000,
               "domains": ["general", "stem"], "max_turns": 1, "word_limit": 70, "property_rate": 0.5,
               "fixed_properties": {"concise": True}, "data_seed": 0, "learning_rate": 0.002,
               "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1, "max_length": 512,
               "warmup_ratio": 0.05, "lr_scheduler_type": "cosine", "weight_decay": 0.0, "max_grad_norm": 1.0,
               "logging_steps": 25, "save_steps": 50, "save_total_limit": 2, "gradient_checkpointing": False, "seed": 0},
    "grpo": {"learning_rate": 0.0003, "max_steps": 20, "num_train_epochs": 1.0, "num_generations": 8,
             "per_device_train_batch_size": 32, "gradient_accumulation_steps": 1, "max_prompt_length": 512,
             "max_completion_length": 128, "temperature": 1.0, "top_p": 1.0, "beta": 0.01, "epsilon": 0.2,
             "epsilon_high": 0.28, "loss_type": "dapo", "scale_rewards": "group", "num_iterations": 1,
             "use_vllm": False, "vllm_mode": "colocate", "vllm_server_base_url": None,
             "vllm_gpu_memory_utilization": 0.3, "vllm_tensor_parallel_size": 1, "seed": 0, "warmup_ratio": 0.0,
             "lr_scheduler_type": "constant", "weight_decay": 0.0, "max_grad_norm": 1.0, "logging_steps": 5,
             "save_steps": 10, "save_total_limit": 2, "gradient_checkpointing": False,
             "reward": {"backend": "scalar", "model_path": "models/reward_models/scalar", "batch_size": 32,
                        "max_length": 1024, "length_penalty": 0.0, "device_map": None, "genrm_max_new_tokens": 512,
                        "judge_base_url": "http://127.0.0.1:8000/v1", "judge_model": "", "judge_api_key_env": "",
                        "judge_mode": "logprobs", "judge_prompt": "rlbff", "judge_top_logprobs": 20,
                        "judge_timeout_s": 60.0, "judge_max_retries": 4, "judge_concurrency": 8},
             "n_prompts": 512, "prompt_seed": 1, "domains": ["general", "stem"], "max_turns": 1, "word_limit": 70,
             "train_properties": ["followup_question", "concise"], "principles_per_prompt": 1, "principle_texts": {},
             "chat_template_kwargs": {}},
}
# name -> (base folder + train + eval file, base folder + train file + None, hub name and no files)
OLD_KEYS = {
    "scalar": ("93366effd819", "af4a77206267", "b342dadca683"),
    "bt": ("915c7c6339ee", "bc95256687b2", "c6e106eb3084"),
    "policy": ("37c1072f455d", "46243639438c", "e540a1b753d9"),
    "grpo": ("9b05afa3229a", "4d826087a8d4", "ae5e02486b34"),
}
NEW_FIELDS_AT_DEFAULT = {"report_to": "none", "trl_args": {}}
NEW_GRPO_FIELDS_AT_DEFAULT = {**NEW_FIELDS_AT_DEFAULT, "use_bias_correction_kl": True,
                              "vllm_importance_sampling_correction": True}


def old_files(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"rlbff weights v1\n")
    (tmp_path / "train.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "eval.jsonl").write_text('{"b": 2}\n')
    return base, tmp_path / "train.jsonl", tmp_path / "eval.jsonl"


def keys(config, base, train, evals):
    return (run_key(config, base, [train, evals]), run_key(config, str(base), [train, None]),
            run_key(config, "Qwen/Qwen3-32B", []))


@pytest.mark.parametrize("name", sorted(OLD_KEYS))
def test_run_keys_are_the_ones_existing_runs_were_made_with(name, tmp_path):
    base, train, evals = old_files(tmp_path)
    assert keys(OLD_CONFIGS[name], base, train, evals) == OLD_KEYS[name]
    added = NEW_GRPO_FIELDS_AT_DEFAULT if name == "grpo" else NEW_FIELDS_AT_DEFAULT
    assert keys({**OLD_CONFIGS[name], **added}, base, train, evals) == OLD_KEYS[name]
    assert keys({**OLD_CONFIGS[name], **added, "report_to": "wandb"}, base, train, evals) == OLD_KEYS[name]
    changed = {**OLD_CONFIGS[name], **added, "trl_args": {"neftune_noise_alpha": 5}}
    assert run_key(changed, base, [train, evals]) != OLD_KEYS[name][0]


@pytest.mark.parametrize("name, cls", [("scalar", ScalarRMConfig), ("bt", BTConfig), ("policy", PolicySFTConfig)])
def test_todays_default_configs_keep_their_run_folders(name, cls, tmp_path):
    base, train, evals = old_files(tmp_path)
    assert keys(asdict(cls()), base, train, evals) == OLD_KEYS[name]
    assert run_dir(tmp_path / "runs", name, asdict(cls()), base, [train, evals]).name == f"{name}-{OLD_KEYS[name][0]}"


def test_sharded_weights_enter_the_key(tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"model-0000{i}-of-00002.safetensors").write_bytes(b"shard %d" % i)
    before = model_digest(folder)
    assert before != str(folder)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"shard 2, retrained")
    assert model_digest(folder) != before
    assert model_digest("Qwen/Qwen3-32B") == "Qwen/Qwen3-32B"


# ------------------------------------------------------------------ reuse or relaunch


@pytest.fixture
def fake_launch(monkeypatch):
    """``launch`` replaced by a trainer that writes a finished run the way the real ones do."""
    calls = []

    def launch(entry, job_path, accelerate_config="cpu.yaml", num_processes=None, env=None, prefix=""):
        job = json.loads(open(job_path).read())
        out = job["output_dir"]
        calls.append(out)
        os.makedirs(f"{out}/model", exist_ok=True)
        with open(f"{out}/model/model.safetensors", "wb") as f:
            f.write(b"trained")
        with open(f"{out}/training_log.json", "w") as f:
            json.dump({"name": entry, "model_dir": f"{out}/model", "global_step": 3, "train": []}, f)

    monkeypatch.setattr(launcher, "launch", launch)
    return calls


def stage_run(tmp_path, cfg, base, train, evals):
    """What the reward_models stage does for one model (``train_one``)."""
    folder = run_dir(tmp_path / "runs", "scalar", asdict(cfg), base, [train, evals])
    job = TrainJob(model=str(base), train_file=str(train), output_dir=str(folder), config=asdict(cfg),
                   eval_file=str(evals))
    return launch_or_reuse("rlbff_lib.reward_models.scalar", job, name="scalar")


def test_a_finished_run_is_reused_and_a_changed_input_gets_a_fresh_run(tmp_path, fake_launch, monkeypatch):
    monkeypatch.setitem(trl_config.TRACKER_PACKAGES, "wandb", ("json",))  # as if wandb were installed
    base, train, evals = old_files(tmp_path)
    cfg = ScalarRMConfig()
    first = stage_run(tmp_path, cfg, base, train, evals)
    assert len(fake_launch) == 1 and first["global_step"] == 3
    assert stage_run(tmp_path, cfg, base, train, evals) == first and len(fake_launch) == 1  # nothing changed
    assert stage_run(tmp_path, replace(cfg, report_to="wandb"), base, train, evals) == first  # a tracker: logging only
    assert len(fake_launch) == 1

    stage_run(tmp_path, replace(cfg, learning_rate=2e-3), base, train, evals)  # config changed
    (base / "model.safetensors").write_bytes(b"rlbff weights v2\n")  # base model retrained
    stage_run(tmp_path, cfg, base, train, evals)
    evals.write_text('{"b": 3}\n')  # a data file edited
    stage_run(tmp_path, cfg, base, train, evals)
    stage_run(tmp_path, replace(cfg, trl_args={"neftune_noise_alpha": 5.0}), base, train, evals)  # pass-through set
    assert len(fake_launch) == 5 and len(set(fake_launch)) == 5
    for out in fake_launch:  # each run reused now that it is finished
        assert finished_run(out, json.loads(open(f"{out}/job.json").read())["config"]) is not None


def test_an_unfinished_run_is_launched_again_in_the_same_folder(tmp_path, fake_launch):
    base, train, evals = old_files(tmp_path)
    folder = run_dir(tmp_path / "runs", "scalar", asdict(ScalarRMConfig()), base, [train, evals])
    (folder / "model").mkdir(parents=True)  # crashed before its final save: a log but no weights
    (folder / "training_log.json").write_text(json.dumps({"model_dir": str(folder / "model")}))
    assert finished_run(folder, asdict(ScalarRMConfig())) is None
    stage_run(tmp_path, ScalarRMConfig(), base, train, evals)
    assert fake_launch == [str(folder)]


def test_a_run_recorded_with_another_config_is_not_reused(tmp_path):
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "model" / "model.safetensors").write_bytes(b"w")
    config = asdict(PolicySFTConfig())
    old = {k: v for k, v in config.items() if k not in NEW_FIELDS_AT_DEFAULT}  # a log from before the new fields
    (out / "training_log.json").write_text(json.dumps({"model_dir": str(out / "model"), "extra": {"config": old}}))
    assert finished_run(out, config)["extra"]["config"] == old
    assert finished_run(out, {**config, "report_to": "wandb"}) is not None  # logging only
    assert finished_run(out, {**config, "sft_steps": 151}) is None
    assert finished_run(out, {**config, "trl_args": {"neftune_noise_alpha": 5.0}}) is None


def test_a_child_that_leaves_no_finished_run_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "launch", lambda *a, **k: None)
    job = TrainJob(model="m", train_file="", output_dir=str(tmp_path / "run"), config={"a": 1})
    with pytest.raises(RuntimeError, match="exited without a finished run"):
        launch_or_reuse("some.trainer", job)


# ------------------------------------------------------------------ publishing


def test_publish_hard_links_and_replaces_the_old_copy(tmp_path):
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"new weights")
    target = tmp_path / "published" / "scalar"
    target.mkdir(parents=True)
    (target / "stale.bin").write_bytes(b"old")
    assert publish(model, target) == target
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]
    assert os.stat(target / "model.safetensors").st_ino == os.stat(model / "model.safetensors").st_ino
    assert sorted(p.name for p in target.parent.iterdir()) == ["scalar"]  # no temporary folders left
