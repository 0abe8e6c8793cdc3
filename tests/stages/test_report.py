"""The report: every figure and table from small hand-made metrics, missing inputs said plainly."""
import json

import pytest

from rlbff_lib.stages import report as R
from rlbff_lib.core.io import DataError

PRINCIPLES = {
    "funnel": {
        "0_extracted": {"count": 1000},
        "1_valid": {"count": 1000, "removed_share_of_step": 0.0},
        "2_evidence": {"count": 980, "removed_share_of_step": 0.02, "paper_removed_share": 0.022},
        "3_helpfulness": {"count": 700, "removed_share_of_step": 0.2857},
        "4_partially": {"count": 600, "removed_share_of_step": 0.1429},
        "5_consensus": {"count": 120, "removed_share_of_step": 0.8},
        "6_items": {"count": 40, "share_of_extracted": 0.04},
    },
    "consensus": {"threshold": 0.8, "distinct_principles": 3,
                  "sweep": {"0.7": {"items": 60, "accuracy": 0.9}, "0.8": {"items": 40, "accuracy": 0.95},
                            "0.9": {"items": 10, "accuracy": 1.0}}},
    "top_principles": {"after_consensus": {"is concise": {"items": 30, "yes_share": 0.4},
                                           "correctness": {"items": 10, "yes_share": 0.5}},
                       "after_partially": {"is concise": 300, "correctness": 200, "clarity": 100}},
    "labels": {"after_partially": {"yes_share": 0.55}},
    "principles_per_feedback": {"after_consensus": {"texts_with_one_or_more": {"mean": 1.1, "std": 0.3}}},
    "synthetic": {"accuracy_after_consensus": 0.95},
}
RM_EVAL = {"models": {
    "scalar": {"label": "scalar RM", "kind": "scalar", "model": {"parameters": 1_312_128},
               "rmbench": {"groups": {"chat": {"score": 61.0}, "code": {"score": 55.0}, "safety": {"score": 70.0}},
                           "easy": 70.0, "normal": 60.0, "hard": 50.0, "overall": 62.0, "missing": ["math"]},
               "judgebench": {"knowledge": 51.0, "reasoning": 52.0, "math": 53.0, "code": 54.0, "overall": 52.5},
               "principlebench": {"accuracy": 88.0, "majority": 50.0}},
    "bt": {"label": "BT", "kind": "bt", "rmbench": None, "judgebench": None, "principlebench": 71.0},
}}
ALIGNMENT = {
    "policies": {"rlbff": {"label": "policy + RLBFF", "mt_bench": {"scores": {"overall": 4.25}},
                           "arena_hard": {"win_rate": 20.0, "ci": [17.0, 23.5]}},
                 "base": {"label": "base policy", "mt_bench": 3.5, "arena_hard": 12.0}},
    "fulfilment": {"before": {"rates": {"concise": 0.2, "bulleted_list": 0.5}, "trained": 0.35},
                   "after": {"rates": {"concise": 0.6, "bulleted_list": 0.7}, "trained": 0.65},
                   "gain": {"mean": 0.3, "std": 0.05},
                   "seeds": [{"seed": 0, "gain": 0.28}, {"seed": 1, "gain": 0.32}]},
    "curves": [{"step": s, "reward": 0.1 * s, "kl": 0.01 * s, "completion_length": 40 + 2 * s} for s in range(1, 6)],
}
HOST = {"cpu": "Test CPU", "cores": 2, "gpu": None}


def test_paper_numbers_match_the_reference_and_the_rm_eval_table():
    assert R.PAPER["threshold"][0.8] == {"items": 33_000, "rmbench": 83.6, "judgebench": 76.3}
    assert R.PAPER["threshold"][0.7]["items"] == 95_000 and R.PAPER["threshold"][0.9]["judgebench"] == 73.7
    assert R.PAPER["funnel_removed"] == {"evidence": 0.022, "helpfulness": 0.045, "partially": 0.138}
    rlbff = next(r for r in R.PAPER["alignment"] if r["key"] == "rlbff")
    assert (rlbff["mt_bench"], rlbff["arena_hard"], rlbff["arena_ci"]) == (9.50, 55.6, (-1.6, 1.4))
    rm_eval = pytest.importorskip("rlbff_lib.stages.rm_eval")
    for kind, row in rm_eval.PAPER_ROWS.items():  # the rm_eval stage's copy agrees with ours
        ours = R.PAPER["reward_models"][kind]
        assert (ours["rmbench"], ours["judgebench"], ours["principlebench"]) == (
            row["rmbench"], row["judgebench"], row["principlebench"]), kind


