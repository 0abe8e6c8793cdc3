"""What `dvc metrics show` / `dvc exp show` compare: each stage's headline (metrics/NAME.json) built from its
details (outputs/details/NAME.json) by the stage module's ``headline_metrics``, from small hand-made details in
the shapes the stages write; and the committed headline files, few enough values to read (issue 15)."""
import importlib
import json
import math

import pytest
import yaml

from rlbff_lib.core.params import REPO_ROOT as ROOT
from rlbff_lib.core.stage import headline_numbers
from rlbff_lib.stages import assets, data, principles, report, reward_models

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
MAX_VALUES = 150  # issue 15: `dvc metrics show` prints fewer than this many values


def _ci(v, lo, hi):
    return {"accuracy": v, "ci_low": lo, "ci_high": hi}


def test_data_headline_counts_records():
    summary = {"records": 6, "records_per_domain": {"code": 2, "general": 4}, "feedback_texts": 30,
               "principle_records": 0, "preference": {"labelled": 5, "tie": 0.2, "histogram": {"0": 1, "1": 4}},
               "properties": {"concise": {"responses": 12, "yes_share": 0.5, "domains": {"code": 4, "general": 8}}}}
    assert data.headline_metrics(summary) == {"records": 6, "records_per_domain": {"code": 2, "general": 4},
                                              "feedback_texts": 30, "principle_records": 0,
                                              "preferences_labelled": 5}
    released = data.headline_metrics({"records": 3, "records_per_domain": {"stem": 3}, "feedback_texts": 9,
                                      "principle_records": 7})  # no preference labels: not measured
    assert headline_numbers(released) == {"records": 3, "records_per_domain": {"stem": 3}, "feedback_texts": 9,
                                          "principle_records": 7}


def test_assets_headline_is_the_final_pretraining_loss_per_role():
    curve = [{"step": 20, "loss": 6.7}, {"step": 40, "loss": 3.1}]
    summary = {"models": {"policy": {"name_or_path": "models/assets/base_policy", "parameters": 1000,
                                     "pretrain_curve": curve},
                          "reward": {"name_or_path": "Qwen/Qwen3-32B"}},  # a hub model: not pretrained here
               "tokenizer": {"source": "train", "vocab_size": 600}, "pretrain_tokens": 5000,
               "embedder": {"dim": 384, "probe_cosine": {"a | b": 0.5}}}
    assert headline_numbers(assets.headline_metrics(summary)) == {
        "pretrain_final_loss": {"policy": 3.1}, "parameters": {"policy": 1000}, "vocab_size": 600,
        "pretrain_tokens": 5000}


PRINCIPLES = {
    "source": "feedback",
    "funnel": {"0_extracted": {"count": 100}, "1_valid": {"count": 98}, "2_evidence": {"count": 90},
               "3_helpfulness": {"count": 80}, "4_partially": {"count": 70}, "5_consensus": {"count": 30},
               "6_items": {"count": 12, "paper_count": 33000}},
    "datasets": {"items": 12, "train": 8, "validation": 2, "principlebench": 2, "principlebench_pairs": 1,
                 "bench_pool": 2, "prompts_per_split": {"train": 4}, "split_method": "official"},
    "pairs": {"pairs": 9, "ties_dropped": 1},
    "extraction": {"failure_share": 0.01, "failed_examples": [{"item_id": "x", "reason": "y"}], "model": "m"},
    "synthetic": {"accuracy_before_consensus": 0.8, "accuracy_before_consensus_ci": [0.75, 0.85],
                  "accuracy_after_consensus": 0.95, "accuracy_after_consensus_ci": [0.9, 0.98],
                  "mapping": {"is concise": {"property": "concise", "how": "exact", "similarity": 1.0}}},
    "consensus": {"sweep": {"0.8": {"items": 12, "accuracy": 0.95, "ci": [0.9, 0.98]}}},
}


