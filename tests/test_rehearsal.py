"""The rehearsal profile is the full profile with only the documented substitutions; its local HelpSteer3 copy is
read by the hub's own loading call; the rehearsal runner prepares its scratch tree without touching the repository."""
import dataclasses
import fnmatch
import gzip
import json
import shutil

import pytest

from rlbff_lib.core.params import REPO_ROOT, load_params
from rlbff_lib.evaluation.benchmarks import benchmarks_dir

# The documented substitutions (README, profiles section): dotted keys of the merged params, shell patterns.
SUBSTITUTIONS = {
    "models": ["assets.tokenizer.source", "assets.models.*.name_or_path", "assets.models.*.family",
               "assets.embedder.name_or_path", "principles.embedder.name_or_path", "alignment.policy.name_or_path"],
    "sizes": ["data.world.n_prompts", "assets.tokenizer.vocab_size", "assets.models.*.hidden_size",
              "assets.models.*.num_hidden_layers", "assets.models.*.num_attention_heads",
              "assets.models.*.num_key_value_heads", "assets.models.*.head_dim", "assets.models.*.intermediate_size",
              "assets.models.*.max_position_embeddings", "assets.pretrain.steps", "assets.pretrain.batch_size",
              "assets.pretrain.seq_len", "principles.extraction.concurrency", "reward_models.genrm_eval_limit",
              "*.per_device_train_batch_size", "*.gradient_accumulation_steps", "*.max_length", "*.eval_batch_size",
              "*.logging_steps", "*.save_steps", "*.max_steps", "*.num_generations", "*.max_prompt_length",
              "*.max_completion_length", "reward_models.genrm.eval_max_new_tokens", "rm_eval.models.*.batch_size",
              "rm_eval.models.*.max_new_tokens", "rm_eval.models.*.limits.*", "alignment.seeds",
              "alignment.grpo.n_prompts", "alignment.grpo.reward.genrm_max_new_tokens",
              "alignment.grpo.reward.judge_concurrency", "alignment.fulfilment.n_prompts",
              "alignment.fulfilment.max_new_tokens", "alignment.fulfilment.batch_size", "alignment.evaluation.mtbench_limit",
              "alignment.evaluation.arena_limit", "alignment.evaluation.max_new_tokens",
              "alignment.evaluation.judge_max_length", "alignment.wildbench.limit"],
    "lr": ["*.learning_rate"],
    "endpoints": ["principles.extraction.base_url", "principles.extraction.model", "principles.extraction.api_key_env",
                  "alignment.grpo.reward.judge_base_url", "alignment.grpo.reward.score_url", "alignment.evaluation.judge"],
    "data": ["data.helpsteer3.hub_name", "rm_eval.use_hub", "alignment.wildbench.use_hub"],
    "hardware": ["*.accelerate_config", "*.num_processes", "*.use_vllm", "*.device_map", "*.gradient_checkpointing",
                 "*.trl_args", "rm_eval.torch_threads"],
}


