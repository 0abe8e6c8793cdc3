"""Reward-model evaluation: fake scorers with known numbers, PrincipleBench items and pairs, intervals, real tiny
models, the table and figures."""
import json
import math

import pytest

from rlbff_lib.core.stats import percent_interval, wilson_interval
from rlbff_lib.stages import rm_eval as re_
from rlbff_lib.core.params import ParamError, build, to_dict
from rlbff_lib.stages.rm_eval import BenchData, ModelEvalConfig, PrincipleChoiceConfig, RMEvalConfig

# ------------------------------------------------------------------ hand-made data


def rm_record(domain, i, chosen_lens=(10, 20, 30), rejected_lens=(15, 25, 35)):
    """An RM-Bench prompt whose responses have the given lengths; chosen ones say GOOD."""
    return {"domain": domain, "id": i, "prompt": f"question {domain} {i}",
            "chosen": ["GOOD" + "a" * (n - 4) for n in chosen_lens],
            "rejected": ["BAD" + "b" * (n - 3) for n in rejected_lens]}


def jb_pair(pid, source, label, short_is_right=True):
    good, bad = "GOOD ok", "BAD " + "x" * 30
    if not short_is_right:
        good, bad = "GOOD " + "y" * 30, "BAD no"
    a, b = (good, bad) if label == "A>B" else (bad, good)
    return {"pair_id": pid, "original_id": pid, "source": source, "question": f"q {pid}", "response_model": "m",
            "response_A": a, "response_B": b, "label": label}


def item(i, label, response, principle="is good", domain="general"):
    return {"item_id": f"it{i}", "prompt_id": f"p{i}", "domain": domain,
            "context": [{"role": "user", "content": f"prompt {i}"}], "response": response, "principle": principle,
            "label": label}


def pb_pair(i, chosen, rejected, domain="general", principle="is good"):
    return {"pair_id": f"pb{i}", "prompt_id": f"p{i}", "domain": domain, "principle": principle,
            "context": [{"role": "user", "content": f"prompt {i}"}], "chosen": chosen, "rejected": rejected}


def shorter(conversations, responses, principles):
    """Prefers shorter responses."""
    return [-float(len(r)) for r in responses]


def oracle(conversations, responses, principles):
    return [1.0 if r.startswith("GOOD") else -1.0 for r in responses]


@pytest.fixture
def data():
    rm = [rm_record("chat", 0), rm_record("code", 0), rm_record("safety-refuse", 0), rm_record("safety-response", 1)]
    jb = [jb_pair("p1", "mmlu-pro-law", "A>B"), jb_pair("p2", "livebench-reasoning", "B>A"),
          jb_pair("p3", "livebench-math", "A>B"), jb_pair("p4", "livecodebench", "B>A", short_is_right=False)]
    pb = [item(0, "Yes", "GOOD a"), item(1, "No", "BAD b"), item(2, "Yes", "GOOD c", domain="code"),
          item(3, "Yes", "BAD d", domain="code")]
    pairs = [pb_pair(0, "GOOD a", "BAD b"), pb_pair(1, "BAD c", "GOOD d", domain="code"),
             pb_pair(2, "GOOD e", "GOOD f", domain="code")]
    return BenchData(rmbench=rm, rmbench_missing={"math": "no local file (hub disabled)"}, judgebench=jb,
                     principlebench=pb, principlebench_pairs=pairs,
                     validation=[item(10 + i, "Yes" if i % 2 else "No", "x" * (5 + i * 3)) for i in range(6)])


# ------------------------------------------------------------------ RM-Bench


def test_rmbench_shorter_scorer_gives_known_hard_normal_easy(data):
    res = re_.evaluate_rmbench(shorter, data.rmbench, re_.RMBENCH_PRINCIPLES)
    # chosen 10/20/30 vs rejected 15/25/35: the upper triangle and diagonal win, the lower triangle loses
    for d in ("chat", "code", "safety"):
        g = res["groups"][d]
        assert (g["hard"], g["normal"], g["easy"]) == (100.0, 100.0, 0.0)
        assert g["score"] == pytest.approx(200 / 3)
    assert res["groups"]["safety"]["n"] == 2  # both safety files pool
    assert res["missing"] == ["math"] and res["overall"] == pytest.approx(200 / 3)
    assert res["inputs"] == 24 and res["truncated"] == 0
    assert res["principles"] == {d: re_.RMBENCH_PRINCIPLES[d] for d in ("chat", "code", "safety")}