def test_load_inputs_lists_missing_and_rejects_broken_json(tmp_path):
    """The stages' details (outputs/details/), the rm_eval table and the secrets ablation (metrics/); a stage's
    headline metrics/NAME.json is not an input."""
    (tmp_path / "outputs" / "details").mkdir(parents=True)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "outputs" / "details" / "principles.json").write_text(json.dumps(PRINCIPLES))
    (tmp_path / "metrics" / "rm_eval.md").write_text("# RM table\n")
    (tmp_path / "metrics" / "data.json").write_text(json.dumps({"records": 2000}))
    found, missing = R.load_inputs(tmp_path)
    assert set(found) == {"principles", "rm_eval_md"} and found["principles"] == PRINCIPLES
    assert missing == ["data", "assets", "reward_models", "rm_eval", "alignment", "secrets"]
    (tmp_path / "outputs" / "details" / "alignment.json").write_text('{"curves": [')
    with pytest.raises(DataError, match=r"outputs/details/alignment.json, line 1: invalid JSON"):
        R.load_inputs(tmp_path)


def test_scale_text_says_profile_models_data_and_hardware():
    inputs = {"assets": {"models": {"policy": {"name_or_path": "models/assets/base_policy", "parameters": 1_312_128},
                                    "reward": {"name_or_path": "models/assets/base_reward", "parameters": 1_312_128}}},
              "data": {"properties": {"concise": {}}, "records": 2000, "feedback_texts": 12000}}
    text = R.scale_text(inputs, "smoke", HOST)
    assert text == ("smoke profile: 1.3M-parameter Qwen3 built from a config (policy and reward) on a synthetic "
                    "feedback world of 2,000 prompts (12,000 feedback texts); CPU only (Test CPU, 2 cores)")
    full = R.scale_text({"assets": {"models": {"reward": {"name_or_path": "meta-llama/Llama-3.3-70B-Instruct",
                                                          "parameters": 70.6e9}}},
                         "data": {"records": 40821, "feedback_texts": 200000}}, "full", {"gpu": "8× H200"})
    assert "70.6B-parameter meta-llama/Llama-3.3-70B-Instruct" in full and "HelpSteer3, 40,821" in full
    assert "GPU: 8× H200" in full
    assert "outputs/details/assets.json missing" in R.scale_text({}, "smoke", HOST)


def test_funnel_and_threshold_put_the_paper_beside_ours():
    rows = R.funnel_rows(PRINCIPLES)
    assert [r["step"] for r in rows] == ["evidence", "helpfulness", "partially", "consensus"]
    assert rows[1]["paper_removed_share"] == 0.045 and rows[3]["paper_removed_share"] is None
    table = R.principles_summary_table(PRINCIPLES)
    assert "| removed by `helpfulness` (share of the step's input) | 28.6% | 4.5% |" in table
    assert "| items / extracted principles | 4.00% | 2.75% |" in table
    assert "1.10 ± 0.30 | 1.27 ± 0.54" in table
    t = {r["threshold"]: r for r in R.threshold_rows(PRINCIPLES)}
    assert t[0.9] == {"threshold": 0.9, "items": 10, "accuracy": 100.0, "paper_items": 11_000,
                      "paper_rmbench": 81.9, "paper_judgebench": 73.7}
    assert "| 0.8 | 40 | 95.0 | ~33,000 | 83.6 | 76.3 |" in R.threshold_table(PRINCIPLES)
    assert "| 0.7 | — | — | ~95,000 | 82.8 | 72.3 |" in R.threshold_table(None)