def test_principles_headline_counts_and_accuracy_before_and_after_consensus():
    assert principles.headline_metrics(PRINCIPLES) == {
        "extracted": 100, "after_filters": 70, "after_consensus": 30, "items": 12, "train_items": 8,
        "validation_items": 2, "principlebench_items": 2, "principlebench_pairs": 1, "preference_pairs": 9,
        "extraction_failure_share": 0.01,
        "accuracy_vs_truth": {"before_consensus": _ci(0.8, 0.75, 0.85), "after_consensus": _ci(0.95, 0.9, 0.98)}}
    released = {"source": "released", "released": {"records": 40, "items": 35},
                "datasets": {"items": 35, "train": 30, "validation": 5, "principlebench": 0, "principlebench_pairs": 0},
                "pairs": {"pairs": 0}}
    assert headline_numbers(principles.headline_metrics(released)) == {
        "items": 35, "train_items": 30, "validation_items": 5, "principlebench_items": 0, "principlebench_pairs": 0,
        "preference_pairs": 0}


def test_reward_models_headline_is_validation_accuracy_with_its_interval():
    metrics = {"validation": {"accuracy": {"scalar": 70.0, "genrm": 55.0}, "ci": {"scalar": [66.0, 74.0],
                                                                              "genrm": [42.5, 66.9]},
                              "n": {"scalar": 600, "genrm": 60}, "majority_baseline": 54.9},
               "models": {"scalar": {"validation": {"groups": {"code": {"accuracy": 60.0}}}}},
               "training": {"scalar": {"train_loss": 0.7, "steps_per_rank": [600]}}}
    assert reward_models.headline_metrics(metrics) == {
        "validation": {"scalar": _ci(70.0, 66.0, 74.0) | {"n": 600}, "genrm": _ci(55.0, 42.5, 66.9) | {"n": 60}},
        "validation_majority": 54.9}


def test_rm_eval_headline_has_one_principlebench_number_per_model():
    rm_eval = pytest.importorskip("rlbff_lib.stages.rm_eval")
    metrics = {"order": ["scalar", "bt"], "models": {
        "bt": {"principlebench": {"accuracy": 58.0, "ci": [54.0, 62.0], "n": 754, "majority": 50.0, "groups": {}},
               "principlebench_pairs": {"accuracy": 63.0, "ci": [47.0, 77.0], "n": 38},
               "rmbench": {"overall": 49.0, "easy": 64.0, "ci": {"easy": [44.0, 80.0]}},
               "judgebench": {"overall": 51.5, "ci": [39.3, 63.8], "groups": {"code": {"accuracy": 14.0}}}},
        "scalar": {"principlebench": {"accuracy": 64.0, "ci": [60.8, 67.7], "n": 754},
                   "principlebench_pairs": {"accuracy": 65.8, "ci": [49.9, 78.8], "n": 38},
                   "rmbench": None, "judgebench": {"overall": 51.7}}},
        "paper": {"scalar": {"principlebench": 91.6}}, "principle_sweep": {"phrasings": {}}, "seconds": 117.0,
        "principlebench_paired": {"scalar_vs_bt": {
            "a": "scalar", "b": "bt", "n": 754, "both": 400, "only_a": 83, "only_b": 38, "neither": 233,
            "accuracy_a": 64.1, "accuracy_b": 58.1, "difference": 6.0, "ci": [3.2, 8.8], "p_value": 5.1e-05,
            "excludes_zero": True, "test": "exact McNemar", "interval": "percentile bootstrap over items, 95%",
            "n_bootstrap": 2000, "seed": 0}}}
    headline = rm_eval.headline_metrics(metrics)
    assert headline == {"principlebench": {"scalar": _ci(64.0, 60.8, 67.7) | {"n": 754},
                                           "bt": _ci(58.0, 54.0, 62.0) | {"n": 754}},
                        "rmbench": {"scalar": None, "bt": 49.0}, "judgebench": {"scalar": 51.7, "bt": 51.5},
                        "principlebench_paired": {"scalar_vs_bt": {"difference": 6.0, "ci_low": 3.2, "ci_high": 8.8,
                                                                   "p_value": 5.1e-05, "n": 754}}}
    assert list(headline["principlebench"]) == ["scalar", "bt"]  # the config's order
    assert headline_numbers(headline)["principlebench_paired"] == headline["principlebench_paired"]  # numbers only


