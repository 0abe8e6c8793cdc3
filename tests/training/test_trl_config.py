"""One mapping of our training configs onto TRL's: named fields, the trl_args pass-through and its checks, trackers."""
import shutil
from dataclasses import replace

import pytest
import yaml

from rlbff_lib.alignment.grpo import AlignmentConfig, RewardConfig
from rlbff_lib.alignment.policy import PolicySFTConfig
from rlbff_lib.core.params import REPO_ROOT, ParamError, build, load_params, section_class
from rlbff_lib.reward_models.bradley_terry import BTConfig
from rlbff_lib.reward_models.genrm import GenRMGRPOConfig
from rlbff_lib.reward_models.scalar import ScalarRMConfig
from rlbff_lib.training import trl_config as T
from rlbff_lib.training.trl_config import trl_config, trl_kwargs


def test_named_fields_reach_the_trl_config_under_trls_names(tmp_path):
    cfg = ScalarRMConfig(learning_rate=0.01, warmup_ratio=0.1, gradient_checkpointing=True, seed=7, eval_steps=5,
                         eval_batch_size=3, max_length=300, save_steps=9, logging_steps=2, max_steps=4)
    args = trl_config(cfg, tmp_path / "scalar-abc" / "checkpoints", has_eval=True)
    assert type(args).__name__ == "SFTConfig"
    assert (args.learning_rate, args.warmup_steps, args.seed, args.data_seed) == (0.01, 0.1, 7, 7)
    assert args.activation_checkpointing is True and args.gradient_checkpointing is True  # 5.23's name and alias
    assert (args.eval_strategy, args.eval_steps, args.per_device_eval_batch_size) == ("steps", 5, 3)
    assert (args.max_length, args.save_steps, args.logging_steps, args.max_steps) == (300, 9, 2, 4)
    assert args.report_to == [] and args.output_dir == str(tmp_path / "scalar-abc" / "checkpoints")
    assert args.run_name == f"{tmp_path.name}/scalar-abc"
    assert trl_config(cfg, tmp_path, has_eval=False).eval_strategy == "no"  # no eval set: no evaluation
    bt = trl_config(BTConfig(center_rewards_coefficient=0.01), tmp_path)
    assert type(bt).__name__ == "RewardConfig" and bt.center_rewards_coefficient == 0.01
    policy = trl_config(PolicySFTConfig(sft_steps=7), tmp_path)
    assert policy.max_steps == 7 and policy.completion_only_loss is True and policy.max_length == 512


def test_grpo_fields_whose_trl_defaults_differ_from_the_paper_are_set_from_params(tmp_path):
    kw = trl_kwargs(AlignmentConfig(), tmp_path)
    for name in ("learning_rate", "beta", "epsilon", "epsilon_high", "loss_type", "scale_rewards",
                 "use_bias_correction_kl", "vllm_importance_sampling_correction", "activation_checkpointing",
                 "bf16", "num_generations", "max_completion_length", "temperature", "top_p", "num_iterations"):
        assert name in kw, name
    args = trl_config(AlignmentConfig(beta=0.0, use_bias_correction_kl=False, loss_type="grpo",
                                      scale_rewards="batch", epsilon_high=0.3,
                                      chat_template_kwargs={"enable_thinking": True}), tmp_path)
    assert (args.beta, args.use_bias_correction_kl, args.loss_type, args.scale_rewards, args.epsilon_high) == (
        0.0, False, "grpo", "batch", 0.3)
    assert args.chat_template_kwargs == {"enable_thinking": True} and args.remove_unused_columns is False
    assert args.log_completions is False  # no tracker
    genrm = trl_config(GenRMGRPOConfig(), tmp_path)
    assert genrm.learning_rate == 2e-4 and genrm.beta == 0.01 and genrm.use_bias_correction_kl is True