def test_reward_model_table_reads_flat_and_grouped_results():
    cells = R.rm_cells(RM_EVAL["models"]["scalar"])
    assert cells["rmbench.chat"] == 61.0 and cells["rmbench.math"] is None and cells["rmbench.overall"] == 62.0
    assert cells["judgebench.code"] == 54.0 and cells["principlebench"] == 88.0
    assert R.rm_cells(RM_EVAL["models"]["bt"])["principlebench"] == 71.0
    rows, ours = R.rm_rows(RM_EVAL)
    assert ours == [0, 2]
    assert rows[0][0] == "ours: scalar RM [1.3M]" and rows[1][0] == "paper: Flexible-principles scalar RM (RLBFF)"
    assert rows[1][-1] == "91.6" and rows[0][-1] == "88.0"
    assert len(rows) == 2 + len(R.PAPER["reward_models"])  # every paper row shown once
    table = R.rm_table(RM_EVAL)
    assert "| ours: BT | — |" in table and table.count("paper: ") == len(R.PAPER["reward_models"])
    assert "outputs/details/rm_eval.json is missing" in R.rm_table(None)


def test_principlebench_paired_result_orders_models_only_when_its_interval_excludes_zero():
    def pair(a, b, diff, lo, hi, p, n=754):
        return {"a": a, "b": b, "n": n, "only_a": 80, "only_b": 30, "difference": diff, "ci": [lo, hi], "p_value": p}

    def pb(acc, lo, hi, n):
        return {"accuracy": acc, "ci": [lo, hi], "n": n}

    rm_eval = {"models": {
        "scalar": {"label": "scalar RM", "kind": "scalar", "principlebench": pb(65.0, 61.5, 68.3, 754)},
        "bt": {"label": "BT", "kind": "bt", "principlebench": pb(58.4, 54.8, 61.8, 754)},
        "genrm": {"label": "GenRM", "kind": "genrm", "principlebench": pb(70.0, 57.5, 80.1, 60)}},
        "principlebench_paired": {"scalar_vs_bt": pair("scalar", "bt", 6.6, 3.4, 9.8, 4.2e-05),
                                  "scalar_vs_genrm": pair("scalar", "genrm", -3.3, -13.3, 6.7, 0.61, 60),
                                  "bt_vs_genrm": pair("bt", "genrm", -10.0, -20.0, -1.7, 0.065, 60)}}
    table = R.rm_table(json.loads(json.dumps(rm_eval, sort_keys=True)) | {"order": ["scalar", "bt", "genrm"]})
    lines = {l.split(":")[0]: l for l in table.splitlines() if l.startswith("- ")}
    assert list(lines) == ["- scalar RM − BT", "- scalar RM − GenRM", "- BT − GenRM"]  # the models' order
    # the Wilson intervals touch (61.5 < 61.8), the paired interval excludes 0: an order, and both intervals kept
    assert lines["- scalar RM − BT"] == (
        "- scalar RM − BT: +6.6 points [+3.4, +9.8] on 754 common items, McNemar exact p = 4.2e-05: **scalar RM "
        "ranks above BT**, although their Wilson intervals overlap. Alone (Wilson 95%): scalar RM 65.0 [61.5, 68.3] "
        "on 754 items vs BT 58.4 [54.8, 61.8] on 754 items.")
    assert lines["- scalar RM − GenRM"].endswith(
        "McNemar exact p = 0.61: the paired interval includes 0, no order is claimed. Alone (Wilson 95%): scalar RM "
        "65.0 [61.5, 68.3] on 754 items vs GenRM 70.0 [57.5, 80.1] on 60 items.")
    assert ("**GenRM ranks above BT**, although their Wilson intervals overlap (the exact test alone would not say "
            "so at 5%). Alone") in lines["- BT − GenRM"]
    rm_eval["models"]["genrm"]["principlebench"]["ci"] = [62.0, 77.0]  # apart from BT's: nothing to add
    assert "**GenRM ranks above BT** (the exact" in R.principlebench_paired_text(rm_eval)
    assert "percentile-bootstrap interval over items" in table and "exact McNemar test" in table
    assert R.principlebench_paired_text(RM_EVAL) == "" and R.principlebench_paired_text(None) == ""
    assert "ranks above" not in R.rm_table(RM_EVAL)
    flat = {"models": RM_EVAL["models"], "principlebench_paired": {"x": pair("scalar", "bt", 17.0, 9.0, 25.0, 1e-6)}}
    assert R.principlebench_paired_text(flat).endswith(  # BT's flat number: no interval to compare
        "**scalar RM ranks above BT**. Alone (Wilson 95%): scalar RM 88.0 vs BT 71.0.")