def test_alignment_headline_is_fulfilment_gain_with_interval_and_benchmarks_per_policy():
    alignment = pytest.importorskip("rlbff_lib.stages.alignment")
    gain = lambda g, lo, hi, p: {"gain": g, "ci": [lo, hi], "p_value": p, "n_seeds": 3, "seed_std": 0.05,
                                 "test": "welch"}
    metrics = {
        "fulfilment": {"gain": {"mean": 0.1, "ci": [0.02, 0.18], "p_value": 0.03, "n_seeds": 3},
                       "by_reward": {"scalar": {"trained": gain(0.1, 0.02, 0.18, 0.03),
                                                "held_out": gain(0.01, -0.1, 0.12, 0.8),
                                                "mean_tokens": gain(5.0, -1.0, 11.0, 0.09)},
                                     "bt": {"trained": gain(-0.2, -0.5, 0.1, 0.2), "held_out": gain(0.2, 0.1, 0.3, 0.01)}},
                       "per_run": {"scalar s0": {"rates": {"concise": 0.9}}}},
        "policies": {"sft": {"label": "SFT", "mt_bench": {"overall": 5.9, "per_policy": [5.9]},
                             "arena_hard": {"win_rate": 60.7, "ci": [50.0, 70.3], "categories": {}}, "wildbench": None},
                     "scalar": {"label": "GRPO", "mt_bench": {"overall": 5.8}, "arena_hard": None,
                                "wildbench": {"wb_score": {"task_macro": 12.5}}}},
        "curves": {"scalar s0": [{"step": 1, "reward": 0.1}]},
    }
    trained = lambda g, lo, hi, p: {"gain": g, "ci_low": lo, "ci_high": hi, "p_value": p}
    assert headline_numbers(alignment.headline_metrics(metrics)) == {
        "fulfilment_gain": {"scalar": {"trained": trained(0.1, 0.02, 0.18, 0.03), "held_out": trained(0.01, -0.1, 0.12, 0.8)},
                            "bt": {"trained": trained(-0.2, -0.5, 0.1, 0.2), "held_out": trained(0.2, 0.1, 0.3, 0.01)}},
        "seeds": 3, "mt_bench": {"sft": 5.9, "scalar": 5.8},
        "arena_hard": {"sft": {"win_rate": 60.7, "ci_low": 50.0, "ci_high": 70.3}},
        "wildbench": {"scalar": 12.5}}
    assert headline_numbers(alignment.headline_metrics({"fulfilment": None, "policies": {}})) == {}


def test_report_headline_counts_inputs_and_figures():
    details = report.report_metrics({"principles": {}, "rm_eval": {}}, ["data", "assets"], "smoke",
                                    ["figures/report_funnel.png", "figures/report_curves.png"])
    assert report.headline_metrics(details) == {"inputs_present": len(report.INPUTS) - 2, "inputs_missing": 2,
                                                "figures": 2}


def test_report_depends_on_the_details_it_reads():
    deps = STAGES["report"]["deps"]
    assert set(report.INPUTS.values()) <= set(deps)
    assert not [d for d in deps if d.startswith("metrics/") and d.removeprefix("metrics/").removesuffix(".json")
                in STAGES]  # a stage's headline is not what the report reads


def _leaves(x) -> int:
    """Values as ``dvc metrics show --json`` holds them (a list counts each element)."""
    if isinstance(x, dict):
        return sum(_leaves(v) for v in x.values())
    if isinstance(x, list):
        return sum(_leaves(v) for v in x)
    return 1


def test_committed_headline_files_are_few_numbers_from_the_committed_details():
    """Every file under `metrics:` in dvc.yaml (what `dvc metrics show` lists): numbers only, fewer than 150 values in
    all, and exactly the headline of the stage's committed outputs/details/NAME.json."""
    total = 0
    for name, stage in STAGES.items():
        for entry in stage.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            headline = json.loads((ROOT / path).read_text())
            assert headline_numbers(headline) == headline, path
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in _flat(headline)), path
            total += _leaves(headline)
        details = json.loads((ROOT / "outputs" / "details" / f"{name}.json").read_text())
        module = importlib.import_module(f"rlbff_lib.stages.{name}")
        assert json.loads((ROOT / "metrics" / f"{name}.json").read_text()) == \
            headline_numbers(module.headline_metrics(details)), name
    assert 0 < total < MAX_VALUES, total


def _flat(d):
    for v in d.values():
        yield from (_flat(v) if isinstance(v, dict) else [v])


@pytest.mark.parametrize("name", list(STAGES))
def test_each_notebook_writes_its_metrics_through_write_metrics(name):
    source = "".join("".join(c["source"]) for c in json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
                     if c["cell_type"] == "code")
    assert f'write_metrics(out, "{name}", ' in source and ".headline_metrics)" in source
    assert f'"metrics/{name}.json"' not in source