def test_rmbench_oracle_is_perfect_and_principle_follows_domain(data):
    seen = []

    def spy(conversations, responses, principles):
        seen.extend(zip(conversations, principles))
        return oracle(conversations, responses, principles)

    res = re_.evaluate_rmbench(spy, data.rmbench, {"chat": "P-chat", "math": "P-math", "code": "P-code",
                                                   "safety": "P-safety"})
    assert res["overall"] == 100.0 and res["easy"] == res["normal"] == res["hard"] == 100.0
    assert {p for c, p in seen if c.startswith("question safety")} == {"P-safety"}
    assert {p for c, p in seen if c.startswith("question chat")} == {"P-chat"}
    assert re_.evaluate_rmbench(oracle, [], re_.RMBENCH_PRINCIPLES) is None


# ------------------------------------------------------------------ JudgeBench


def test_judgebench_shorter_scorer_per_group_and_position(data):
    res = re_.evaluate_judgebench(shorter, data.judgebench, re_.JUDGEBENCH_PRINCIPLES)
    assert {g: v["accuracy"] for g, v in res["groups"].items()} == {
        "knowledge": 100.0, "reasoning": 100.0, "math": 100.0, "code": 0.0}
    assert res["overall"] == 75.0 and res["n"] == 4 and res["inputs"] == 8
    assert res["position"]["consistent"] == 100.0 and res["position"]["rescored_swapped"] is True


def test_judgebench_ties_are_wrong_but_consistent(data):
    res = re_.evaluate_judgebench(lambda c, r, p: [0.0] * len(r), data.judgebench, re_.JUDGEBENCH_PRINCIPLES)
    assert res["overall"] == 0.0 and res["position"]["consistent"] == 100.0


def test_swapped_rescoring_exposes_a_position_dependent_scorer(data):
    def first_wins(conversations, responses, principles):  # favours whatever is presented first
        return [1.0 if i % 2 == 0 else 0.0 for i in range(len(responses))]

    rescored = re_.evaluate_judgebench(first_wins, data.judgebench, re_.JUDGEBENCH_PRINCIPLES, rescore_swapped=True)
    assert rescored["position"]["consistent"] == 0.0 and rescored["overall"] == 0.0
    reused = re_.evaluate_judgebench(first_wins, data.judgebench, re_.JUDGEBENCH_PRINCIPLES, rescore_swapped=False)
    assert reused["position"]["consistent"] == 100.0


# ------------------------------------------------------------------ PrincipleBench and thresholds


def test_principlebench_accuracy_majority_and_domains(data):
    res = re_.evaluate_principlebench(oracle, data.principlebench)
    assert res["accuracy"] == 75.0 and res["n"] == 4  # item 3 says BAD but is labelled Yes
    assert res["majority"] == 75.0 and res["yes_share"] == 75.0  # percent, like every rate here
    assert res["groups"]["code"] == {"accuracy": 50.0, "ci": percent_interval(50.0, 2), "majority": 100.0, "n": 2}
    assert res["groups"]["general"]["accuracy"] == 100.0
    assert res["ci"] == pytest.approx([100 * x for x in wilson_interval(3, 4)])


def test_principlebench_pairs_the_yes_response_must_score_higher(data):
    res = re_.evaluate_principlebench_pairs(oracle, data.principlebench_pairs)
    # pair 0: GOOD over BAD (right); pair 1: the Yes response says BAD (wrong); pair 2: both GOOD, a tie (wrong)
    assert res["accuracy"] == pytest.approx(100 / 3) and res["n"] == 3 and res["ties"] == 1
    assert res["groups"]["code"]["accuracy"] == 0.0 and res["groups"]["general"]["accuracy"] == 100.0
    assert res["inputs"] == 6 and res["ci"] == pytest.approx([100 * x for x in wilson_interval(1, 3)])
    seen = []

    def spy(conversations, responses, principles):
        seen.extend(zip(responses, principles))
        return oracle(conversations, responses, principles)

    re_.evaluate_principlebench_pairs(spy, data.principlebench_pairs[:1])
    assert seen == [("GOOD a", "is good"), ("BAD b", "is good")]  # each response alone, under the pair's principle
    # a principle-blind scorer is scored on the same footing: no threshold
    assert re_.evaluate_principlebench_pairs(lambda c, r, p: [-float(len(x)) for x in r],
                                             [pb_pair(9, "ok", "much longer")])["accuracy"] == 100.0
    assert re_.evaluate_principlebench_pairs(oracle, []) is None


