"""The reward_models stage's measurement: validation accuracy only (PrincipleBench is rm_eval's), in percent with
intervals, each model through load_scorer on the window it was trained on."""
import pytest

from rlbff_lib.core.stats import wilson_interval
from rlbff_lib.stages import reward_models as R


def val_item(i, label, response, prop="concise"):
    return {"item_id": f"v{i}", "domain": "general", "property": prop, "principle": "is good", "label": label,
            "context": [{"role": "user", "content": f"prompt {i}"}], "response": response}


class Result:
    def __init__(self, scores):
        self.scores, self.truncated = scores, [False] * len(scores)


def test_evaluate_model_and_stage_metrics_publish_no_principlebench():
    validation = [val_item(i, "Yes" if n > 10 else "No", "z" * n) for i, n in enumerate((3, 6, 12, 15, 9))]

    def length(conversations, responses, principles):  # principle-blind, order perfect, sign useless
        return Result([float(len(r)) for r in responses])

    scalar = R.evaluate_model("scalar", length, validation)
    bt = R.evaluate_model("bt", length, validation)  # threshold fitted on these items
    assert scalar["validation"]["accuracy"] == 40.0 and bt["validation"]["accuracy"] == 100.0
    assert 9 < bt["validation"]["threshold"] < 12 and "calibration" not in bt and "calibration" in scalar
    assert scalar["validation"]["per_property"]["concise"]["n"] == 5
    m = R.stage_metrics({"scalar": scalar, "bt": bt}, {}, validation)
    assert "principlebench" not in m
    assert m["validation"]["accuracy"] == {"scalar": 40.0, "bt": 100.0} and m["validation"]["n"]["bt"] == 5
    assert m["validation"]["ci"]["scalar"] == pytest.approx([100 * x for x in wilson_interval(2, 5)])
    assert m["validation"]["majority_baseline"] == 60.0 and "scores" not in m["models"]["bt"]


def test_measure_loads_each_model_on_its_training_window(tmp_path):
    from rlbff_lib.models.lm import ModelSizeConfig
    from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
    from fakes.tiny_models import save_base

    words = "the response is concise and correct good bad question answer Yes No".split()
    tok = train_tokenizer([" ".join(words[(i * 5 + j) % len(words)] for j in range(9)) for i in range(100)],
                          TokenizerConfig(vocab_size=300, min_frequency=1))
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=2048)
    for name in R.MODELS:
        save_base(tok, size, tmp_path / name)
    from rlbff_lib.core.params import build

    cfg = build(R.RewardModelsConfig, {"genrm_eval_limit": 2, "scalar": {"max_length": 40}, "bt": {"max_length": 50},
                                       "genrm": {"eval_max_new_tokens": 3, "grpo": {"max_prompt_length": 64}}})
    assert R.scorer_settings(cfg, "scalar") == {"max_length": 40, "batch_size": cfg.score_batch_size}
    assert R.scorer_settings(cfg, "genrm")["max_length"] == 64 + 3  # its GRPO prompts + the reasoning budget
    validation = [val_item(i, "Yes" if i % 2 else "No", "good answer " * (i * 4)) for i in range(5)]
    results = R.measure(cfg, ["scalar", "bt", "genrm"], validation, tmp_path)
    assert {n: r["validation"]["n"] for n, r in results.items()} == {"scalar": 5, "bt": 5, "genrm": 2}
    assert results["scalar"]["truncated"] >= 1 and results["genrm"]["judgement_missing"] == 2  # 3 tokens: no verdict
    for r in results.values():
        lo, hi = r["validation"]["ci"]
        assert 0 <= lo <= r["validation"]["accuracy"] <= hi <= 100