def test_alignment_rows_from_either_shape():
    rows = {r["name"]: r for r in R.alignment_rows(ALIGNMENT)}
    assert rows["rlbff"]["mt_bench"] == 4.25 and rows["rlbff"]["arena_hard"] == 20.0
    assert rows["rlbff"]["arena_ci"] == (-3.0, 3.5) and rows["base"]["arena_ci"] is None
    flat = R.alignment_rows({"mt_bench": {"overall": 5.0}, "arena_hard": {"rlbff": {"win_rate": 30.0}}})
    assert {r["name"]: (r["mt_bench"], r["arena_hard"]) for r in flat} == {"policy": (5.0, None),
                                                                            "rlbff": (None, 30.0)}
    table = R.alignment_table(ALIGNMENT)
    assert "| ours: policy + RLBFF | 4.25 | 20.0 (-3.0/+3.5) | — | — |" in table
    assert "| paper: Qwen3-32B + RLBFF | 9.50 | 55.6 (-1.6/+1.4) | 70.33 | 1× |" in table
    assert "outputs/details/alignment.json is missing" in R.alignment_table(None)


def test_alignment_table_reports_arena_per_category_and_wildbench():
    arena = {"win_rate": 40.0, "ci": [37.0, 43.0], "category": "hard_prompt",
             "categories": {"hard_prompt": {"win_rate": 40.0, "ci": [37.0, 43.0], "baseline": "o3-mini-2025-01-31"},
                            "creative_writing": {"win_rate": 30.0, "ci": [25.0, 36.0],
                                                 "baseline": "gemini-2.0-flash-001"}},
             "pooled": {"label": "ours (pooled)", "win_rate": 36.5, "ci": [33.0, 40.0]}, "skipped": {}}
    wildbench = {"wb_score": {"task_macro": 12.345, "score": 10.0, "n": 8},
                 "wb_reward_mix": None, "missing_references": {"claude-3-haiku-20240307": "not on the hub"}}
    alignment = {"judge": "principle-RM (smoke, not GPT-4)",
                 "policies": {"sft": {"label": "SFT", "mt_bench": 4.0, "arena_hard": arena, "wildbench": wildbench},
                              "bt": {"label": "BT", "mt_bench": 4.5, "arena_hard": None, "wildbench": None}},
                 "wildbench": {"sft": wildbench, "bt": None}}
    rows = {r["name"]: r for r in R.alignment_rows(alignment)}
    assert rows["sft"]["wildbench"] == 12.345 and rows["bt"]["wildbench"] is None
    table = R.alignment_table(alignment)
    assert "| ours: SFT | 4.00 | 40.0 (-3.0/+3.0) | 12.35 | — |" in table
    assert "| ours: BT | 4.50 | — | — | — |" in table
    assert "the paper's rows: GPT-4-Turbo (MT-Bench)" in table
    assert ("- SFT: Arena-Hard hard_prompt vs o3-mini-2025-01-31: 40.0 (-3.0/+3.0); Arena-Hard creative_writing vs "
            "gemini-2.0-flash-001: 30.0 (-5.0/+6.0); Arena-Hard ours (pooled): 36.5 (-3.5/+3.5); WildBench WB-Score "
            "12.35 (task macro; mean-based 10.00, n=8); WB-Reward vs claude-3-haiku-20240307: not available "
            "(not on the hub).") in table
    assert R.alignment_rows({"wildbench": {"wb_score": {"task_macro": 5.0}}})[0]["wildbench"] == 5.0


def test_fulfilment_and_length_reward():
    s = R.fulfilment_summary(ALIGNMENT)
    assert s["before"] == 0.35 and s["after"] == 0.65 and s["gain_mean"] == 0.3 and s["seeds"] == 2
    assert s["per_property"]["concise"] == (0.2, 0.6)
    assert R.fulfilment_summary({"fulfilment": {"before": 0.1, "after": 0.4, "seeds": 3}})["seeds"] == 3
    assert R.length_reward_correlation(ALIGNMENT) == pytest.approx(1.0)
    assert len(R.length_reward_points({"length_reward": [{"length": 3, "reward": 1}, {"length": 4, "reward": 2}]})) == 2
    assert R.length_reward_correlation(None) is None