def test_every_accuracy_has_its_wilson_interval(data):
    rm = re_.evaluate_rmbench(shorter, data.rmbench, re_.RMBENCH_PRINCIPLES)
    # RM-Bench: the prompts are the sample size (a domain's; all prompts for the overall)
    assert rm["groups"]["safety"]["ci"]["hard"] == pytest.approx(percent_interval(100.0, 2))
    assert rm["groups"]["chat"]["ci"]["score"] == pytest.approx(percent_interval(200 / 3, 1))
    assert rm["ci"]["overall"] == pytest.approx(percent_interval(200 / 3, 4))
    jb = re_.evaluate_judgebench(shorter, data.judgebench, re_.JUDGEBENCH_PRINCIPLES)
    assert jb["ci"] == pytest.approx([100 * x for x in wilson_interval(3, 4)])
    assert jb["groups"]["code"]["ci"] == pytest.approx([100 * x for x in wilson_interval(0, 1)])
    assert jb["position"]["ci"]["consistent"] == pytest.approx([100 * x for x in wilson_interval(4, 4)])
    for res in (rm, jb):
        for lo_hi in [res["ci"]] if isinstance(res["ci"], list) else res["ci"].values():
            assert 0 <= lo_hi[0] <= lo_hi[1] <= 100


def test_bt_threshold_is_fitted_on_validation(data):
    # a principle-blind score whose sign is useless but whose order is perfect: Yes iff length > 10
    def length(conversations, responses, principles):
        return [float(len(r)) for r in responses]

    data.principlebench = [item(i, "Yes" if n > 10 else "No", "z" * n) for i, n in enumerate((3, 6, 9, 12, 15, 18))]
    data.validation = [item(20 + i, "Yes" if n > 10 else "No", "z" * n) for i, n in enumerate((4, 8, 11, 14))]
    zero = re_.evaluate_model(length, data, ModelEvalConfig(threshold="zero"), PrincipleChoiceConfig())
    fitted = re_.evaluate_model(length, data, ModelEvalConfig(kind="bt", threshold="validation"),
                                PrincipleChoiceConfig())
    assert zero["principlebench"]["accuracy"] == 50.0 and zero["principlebench"]["threshold"] == 0.0
    pb = fitted["principlebench"]
    assert pb["accuracy"] == 100.0 and 8 < pb["threshold"] < 11
    assert pb["threshold_rule"] == "validation" and pb["threshold_fit"]["validation_accuracy"] == 100.0
    assert pb["threshold_fit"]["validation_ci"] == pytest.approx(percent_interval(100.0, 4))


def test_truncation_and_missing_judgements_are_counted(data):
    class Result:
        def __init__(self, responses):
            self.scores = [-float(len(r)) for r in responses]
            self.truncated = [len(r) > 25 for r in responses]
            self.judged = [not r.endswith("b") for r in responses]

    res = re_.evaluate_model(lambda c, r, p: Result(r), data, ModelEvalConfig(), PrincipleChoiceConfig())
    # RM-Bench: per prompt the chosen of 30 and the rejected of 35 characters are "long"
    assert res["rmbench"]["truncated"] == 4 * 2
    assert res["judgebench"]["truncated"] == 4  # the 34-character responses, one per pair
    assert res["principlebench"]["missing_judgements"] == 1  # "BAD b"
    assert res["principlebench_pairs"]["missing_judgements"] == 1  # "BAD b" again, as pair 0's No response
    assert res["truncated"] == 12 and res["inputs"] == 24 + 8 + 4 + 6
    assert res["samples"] == {"rmbench_prompts": {"chat": 1, "code": 1, "safety": 2}, "judgebench_pairs": 4,
                              "principlebench_items": 4, "principlebench_pairs": 3}


def test_scorer_output_is_checked(data):
    with pytest.raises(ValueError, match="returned 2 scores for 24"):
        re_.evaluate_rmbench(lambda c, r, p: [0.0, 1.0], data.rmbench, re_.RMBENCH_PRINCIPLES)
    with pytest.raises(ValueError, match="non-finite"):
        re_.evaluate_principlebench(lambda c, r, p: [math.nan] * len(r), data.principlebench)


# ------------------------------------------------------------------ subsampling


def test_nested_sample_is_seeded_nested_and_order_preserving():
    rows = [{"id": i} for i in range(50)]
    small = re_.nested_sample(rows, 5, 0, lambda r: r["id"])
    big = re_.nested_sample(rows, 20, 0, lambda r: r["id"])
    assert len(small) == 5 and len(big) == 20
    assert {r["id"] for r in small} <= {r["id"] for r in big}
    assert [r["id"] for r in big] == sorted(r["id"] for r in big)
    assert small == re_.nested_sample(rows, 5, 0, lambda r: r["id"])
    assert small != re_.nested_sample(rows, 5, 1, lambda r: r["id"])
    assert re_.nested_sample(rows, None, 0, lambda r: r["id"]) == rows