def test_the_full_profile_sets_nemo_rls_kl_and_importance_sampling(tmp_path):
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["profile"] = "full"
    (tmp_path / "profiles").mkdir()
    shutil.copy(REPO_ROOT / "profiles" / "full.yaml", tmp_path / "profiles" / "full.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    full = load_params(tmp_path / "params.yaml", sections=["reward_models", "alignment"])
    smoke = load_params(REPO_ROOT / "params.yaml", sections=["reward_models", "alignment"])
    for cfgs, expected in ((full, False), (smoke, True)):
        for grpo in (cfgs["reward_models"].genrm.grpo, cfgs["alignment"].grpo):
            assert grpo.use_bias_correction_kl is expected and grpo.vllm_importance_sampling_correction is expected
            assert (grpo.beta, grpo.loss_type, grpo.scale_rewards, grpo.epsilon_high) == (0.01, "dapo", "group", 0.28)


def test_trl_args_pass_any_other_trl_field_through(tmp_path):
    cfg = ScalarRMConfig(trl_args={"neftune_noise_alpha": 5.0, "dataloader_num_workers": 2})
    args = trl_config(cfg, tmp_path)
    assert args.neftune_noise_alpha == 5.0 and args.dataloader_num_workers == 2  # the latter overrides our default
    grpo = trl_config(replace(AlignmentConfig(), trl_args={"top_k": 20, "mask_truncated_completions": True}), tmp_path)
    assert grpo.top_k == 20 and grpo.mask_truncated_completions is True


@pytest.mark.parametrize("section, raw, needle", [
    ("reward_models", {"scalar": {"trl_args": {"foo": 1}}}, "reward_models.scalar.trl_args.foo: not a field of trl.SFTConfig"),
    ("reward_models", {"bt": {"trl_args": {"num_generations": 4}}}, "reward_models.bt.trl_args.num_generations: not a field of trl.RewardConfig"),
    ("reward_models", {"scalar": {"trl_args": {"learning_rate": 0.1}}}, "reward_models.scalar.trl_args.learning_rate: set by learning_rate"),
    ("reward_models", {"genrm": {"sft": {"trl_args": {"warmup_steps": 3}}}}, "reward_models.genrm.sft.trl_args.warmup_steps: set by warmup_ratio"),
    ("reward_models", {"genrm": {"grpo": {"trl_args": {"log_completions": True}}}}, "genrm.grpo.trl_args.log_completions: set by report_to"),
    ("alignment", {"grpo": {"trl_args": {"beta": 0.1}}}, "alignment.grpo.trl_args.beta: set by beta"),
    ("alignment", {"grpo": {"trl_args": {"output_dir": "x"}}}, "alignment.grpo.trl_args.output_dir: set by the run folder"),
    ("alignment", {"grpo": {"trl_args": {"remove_unused_columns": True}}}, "trl_args.remove_unused_columns: set by the grpo trainer"),
    ("alignment", {"policy": {"trl_args": {"completion_only_loss": False}}}, "alignment.policy.trl_args.completion_only_loss: set by PolicySFTConfig"),
    ("alignment", {"policy": {"trl_args": "neftune"}}, "alignment.policy.trl_args: expected a mapping"),
    ("reward_models", {"scalar": {"report_to": "mlflow"}}, "reward_models.scalar.report_to: must be one of"),
])
def test_bad_trl_args_and_trackers_name_the_key(section, raw, needle):
    with pytest.raises(ParamError) as e:
        build(section_class(section), raw, section)
    assert needle in str(e.value)


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "trackio"])
def test_a_tracker_must_be_installed_and_turns_on_grpo_completion_logs(tracker, tmp_path, monkeypatch):
    import importlib.util

    if not any(importlib.util.find_spec(p) for p in T.TRACKER_PACKAGES[tracker]):
        with pytest.raises(ValueError, match=f"^report_to: {tracker} needs the package"):
            ScalarRMConfig(report_to=tracker)
    monkeypatch.setitem(T.TRACKER_PACKAGES, tracker, ("json",))  # as if installed
    kw = trl_kwargs(AlignmentConfig(reward=RewardConfig(backend="checker"), report_to=tracker), tmp_path)
    assert kw["report_to"] == tracker and kw["log_completions"] is True
    assert trl_kwargs(ScalarRMConfig(report_to=tracker), tmp_path)["report_to"] == tracker