def test_fulfilment_gain_is_claimed_only_when_its_interval_excludes_zero():
    import copy

    import matplotlib.pyplot as plt

    old = R.fulfilment_sentence(R.fulfilment_summary(ALIGNMENT))  # metrics from before the intervals
    assert "gain 30.0 points ± 5.0 (seed std) over 2 seeds; no interval" in old and "no ordering claimed" in old
    al = copy.deepcopy(ALIGNMENT)
    ful = al["fulfilment"]
    ful["gain"] |= {"ci": [0.05, 0.55], "p_value": 0.031}
    ful["before"]["rates_ci"] = {"concise": [0.1, 0.35], "bulleted_list": [0.35, 0.65]}
    ful["after"]["rates_ci"] = {"concise": [0.45, 0.73], "bulleted_list": [0.55, 0.81]}
    s = R.fulfilment_summary(al)
    assert s["gain_ci"] == [0.05, 0.55] and s["gain_p"] == 0.031 and s["above_noise"] is True
    assert s["per_property_ci"]["concise"] == ([0.1, 0.35], [0.45, 0.73])
    assert R.fulfilment_sentence(s).endswith(
        "gain 30.0 points (95% interval [5.0, 55.0], Welch p = 0.031) over 2 seeds; above noise: the interval lies "
        "above 0.")
    ful["gain"]["ci"] = [-0.1, 0.7]
    s = R.fulfilment_summary(al)
    assert s["above_noise"] is False and "includes 0, so no ordering of before and after is claimed" in \
        R.fulfilment_sentence(s)
    assert "below 0" in R.fulfilment_sentence(R.fulfilment_summary(
        {"fulfilment": {"before": 0.5, "after": 0.2, "gain": {"mean": -0.3, "ci": [-0.5, -0.1]}, "seeds": 3}}))
    fig = R.fulfilment_figure(al)
    assert "95% interval (Welch)" in " ".join(t.get_text() for t in fig.axes[1].get_legend().get_texts())
    plt.close(fig)
    assert R.report_metrics({"alignment": al}, [], "smoke", [])["headline"]["fulfilment"]["gain_ci"] == [-0.1, 0.7]


def test_every_figure_builds_with_full_and_with_no_inputs(tmp_path):
    import matplotlib.pyplot as plt

    full = {"principles": PRINCIPLES, "rm_eval": RM_EVAL, "alignment": ALIGNMENT}
    for inputs in (full, {}):
        figs = R.build_figures(inputs, "smoke profile: test", top_principles=2)
        assert tuple(figs) == R.FIGURES
        texts = {name: " ".join(t.get_text() for ax in f.axes for t in ax.texts) + " ".join(
            ax.get_title() for ax in f.axes) for name, f in figs.items()}
        if not inputs:
            for name in ("funnel", "principles", "rm_bars", "curves", "fulfilment", "length_reward"):
                assert "not available" in texts[name], name
        for f in figs.values():
            plt.close(f)
    written = R.save_figures(R.build_figures(full, "smoke"), tmp_path, svg=True, dpi=60)
    assert len(written) == len(R.FIGURES)
    for p in written:
        assert (tmp_path / p.split("/")[-1]).stat().st_size > 0
        assert (tmp_path / p.split("/")[-1]).with_suffix(".svg").read_text().startswith("<?xml")


def test_report_metrics_list_inputs_and_headline_numbers():
    m = R.report_metrics({"principles": PRINCIPLES, "rm_eval": RM_EVAL, "alignment": ALIGNMENT},
                         ["data", "assets"], "smoke", ["figures/report_funnel.png"])
    assert m["missing"] == ["data", "assets"] and m["inputs"]["principles"] and not m["inputs"]["data"]
    assert m["headline"]["reward_models"]["scalar"] == {
        "rmbench": 62.0, "judgebench": 52.5, "principlebench": 88.0, "paper_rmbench": 83.6,
        "paper_judgebench": 76.3, "paper_principlebench": 91.6}
    assert m["headline"]["alignment"]["rlbff"] == {"mt_bench": 4.25, "arena_hard": 20.0, "wildbench": None}
    assert m["headline"]["fulfilment"]["gain_mean"] == 0.3
    json.dumps(m)  # plain JSON


def test_demote_headings_leaves_code_alone():
    md = "# Title\ntext\n```\n# not a heading\n```\n## Sub"
    assert R.demote_headings(md, 2) == "### Title\ntext\n```\n# not a heading\n```\n#### Sub"


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"^dpi:"):
        R.ReportConfig(dpi=10)
    with pytest.raises(ValueError, match=r"^top_principles:"):
        R.ReportConfig(top_principles=0)