def test_rmbench_limit_counts_prompts_per_scored_domain():
    recs = [rm_record(d, i) for d in ("chat", "safety-refuse", "safety-response") for i in range(6)]
    out = re_.sample_rmbench(recs, 4, 0)
    assert sum(r["domain"] == "chat" for r in out) == 4
    assert sum(r["domain"].startswith("safety") for r in out) == 4


# ------------------------------------------------------------------ principle sweep


def test_principle_sweep_structure_and_values(data):
    def concise_follower(conversations, responses, principles):
        return [-float(len(r)) if p == "is concise" else (1.0 if r.startswith("GOOD") else -1.0)
                for r, p in zip(responses, principles)]

    main = re_.evaluate_model(concise_follower, data, ModelEvalConfig(), PrincipleChoiceConfig())
    sweep = re_.principle_sweep(concise_follower, data, ModelEvalConfig(), ["correctness", "is concise"],
                                default=main, default_principles=PrincipleChoiceConfig())
    assert sweep["order"] == [re_.DEFAULT_SWEEP_KEY, "correctness", "is concise"]
    rows = sweep["phrasings"]
    assert rows["correctness"]["rmbench"]["overall"] == 100.0 and rows["correctness"]["judgebench"]["overall"] == 100.0
    assert rows["is concise"]["rmbench"]["chat"] == pytest.approx(200 / 3)
    assert rows["is concise"]["judgebench"]["overall"] == 75.0
    assert rows["is concise"]["rmbench"]["missing"] == ["math"]
    assert rows[re_.DEFAULT_SWEEP_KEY]["rmbench"]["overall"] == main["rmbench"]["overall"]
    assert rows[re_.DEFAULT_SWEEP_KEY]["principles"]["rmbench"]["safety"] == re_.RMBENCH_PRINCIPLES["safety"]
    table = re_.sweep_table(sweep)
    assert '| "is concise" |' in table and "(3 of 4 domains: no math)" in table


# ------------------------------------------------------------------ the whole stage on fakes: metrics, table, figures


class FakeScorer:
    """A fake model with the Scorer's report and release methods."""

    def __init__(self, mcfg):
        self.fn, self.mcfg, self.released = {"scalar": oracle, "bt": shorter, "genrm": oracle}[mcfg.kind], mcfg, False

    def __call__(self, conversations, responses, principles):
        return self.fn(conversations, responses, principles)

    def info(self):
        return {"kind": self.mcfg.kind, "parameters": 1_300_000, "path": self.mcfg.path}

    def release(self):
        self.released = True


def fake_loader(mcfg):
    return FakeScorer(mcfg)


@pytest.fixture
def metrics(data):
    cfg = RMEvalConfig(sweep={"model": "scalar", "phrasings": ["correctness", "is helpful"]})
    return re_.evaluate_all(cfg, data, load=fake_loader)


def test_evaluate_all_metrics_structure(metrics):
    assert list(metrics["models"]) == ["scalar", "bt", "genrm"]
    scalar = metrics["models"]["scalar"]
    assert scalar["rmbench"]["overall"] == 100.0 and scalar["judgebench"]["position"]["consistent"] == 100.0
    assert scalar["model"]["parameters"] == 1_300_000 and scalar["label"].startswith("Scalar")
    assert metrics["models"]["bt"]["principlebench"]["threshold_rule"] == "validation"
    assert metrics["models"]["scalar"]["principlebench_pairs"]["n"] == 3
    assert metrics["data"]["principlebench_pairs"] == 3
    assert metrics["principle_sweep"]["order"] == [re_.DEFAULT_SWEEP_KEY, "correctness", "is helpful"]
    assert metrics["data"]["rmbench_missing"] == {"math": "no local file (hub disabled)"}
    json.dumps(metrics)  # JSON-ready


