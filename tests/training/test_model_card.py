"""Model cards (issue 15 item 7): every published model folder gets a README.md naming its prompt format, scoring
formula, base model, training data with item counts, parameters, accuracy with its interval, and profile."""
import json
import os

import pytest

from rlbff_lib.reward_models.prompt import PRINCIPLE_PROMPT
from rlbff_lib.training.model_card import KINDS, model_card, run_facts


def test_card_states_every_section_and_never_invents_a_missing_fact():
    card = model_card({"kind": "scalar", "name": "Scalar principle RM", "principle_prompt": PRINCIPLE_PROMPT,
                       "base_model": "Qwen/Qwen3-32B", "profile": "full",
                       "data": [{"file": "data/principles/train.jsonl", "items": 1234, "role": "training"}],
                       "parameters": {"learning_rate": 2e-6, "trl_args": {"neftune_noise_alpha": 5}},
                       "accuracy": [{"set": "validation", "value": 81.25, "ci": [78.0, 84.1], "n": 600, "unit": "%",
                                     "note": "95% Wilson interval"}]})
    assert card.startswith("---\nlibrary_name: transformers\n") and "\nbase_model: Qwen/Qwen3-32B\n" in card
    for section in ("## Prompt format", "## Score", "## Base model", "## Training data", "## Parameters",
                    "## Accuracy", "## Profile"):
        assert section in card
    assert PRINCIPLE_PROMPT in card and 'logit("Yes") − logit("No")' in card
    assert "| `data/principles/train.jsonl` | 1234 | training |" in card
    assert "| `learning_rate` | 2e-06 |" in card and "| `trl_args.neftune_noise_alpha` | 5 |" in card
    assert "| validation | 81.2% | [78.0%, 84.1%] | 600 | 95% Wilson interval |" in card
    assert "`full`: paper scale" in card
    bare = model_card({"kind": "bt", "name": "BT"})
    assert "base_model:" not in bare and "Unknown." in bare and "Not measured" in bare and "Not recorded." in bare
    assert "sigmoid(score_A − score_B)" in bare and "(the RLBFF principle question)" not in bare
    with pytest.raises(ValueError, match="kind: must be one of"):
        model_card({"kind": "nope", "name": "x"})
    assert set(KINDS) == {"scalar", "bt", "genrm", "policy"}


def _tiny_run(tmp_path):
    """A finished run folder as the trainers leave it: run/job.json, run/model/{config.json, weights, README.md}."""
    run = tmp_path / "models" / "rm_runs" / "scalar-abc"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    (run / "model" / "model.safetensors").write_bytes(b"\0" * 64)
    (run / "model" / "README.md").write_text("the trainer's own card\n")
    train, val = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(3)) + "\n")
    val.write_text(json.dumps({"i": 0}) + "\n" + json.dumps({"i": 1}) + "\n")
    (run / "job.json").write_text(json.dumps({"model": "models/assets/base_reward", "train_file": str(train),
                                              "eval_file": str(val), "output_dir": str(run), "config": {"lr": 1}}))
    return run, train


def test_the_card_exists_after_a_tiny_publish_and_names_formula_and_base_model(tmp_path):
    from rlbff_lib.stages.reward_models import RewardModelsConfig, write_model_cards
    from rlbff_lib.training.runs import publish

    run, train = _tiny_run(tmp_path)
    assert run_facts(run / "model")["data"][0] == {"file": str(train), "items": 3, "role": "training"}
    published = tmp_path / "models" / "reward_models"
    publish(run / "model", published / "scalar")
    log = {"model_dir": str(run / "model"), "global_step": 12, "train_loss": 0.41}
    results = {"scalar": {"validation": {"accuracy": 75.0, "ci": [53.1, 88.8], "n": 20}}}
    validation = [{"label": "Yes"}] * 13 + [{"label": "No"}] * 7
    paths = write_model_cards(RewardModelsConfig(), {"scalar": log}, results, published, validation, profile="smoke")
    assert paths == [published / "scalar" / "README.md"]
    card = paths[0].read_text()
    assert 'score = logit("Yes") − logit("No")' in card and PRINCIPLE_PROMPT in card
    assert "`models/assets/base_reward` (a local folder)" in card
    assert f"| `{train}` | 3 | training |" in card and "| 2 | evaluation during training |" in card
    assert "| validation items (principle, response, Yes/No) | 75.0% | [53.1%, 88.8%] | 20 |" in card
    assert "| always the majority label (baseline) | 65.0% | — | 20 |" in card
    assert "- global_step: 12" in card and "| `learning_rate` | 0.001 |" in card and "`smoke`: smoke scale" in card
    # the published folder is hard links into the run: the card replaced the link, the run's file is untouched
    assert (run / "model" / "README.md").read_text() == "the trainer's own card\n"
    assert os.stat(run / "model" / "model.safetensors").st_ino == os.stat(published / "scalar" / "model.safetensors").st_ino


def test_policy_cards_go_in_each_policy_folder_never_in_the_base_model(tmp_path):
    from rlbff_lib.core.params import REPO_ROOT, load_params
    from rlbff_lib.stages.alignment import write_model_cards

    cfg = load_params(REPO_ROOT / "params.yaml", ["alignment"])["alignment"]
    base = tmp_path / "base_policy"
    base.mkdir()
    grpo = [tmp_path / f"grpo-scalar-s{s}" / "model" for s in (0, 1)]
    for g in grpo:
        g.mkdir(parents=True)
    runs = {"scalar": [{"model_dir": str(g), "seed": s, "global_step": 20, "reward": {"label": "scalar RM"}}
                       for s, g in enumerate(grpo)]}
    metrics = {"fulfilment": {"by_reward": {"scalar": {"trained": {"gain": 0.12, "seed_std": 0.02, "n_seeds": 2}}}},
               "policies": {"scalar": {"arena_hard": {"win_rate": 31.5, "ci": [28.0, 35.2],
                                                      "interval": "5%-95% bootstrap quantiles"}}}}
    sft = {"skipped": True, "model_dir": str(base)}
    paths = write_model_cards(cfg, sft, runs, metrics, profile="smoke")
    assert paths == [g / "README.md" for g in grpo] and not (base / "README.md").exists()
    card = paths[1].read_text()
    assert "# GRPO policy, reward: scalar RM, seed 1" in card and "Not a reward model" in card
    assert ("| fulfilment of the trained principles, gain over SFT | 12.0 pts | — | 2 | mean over this reward's 2 "
            "training seed(s); seed std 2.0 pts; items: seeds |") in card
    assert "| — | 512 | prompts generated from the synthetic world (alignment.grpo.n_prompts) |" in card
    assert "| Arena-Hard v2 win rate | 31.5% | [28.0%, 35.2%] |" in card