def flatten(value, prefix=""):
    """A params dict (or config dataclass) as {dotted key: leaf value}."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def merged(tmp_path, profile):
    """Every section of params.yaml under ``profile`` (the repository's profiles), validated, flattened."""
    folder = tmp_path / profile
    folder.mkdir()
    text = (REPO_ROOT / "params.yaml").read_text().replace("profile: smoke", f"profile: {profile}", 1)
    (folder / "params.yaml").write_text(text)
    shutil.copytree(REPO_ROOT / "profiles", folder / "profiles")
    params = load_params(folder / "params.yaml")
    assert params["profile"] == profile
    return flatten({k: v for k, v in params.items() if k != "profile"})


def undocumented(full: dict, rehearsal: dict) -> list[str]:
    patterns = [p for group in SUBSTITUTIONS.values() for p in group]
    keys = sorted(set(full) | set(rehearsal))
    return [k for k in keys if full.get(k, "<absent>") != rehearsal.get(k, "<absent>")
            and not any(fnmatch.fnmatchcase(k, p) for p in patterns)]


def test_rehearsal_differs_from_full_only_by_documented_substitutions(tmp_path):
    full, rehearsal = merged(tmp_path, "full"), merged(tmp_path, "rehearsal")
    assert undocumented(full, rehearsal) == []
    changed = {k for k in full if full[k] != rehearsal.get(k)}
    # the substitutions that make it a rehearsal are really there
    assert {"assets.models.policy.name_or_path", "data.helpsteer3.hub_name", "principles.extraction.base_url",
            "alignment.grpo.reward.judge_base_url", "reward_models.accelerate_config"} <= changed
    # ... and the paper's method is not among the changes: the GenRM recipe, the judge, the filters
    for key in ("reward_models.genrm.stages", "reward_models.genrm.enable_thinking", "reward_models.genrm.grpo.beta",
                "reward_models.genrm.grpo.missing_reward", "alignment.rewards", "alignment.grpo.reward.judge_prompt",
                "alignment.grpo.reward.judge_model", "alignment.grpo.chat_template_kwargs.enable_thinking", "data.source",
                "principles.consensus.threshold", "principles.extraction.backend", "assets.pretrain.lr"):
        assert full[key] == rehearsal[key], key
    assert rehearsal["assets.models.policy.family"] == "qwen3" and rehearsal["assets.models.reward.family"] == "llama3"
    assert full["data.source"] == "helpsteer3"


def test_an_undocumented_difference_fails_the_check(tmp_path):
    full, rehearsal = merged(tmp_path, "full"), merged(tmp_path, "rehearsal")
    rehearsal["reward_models.genrm.grpo.beta"] = 0.0
    rehearsal["principles.consensus.threshold"] = 0.5
    assert undocumented(full, rehearsal) == ["principles.consensus.threshold", "reward_models.genrm.grpo.beta"]


def test_the_hub_copy_is_read_by_the_hubs_own_loading_call(tmp_path, monkeypatch):
    """The real card example, written in the hub's layout, comes back through ``load_hub_feedback`` unchanged."""
    from rlbff_lib.core.params import REPO_ROOT as root
    from rlbff_lib.data.sources import HUB_CONFIGS, HelpSteer3Config, load_hub_feedback, write_hub_dataset

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    cards = (benchmarks_dir() or root / "nonexistent") / "helpsteer3-card-examples"
    if not cards.is_dir():
        pytest.skip(f"{cards}: the card examples are not here")
    feedback = json.loads((cards / "feedback_example.json").read_text())
    labels = json.loads((cards / "preference_example_labels.json").read_text())
    record = {**{k: v for k, v in feedback.items() if not k.startswith("_")},
              **{k: labels[k] for k in ("overall_preference", "individual_preference")}}
    second = {**record, "context": [{"role": "user", "content": "Say hi."}], "response1": "Hi!", "response2": "Hello.",
              "feedback1": [], "feedback2": ["The response is perfectly helpful."], "split": "validation"}
    counts = write_hub_dataset([record, second], tmp_path / "HelpSteer3")
    assert counts == {"feedback/train": 1, "feedback/validation": 1, "preference/train": 1, "preference/validation": 1}
    with gzip.open(tmp_path / "HelpSteer3" / "feedback" / "train.jsonl.gz", "rt") as f:
        assert list(json.loads(f.readline())) == list(HUB_CONFIGS["feedback"])  # the hub's fields, nothing else
    got = load_hub_feedback(HelpSteer3Config(hub_name=str(tmp_path / "HelpSteer3")))
    assert [r["split"] for r in got] == ["train", "validation"]
    for want, have in zip([record, second], got):
        for key in (*HUB_CONFIGS["feedback"], "overall_preference", "individual_preference"):
            assert have[key] == want[key], key


def test_the_runner_prepares_a_scratch_tree(tmp_path):
    from rlbff_lib.core.params import read_raw
    from rlbff_lib.stages.rehearsal import prepare_tree

    before = (REPO_ROOT / "params.yaml").read_text()
    params = prepare_tree(tmp_path / "r")
    assert read_raw(params)["profile"] == "rehearsal" and (tmp_path / "r" / "profiles" / "rehearsal.yaml").exists()
    assert (REPO_ROOT / "params.yaml").read_text() == before