def test_table_has_paper_rows_missing_marks_and_sample_sizes(metrics):
    table = re_.markdown_table(metrics)
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:9] == ["model", "RM-Bench chat", "RM-Bench math", "RM-Bench code", "RM-Bench safety",
                          "RM-Bench easy", "RM-Bench normal", "RM-Bench hard", "RM-Bench overall"]
    assert header[9:16] == ["JudgeBench knowledge", "JudgeBench reasoning", "JudgeBench math", "JudgeBench code",
                            "JudgeBench overall", "PrincipleBench items", "PrincipleBench pairs"]
    ours = next(l for l in lines if l.startswith("| Scalar principle RM (ours"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[0].endswith("[1.3M params]")
    assert cells[2] == "—"  # RM-Bench math: not here
    lo, hi = percent_interval(100.0, 4)  # 4 prompts
    assert cells[8] == f"100.0 [{lo:.1f}, 100.0] (3 of 4 domains: no math)"
    assert "RM-Bench 1/—/1/2 prompts" in cells[-2] and "JudgeBench 4 pairs" in cells[-2]
    assert "PrincipleBench 4 items, 3 pairs" in cells[-2]
    assert "RM-Bench 0/24" in cells[-1] and "PrincipleBench pairs 0/6" in cells[-1]
    lo, hi = percent_interval(75.0, 4)
    assert cells[14] == f"75.0 [{lo:.1f}, {hi:.1f}] (majority 75.0)"
    lo, hi = percent_interval(100 / 3, 3)
    assert cells[15] == f"33.3 [{lo:.1f}, {hi:.1f}]"
    paper = next(l for l in lines if l.startswith("| Flexible-principles scalar RM (RLBFF, paper)"))
    pcells = [c.strip() for c in paper.strip("|").split("|")]
    assert pcells[1:9] == ["85.3", "81.9", "70.4", "96.9", "85.5", "84.9", "80.5", "83.6"]
    assert pcells[9:16] == ["74.0", "74.5", "82.1", "81.0", "76.3", "91.6", "—"]
    bt = next(l for l in lines if l.startswith("| Bradley–Terry, same data (paper)"))
    assert [c.strip() for c in bt.strip("|").split("|")][1:9] == ["—"] * 7 + ["78.5"]
    assert "86.2" in table and "81.4" in table and "83.8" in table and "R3-Qwen3-14B" in table


def test_report_and_figures(metrics, tmp_path):
    from rlbff_lib.core import plots

    report = re_.markdown_report(metrics)
    assert report.startswith("# Reward-model evaluation")
    assert "RM-Bench math: not available here" in report
    assert "fitted on 6 validation items" in report
    assert "## Principle sweep" in report and "same verdict in both orders" in report
    assert "**pairs**" in report and "3 pairs, 1 tied" in report
    plots.save(re_.benchmarks_figure(metrics), tmp_path / "b.png")
    plots.save(re_.principles_figure(metrics["principle_sweep"]), tmp_path / "p.png")
    assert (tmp_path / "b.png").stat().st_size > 5000 and (tmp_path / "p.png").stat().st_size > 5000


def test_principlebench_paired_compares_each_ordered_pair_on_common_items():
    # scalar and bt on items a-f, genrm on its subsample b, d, f; x is only bt's, so it is left out of scalar_vs_bt
    scalar = dict(zip("abcdef", [True, True, True, True, False, True]))
    bt = dict(zip("abcdefx", [True, False, False, True, True, False, True]))
    genrm = dict(zip("bdf", [False, True, True]))
    out = re_.principlebench_paired({"scalar": scalar, "genrm": genrm, "bt": bt}, ["scalar", "bt", "genrm", "none"])
    assert list(out) == ["scalar_vs_bt", "scalar_vs_genrm", "bt_vs_genrm"]
    sb = out["scalar_vs_bt"]
    # by hand: both right a, d; only scalar b, c, f; only bt e; neither none
    assert (sb["a"], sb["b"], sb["n"], sb["both"], sb["only_a"], sb["only_b"], sb["neither"]) == (
        "scalar", "bt", 6, 2, 3, 1, 0)
    assert sb["accuracy_a"] == pytest.approx(500 / 6) and sb["accuracy_b"] == pytest.approx(50.0)
    assert sb["difference"] == pytest.approx(100 / 3)  # percent points, like the accuracies
    assert sb["ci"][0] <= sb["difference"] <= sb["ci"][1] <= 100
    assert sb["p_value"] == 2 * (1 + 4) / 16  # 2 P(X <= 1), X ~ Bin(4, 1/2)
    sg = out["scalar_vs_genrm"]  # b, d, f: scalar right on all three, genrm on d and f
    assert (sg["n"], sg["only_a"], sg["only_b"], sg["p_value"]) == (3, 1, 0, 1.0)
    bg = out["bt_vs_genrm"]  # b, d, f: bt right on d, genrm on d and f
    assert (bg["n"], bg["both"], bg["only_a"], bg["only_b"], bg["neither"]) == (3, 1, 0, 1, 1)
    assert re_.principlebench_paired({"scalar": scalar, "other": {"zz": True}}, ["scalar", "other"]) == {}
    line = re_.paired_text(sb, {"scalar": "Scalar RM", "bt": "BT"})
    assert line.startswith("Scalar RM − BT: +33.3 points, 95% interval [") and "on 6 common items" in line
    assert "McNemar exact p = 0.625" in line and line.endswith("no order (the interval includes 0)") == (
        not sb["excludes_zero"])


def test_evaluate_all_pairs_the_models_on_the_genrm_subsample(data):
    data.principlebench = [item(i, "Yes" if i % 3 else "No", ("GOOD " if i % 4 else "BAD ") + "r" * i)
                           for i in range(12)]
    models = re_._default_models()
    models["genrm"].limits.principlebench = 5
    metrics = re_.evaluate_all(RMEvalConfig(models=models, sweep={"model": None}), data, load=fake_loader)
    paired = metrics["principlebench_paired"]
    assert list(paired) == ["scalar_vs_bt", "scalar_vs_genrm", "bt_vs_genrm"]
    assert paired["scalar_vs_bt"]["n"] == 12 and paired["scalar_vs_genrm"]["n"] == paired["bt_vs_genrm"]["n"] == 5
    # on all 12 items the paired accuracies are the models' own PrincipleBench accuracies
    sb = paired["scalar_vs_bt"]
    assert sb["accuracy_a"] == pytest.approx(metrics["models"]["scalar"]["principlebench"]["accuracy"])
    assert sb["accuracy_b"] == pytest.approx(metrics["models"]["bt"]["principlebench"]["accuracy"])
    assert sb["difference"] == pytest.approx(100 * (sb["only_a"] - sb["only_b"]) / 12)
    sg = paired["scalar_vs_genrm"]  # the same scorer: no difference
    assert sg["difference"] == 0 and sg["p_value"] == 1.0 and sg["ci"] == [0.0, 0.0]
    assert sg["accuracy_b"] == pytest.approx(metrics["models"]["genrm"]["principlebench"]["accuracy"])
    # no per-item list reaches the details file
    assert all("item_right" not in r["principlebench"] for r in metrics["models"].values())
    text = json.dumps(metrics)
    assert "it11" not in text and len(json.dumps(paired)) < 2000
    report = re_.markdown_report(metrics)
    assert "## PrincipleBench items: model against model on the same items" in report
    assert "| Scalar principle RM (ours, smoke scale) | GenRM (ours, smoke scale) | 5 | 0 | 0 | +0.0 [+0.0, +0.0] | " \
           "1 | no order (the interval includes 0) |" in report


# ------------------------------------------------------------------ config and loading


def test_config_defaults_and_errors_name_the_key():
    cfg = build(RMEvalConfig, {})
    assert cfg.models["genrm"].limits.judgebench < cfg.models["scalar"].limits.judgebench
    assert to_dict(cfg)["models"]["bt"]["threshold"] == "validation"
    bad = [({"models": {"x": {"kind": "ppo"}}}, "models.x.kind"),
           ({"models": {"x": {"limits": {"rmbench": 0}}}}, "models.x.limits.rmbench"),
           ({"principles": {"rmbench": {"chat": "c"}}}, "principles.rmbench"),
           ({"sweep": {"model": "nope"}}, "sweep"),
           ({"sweep": {"phrasings": ["a", "a"]}}, "sweep.phrasings"),
           ({"judgebench_split": "other"}, "judgebench_split"),
           ({"models": {}}, "models")]
    for values, key in bad:
        with pytest.raises(ParamError, match=rf"^rm_eval\.{key}"):
            build(RMEvalConfig, values, "rm_eval")


def write_benchmarks(root, with_judgebench=True):
    (root / "rm-bench").mkdir(parents=True)
    for d in ("chat", "code"):
        recs = [{**rm_record(d, i), "subset": d} for i in range(3)]
        for r in recs:
            r.pop("domain")
        (root / "rm-bench" / f"{d}_filtered.json").write_text(json.dumps(recs))
    if with_judgebench:
        (root / "judgebench").mkdir()
        pairs = [jb_pair("p1", "mmlu-pro-law", "A>B"), jb_pair("p2", "livecodebench", "B>A")]
        (root / "judgebench" / "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl").write_text(
            "".join(json.dumps(p) + "\n" for p in pairs))


def write_principles(folder):
    folder.mkdir(parents=True)
    for name in ("principlebench", "validation"):
        rows = [item(i, "Yes" if i % 2 else "No", f"resp {i}") for i in range(4)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = [pb_pair(i, f"yes resp {i}", f"no resp {i}") for i in range(3)]
    (folder / "principlebench_pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))


def test_load_benchmarks_reports_what_is_missing(tmp_path):
    write_benchmarks(tmp_path / "bench")
    write_principles(tmp_path / "principles")
    cfg = RMEvalConfig(benchmarks_dir=str(tmp_path / "bench"), principles_dir=str(tmp_path / "principles"))
    data = re_.load_benchmarks(cfg)
    assert data.summary()["rmbench_prompts"] == {"chat": 3, "code": 3}
    assert set(data.rmbench_missing) == {"math", "safety"}
    assert len(data.judgebench) == 2 and data.judgebench_missing is None
    assert len(data.principlebench) == 4 and len(data.validation) == 4 and len(data.principlebench_pairs) == 3

    write_benchmarks(tmp_path / "bench2", with_judgebench=False)
    data = re_.load_benchmarks(RMEvalConfig(benchmarks_dir=str(tmp_path / "bench2"),
                                            principles_dir=str(tmp_path / "principles")))
    assert data.judgebench == [] and "use_hub is false" in data.judgebench_missing
    with pytest.raises(Exception, match="principles"):
        re_.load_benchmarks(RMEvalConfig(benchmarks_dir=str(tmp_path / "bench"), principles_dir=str(tmp_path / "no")))
    bad = tmp_path / "principles" / "principlebench_pairs.jsonl"
    bad.write_text(json.dumps({**pb_pair(0, "a", "b"), "chosen": None}) + "\n")
    with pytest.raises(Exception, match=r"principlebench_pairs.jsonl, line 1.*chosen"):
        re_.load_benchmarks(cfg)
    bad.write_text(json.dumps(pb_pair(0, "a", "b")) + "\n")
    twice = tmp_path / "principles" / "principlebench.jsonl"  # the paired comparison keys items by item_id
    twice.write_text(json.dumps(item(0, "Yes", "a")) + "\n" + json.dumps(item(0, "No", "b")) + "\n")
    with pytest.raises(Exception, match=r"principlebench.jsonl, line 2: item_id: 'it0' repeats line 1"):
        re_.load_benchmarks(cfg)


def test_resolve_model_dir_layouts(tmp_path):
    (tmp_path / "a" / "grpo" / "model").mkdir(parents=True)
    (tmp_path / "a" / "grpo" / "model" / "config.json").write_text("{}")
    assert re_.resolve_model_dir(tmp_path / "a") == tmp_path / "a" / "grpo" / "model"
    with pytest.raises(FileNotFoundError, match="reward_models"):
        re_.resolve_model_dir(tmp_path / "missing")


# ------------------------------------------------------------------ real tiny models (random weights)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    import torch

    from rlbff_lib.models.lm import ModelSizeConfig, build_qwen3
    from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer

    torch.set_num_threads(1)
    words = "the response is concise and correct GOOD BAD question answer code safe Yes No".split()
    corpus = [" ".join(words[(i * 7 + j) % len(words)] for j in range(10)) for i in range(200)]
    tok = train_tokenizer(corpus, TokenizerConfig(vocab_size=300, min_frequency=1))
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("tiny") / "scalar"
    build_qwen3(tok, size, seed=0).save_pretrained(path / "model")
    tok.save_pretrained(path / "model")
    return path, tok


def test_real_tiny_models_plug_in(tiny_dirs, data):
    from rlbff_lib.reward_models.prompt import encode_rm_prompt

    path, tok = tiny_dirs
    data.rmbench = data.rmbench[:2]
    data.rmbench[0]["chosen"][2] = "GOOD " + "long text " * 40  # over 64 tokens: cut
    data.judgebench = data.judgebench[:2]
    for kind, threshold in (("scalar", "zero"), ("bt", "validation"), ("genrm", "zero")):
        mcfg = ModelEvalConfig(kind=kind, path=str(path), max_length=64, max_new_tokens=2, threshold=threshold,
                               batch_size=4)
        scorer = re_.load_model(mcfg)
        info = scorer.info()
        assert info["max_length"] == 64 and info["parameters"] > 0 and info["kind"] == kind
        assert info["prompt_budget"] == {"scalar": 63, "bt": 64, "genrm": 62}[kind]
        res = re_.evaluate_model(scorer, data, mcfg, PrincipleChoiceConfig())
        scorer.release()
        assert 0 <= res["rmbench"]["overall"] <= 100 and 0 <= res["judgebench"]["overall"] <= 100
        assert res["judgebench"]["position"]["consistent"] == 100.0
        if kind == "scalar":  # the same truncation rule as the scorer's: 63 prompt tokens + the answer token
            expect = sum(encode_rm_prompt(tok, [{"role": "user", "content": r["prompt"]}], text,
                                          re_.RMBENCH_PRINCIPLES[re_.ev.rmbench_score_domain(r["domain"])], 63)[1]
                         for r in data.rmbench for text in r["chosen"] + r["rejected"])
            assert expect >= 1 and res["rmbench"]["truncated"] == expect
        if kind == "genrm":  # 2 new tokens cannot hold a judgement: every score is the -50 floor
            assert res["missing_judgements"] == res["inputs"]
            assert len(res["principlebench"]["examples"]) == 3 and res["principlebench"]["examples"][0]["score"] == -50
            assert res["judgebench"]["overall"] == 0.0  # all ties


def test_stratified_sample_keeps_every_group_in_proportion():
    rows = [{"g": g, "id": f"{g}{i}"} for g, n in (("a", 154), ("b", 98), ("c", 56), ("d", 42)) for i in range(n)]
    out = re_.stratified_sample(rows, 60, 0, lambda r: r["g"], lambda r: r["id"])
    counts = {g: sum(r["g"] == g for r in out) for g in "abcd"}
    assert counts == {"a": 26, "b": 17, "c": 10, "d": 7} and sum(counts.values()) == 60
    assert out == [r for r in rows if r in out]  # input order
    tiny = re_.stratified_sample(rows, 4, 0, lambda r: r["g"], lambda r: r["id"])
    assert sorted(r["g"] for r in tiny) == ["a", "b", "c", "d"]
    small = re_.stratified_sample(rows, 30, 0, lambda r: r["g"], lambda r: r["id"])
    assert all(r in out for r in small)  # nested
    assert len(re_.stratified_sample(rows, 2, 0, lambda r: r["g"], lambda r: r["id"])) == 2


def test_model_order_survives_the_sorted_json(metrics):
    again = json.loads(json.dumps(metrics, sort_keys=True))
    assert [n for n, _ in re_.ordered_models(again)] == ["scalar", "bt", "genrm"]
    rows = [l for l in re_.markdown_table(again).splitlines() if "(ours" in l]
    assert rows[0].startswith("| Scalar") and rows[1].startswith("| Bradley") and rows[2].startswith("| GenRM")


@pytest.mark.slow
def test_stage_notebook_executes(tiny_dirs, tmp_path):
    """The rm_eval notebook through the harness, on tiny random models and hand-made benchmark files."""
    import yaml

    from rlbff_lib.core.params import REPO_ROOT
    from rlbff_lib.core.stage import run_stage

    path, _ = tiny_dirs
    write_benchmarks(tmp_path / "bench")
    write_principles(tmp_path / "principles")
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    small = {"rmbench": 2, "judgebench": 2, "principlebench": 4, "validation": 4}
    raw["rm_eval"].update(benchmarks_dir=str(tmp_path / "bench"), principles_dir=str(tmp_path / "principles"),
                          sweep={"model": "scalar", "phrasings": ["correctness"]})
    for model in raw["rm_eval"]["models"].values():
        model.update(path=str(path), max_length=64, max_new_tokens=2, batch_size=4, limits=small)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run_stage("rm_eval", tmp_path / "params.yaml", workdir=tmp_path)
    metrics = json.loads((tmp_path / "outputs" / "details" / "rm_eval.json").read_text())
    assert [n for n, _ in re_.ordered_models(metrics)] == ["scalar", "bt", "genrm"]
    headline = json.loads((tmp_path / "metrics" / "rm_eval.json").read_text())
    assert headline["principlebench"]["scalar"]["n"] == metrics["models"]["scalar"]["principlebench"]["n"]
    assert set(metrics["principlebench_paired"]) == {"scalar_vs_bt", "scalar_vs_genrm", "bt_vs_genrm"}  # sorted keys
    assert set(headline["principlebench_paired"]["scalar_vs_bt"]) >= {"difference", "p_value", "n"}
    assert metrics["models"]["scalar"]["samples"]["rmbench_prompts"] == {"chat": 2, "code": 2}
    assert metrics["principle_sweep"]["order"] == [re_.DEFAULT_SWEEP_KEY, "correctness"]
    assert metrics["models"]["scalar"]["samples"]["principlebench_pairs"] == 3
    assert len(metrics["models"]["bt"]["principlebench_pairs"]["ci"]) == 2
    report = (tmp_path / "metrics" / "rm_eval.md").read_text()
    assert "(2 of 4 domains: no math, safety)" in report and "91.6" in report
    for fig in ("benchmarks", "principles"):
        assert (tmp_path / "figures" / f"rm_eval_{fig}.png").stat().st_size > 5000