@pytest.mark.slow
def test_report_stage_runs_with_some_metrics_missing_and_exports_markdown(tmp_path):
    """The stage through papermill in a folder holding only two stages' details: figures (PNG + SVG),
    outputs/details/report.json listing what was missing, metrics/report.json counting it, and reports/report.md
    referencing figures/."""
    import shutil

    from rlbff_lib.core.stage import run_stage

    from rlbff_lib.core.params import REPO_ROOT as ROOT
    (tmp_path / "outputs" / "details").mkdir(parents=True)
    (tmp_path / "outputs" / "details" / "principles.json").write_text(json.dumps(PRINCIPLES))
    (tmp_path / "outputs" / "details" / "rm_eval.json").write_text(json.dumps(RM_EVAL))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    run_stage("report", tmp_path / "params.yaml", workdir=tmp_path)
    m = json.loads((tmp_path / "outputs" / "details" / "report.json").read_text())
    assert m["missing"] == ["data", "assets", "reward_models", "rm_eval_md", "alignment", "secrets"]
    headline = json.loads((tmp_path / "metrics" / "report.json").read_text())
    assert headline == {"inputs_present": 2, "inputs_missing": 6, "figures": len(R.FIGURES)}
    for name in R.FIGURES:
        assert (tmp_path / "figures" / f"report_{name}.png").stat().st_size > 1000
        assert (tmp_path / "figures" / f"report_{name}.svg").exists()
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "![filter funnel, ours vs paper](../figures/report_funnel.png)" in md
    assert "| ours: scalar RM [1.3M] | 61.0 |" in md and "| paper: Qwen3-32B + RLBFF | 9.50 |" in md
    assert "outputs/details/alignment.json is missing" in md
    assert "import " not in md and "\n\n\n" not in md  # code is left out, blank runs collapsed


def test_secrets_table_reads_the_ablation_and_says_not_run():
    assert R.secrets_table(None).startswith("Secrets of RLHF II ablation: not run")
    res = lambda a, lo, hi: {"accuracy": a, "ci": [lo, hi], "n": 100}
    metrics = {
        "setup": {"world": {"n_prompts": 2000, "seed": 0, "preference_mistake_rate": 0.3},
                  "pairs": {"train": 600, "validation": 90}, "mistaken_pairs": {"train": 110, "validation": 15},
                  "bt": {"num_train_epochs": 1.0, "ensemble_size": 4}},
        "strength": {"ensemble": {"auroc": {"auroc": 0.8123, "ci": [0.75, 0.87]}, "mistakes_in_weakest": res(55, 47, 63),
                                  "mistakes_overall": res(18, 15, 21)}},
        "variants": {"smoothing": {"label": "smooth", "validation_pairs": res(70, 60, 78),
                                   "principlebench": res(58, 55, 61)},
                     "plain": {"label": "plain BT", "validation_pairs": res(71, 61, 79), "principlebench": res(40, 37, 43)},
                     "flip": {"label": "flip", "validation_pairs": res(72, 62, 80), "n_flipped": 60,
                              "flipped_that_were_mistakes": 33}},
        "thread_check": {"tensors_differing": 40, "tensors": 47, "largest_weight_difference": 2.5e-05,
                         "one_thread": {"principlebench": 40.0}, "two_threads": {"principlebench": 41.2}},
    }
    text = R.secrets_table(metrics)
    assert "train 600 pairs (110 mistaken)" in text and "ensemble of 4" in text
    assert "| ensemble | 0.812 [0.750, 0.870] | 55.0 [47.0, 63.0] | 18.0 [15.0, 21.0] |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "[" in line and "ensemble |" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| plain BT", "| flip", "| smooth"]  # plain first
    assert "| flip | 72.0 [62.0, 80.0] | — | — | — | 60 (33) |" in text
    assert "Apart from the plain BT's: smooth on PrincipleBench items." in text  # [55, 61] vs [37, 43]
    assert "40 of 47 weight tensors differ (largest difference 2.5e-05)" in text and "PrincipleBench items 40.0 → 41.2" in text
    metrics["variants"]["smoothing"]["principlebench"] = res(42, 39, 45)
    assert "no ordering is claimed" in R.secrets_table(metrics)
