"""bench/threads.py: the claims of two hand-made finished pipeline trees (compare_claims), the thread settings and
counts, and their rendering in RESULTS.md (bench/report.py). Every expected verdict below is worked out by hand from
the numbers written into the fake trees."""
import difflib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import report as R  # noqa: E402
import threads as T  # noqa: E402


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def est(value, lo, hi, n=None, key="accuracy") -> dict:
    return {key: value, "ci_low": lo, "ci_high": hi, **({"n": n} if n else {})}


def tree(root: Path, pb=(64.3, 60.8, 67.7), bt_pb=(58.4, 54.8, 61.8), majority=50.0, val=(70.9, 67.1, 74.3),
         bt_val=(61.6, 57.6, 65.4), gain=(0.178, 0.107, 0.250), seeds=3,
         consensus=((0.810, 0.806, 0.814), (0.969, 0.964, 0.973))) -> Path:
    """A finished pipeline's metrics/ and outputs/details/, as the stages write them (only the keys read)."""
    write(root / "metrics" / "rm_eval.json", {"principlebench": {"scalar": est(*pb, n=754), "bt": est(*bt_pb, n=754)},
                                             "rmbench": {"scalar": 49.5}})
    write(root / "outputs" / "details" / "rm_eval.json",
          {"models": {"scalar": {"principlebench": {"accuracy": pb[0], "majority": majority}}}})
    write(root / "metrics" / "reward_models.json",
          {"validation": {"scalar": est(*val, n=604), "bt": est(*bt_val, n=604)}, "validation_majority": 55.0})
    write(root / "metrics" / "alignment.json",
          {"fulfilment_gain": {"scalar": {"trained": {"gain": gain[0], "ci_low": gain[1], "ci_high": gain[2],
                                                      "p_value": 0.01}}}, "seeds": seeds})
    write(root / "outputs" / "details" / "alignment.json",
          {"fulfilment": {"gain": {"reward": "scalar", "key": "trained"},
                          "seeds": [{"seed": s, "before": 0.5, "after": 0.6, "gain": 0.1 * s} for s in range(seeds)]}})
    before, after = consensus
    write(root / "metrics" / "principles.json",
          {"accuracy_vs_truth": {"before_consensus": est(*before), "after_consensus": est(*after)}})
    return root


@pytest.fixture
def one_thread(tmp_path):
    return tree(tmp_path / "a")


@pytest.fixture
def two_threads(tmp_path):
    """Claims 1-4 fail: the margin falls under 10 points, BT overtakes on validation, the gain is within noise."""
    return tree(tmp_path / "b", pb=(59.0, 55.4, 62.5), bt_pb=(60.0, 56.5, 63.4), val=(60.0, 56.0, 63.9),
                bt_val=(66.0, 64.1, 69.6), gain=(-0.061, -0.186, 0.064))


def by_id(r: dict) -> dict:
    return {c["id"]: c for c in r["claims"]}


def test_every_claim_in_two_trees_with_one_failing_in_one(one_thread, two_threads):
    r = T.compare_claims(one_thread, two_threads)
    c = by_id(r)
    assert list(c) == ["scalar_over_majority", "scalar_above_bt_principlebench", "scalar_above_bt_validation",
                       "fulfilment_gain_scalar", "consensus_raises_accuracy"]
    m = c["scalar_over_majority"]
    assert m["a"]["value"] == 64.3 and m["a"]["ci"] == [60.8, 67.7] and m["a"]["n"] == 754
    assert m["a"]["against"] == {"label": "majority", "value": 50.0} and m["a"]["margin"] == pytest.approx(14.3)
    assert m["a"]["holds"] and m["a"]["verdict"] == "holds"
    assert not m["b"]["holds"] and m["b"]["verdict"] == "margin 9.0 < 10 points" and not m["holds_in_both"]
    pb = c["scalar_above_bt_principlebench"]           # 60.8 <= 61.8: the intervals overlap in both trees
    assert pb["a"]["verdict"] == pb["b"]["verdict"] == "not separated" and not pb["holds_in_both"]
    assert pb["a"]["against"] == {"label": "BT", "value": 58.4, "ci": [54.8, 61.8], "n": 754}
    val = c["scalar_above_bt_validation"]              # a: 67.1 > 65.4; b: BT's 64.1 > the scalar's 63.9
    assert val["a"]["verdict"] == "holds" and val["b"]["verdict"] == "reversed" and not val["holds_in_both"]
    g = c["fulfilment_gain_scalar"]
    assert g["a"]["verdict"] == "holds" and g["a"]["seeds"] == 3 and g["a"]["ci"] == [0.107, 0.250]
    assert g["a"]["per_seed"] == [{"seed": 0, "gain": 0.0}, {"seed": 1, "gain": 0.1}, {"seed": 2, "gain": 0.2}]
    assert g["b"]["verdict"] == "within noise" and not g["b"]["holds"]
    cons = c["consensus_raises_accuracy"]              # 0.964 > 0.814, the same files in both
    assert cons["holds_in_both"] and cons["identical"] and cons["stage"] == "principles"
    assert "does not depend on the training threads" in cons["rule"]
    assert not any(c[k]["identical"] for k in list(c)[:4])
    assert r["hold_in_both"] == ["consensus_raises_accuracy"] and r["all_hold_in_both"] is False
    same = T.compare_claims(one_thread, one_thread)
    assert same["all_hold_in_both"] is False       # the PrincipleBench intervals overlap: not separated
    assert same["hold_in_both"] == ["scalar_over_majority", "scalar_above_bt_validation", "fulfilment_gain_scalar",
                                    "consensus_raises_accuracy"]


@pytest.mark.parametrize("pb, majority, verdict", [
    ((60.0, 55.0, 65.0), 50.0, "holds"),                              # exactly 10 points over: holds
    ((61.0, 49.5, 71.0), 50.0, "interval reaches the majority"),     # 11 points, but the interval reaches 50
    ((63.0, 53.0, 70.0), 53.0, "interval reaches the majority"),     # lower bound equal to the majority
    ((62.9, 58.0, 67.0), 53.0, "margin 9.9 < 10 points"),
])
def test_the_majority_rule_at_its_edges(tmp_path, pb, majority, verdict):
    side = by_id(T.compare_claims(tree(tmp_path / "a", pb=pb, majority=majority),
                                  tree(tmp_path / "b")))["scalar_over_majority"]["a"]
    assert side["verdict"] == verdict and side["holds"] is (verdict == "holds")


@pytest.mark.parametrize("gain, seeds, verdict", [
    ((0.05, 0.0, 0.1), 3, "within noise"),                  # a lower bound of exactly 0 is not above noise
    ((-0.3, -0.5, -0.1), 3, "a loss beyond noise"),
    ((0.2, None, None), 1, "no interval (fewer than two seeds)"),
])
def test_the_fulfilment_rule_at_its_edges(tmp_path, gain, seeds, verdict):
    side = by_id(T.compare_claims(tree(tmp_path / "a", gain=gain, seeds=seeds),
                                  tree(tmp_path / "b")))["fulfilment_gain_scalar"]["a"]
    assert side["verdict"] == verdict and side["holds"] is False and side["seeds"] == seeds


def test_a_missing_file_or_key_is_named(one_thread, two_threads):
    (two_threads / "outputs" / "details" / "rm_eval.json").unlink()
    with pytest.raises(SystemExit, match=r"b/outputs/details/rm_eval.json: no such file"):
        T.compare_claims(one_thread, two_threads)
    data = json.loads((one_thread / "metrics" / "reward_models.json").read_text())
    del data["validation"]["bt"]["ci_high"]
    (one_thread / "metrics" / "reward_models.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match=r"a/metrics/reward_models.json: no validation.bt.ci_high$"):
        T.compare_claims(one_thread, one_thread)


@pytest.mark.parametrize("threads, cores, parallel", [(1, 2, 2), (2, 2, 1), (2, 16, 8), (3, 16, 5), (16, 16, 1)])
def test_parallel_runs_giving_each_training_the_threads(threads, cores, parallel):
    assert T.parallel_runs_for(threads, cores) == parallel
    assert cores // parallel == threads                 # what the stages give each training


@pytest.mark.parametrize("threads, cores, reachable", [(3, 2, "1, 2"), (0, 2, "1, 2"), (6, 16, "1, 2, 3, 4, 5, 8, 16")])
def test_an_unreachable_thread_count_is_refused(threads, cores, reachable):
    with pytest.raises(SystemExit, match=f"--threads {threads}: not reachable on {cores} cores .*: {reachable}\\)"):
        T.parallel_runs_for(threads, cores)


def test_set_threads_changes_only_the_three_lines(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_text().splitlines()
    T.set_threads(params, threads=2, parallel=1)
    after = params.read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len([x for x in changed if x[0] == "-"]) == 3 and len([x for x in changed if x[0] == "+"]) == 3
    assert T.thread_settings(tmp_path) == {"reward_models.parallel_runs": 1, "alignment.parallel_runs": 1,
                                           "rm_eval.torch_threads": 2}
    (tmp_path / "bad.yaml").write_text("reward_models: {parallel_runs: 2}\nalignment: {parallel_runs: 2}\n")
    with pytest.raises(SystemExit, match="bad.yaml: no section rm_eval"):
        T.set_threads(tmp_path / "bad.yaml", 2, 1)
    assert "rm_eval" not in (tmp_path / "bad.yaml").read_text()   # nothing written


def log(folder: Path, name: str, threads) -> None:
    write(folder / "training_log.json", {"name": name, "torch_threads": threads, "global_step": 1, "wall_s": 1.0})


def test_training_threads_from_the_logs(tmp_path):
    rm, al = tmp_path / "models" / "rm_runs", tmp_path / "models" / "alignment_runs"
    log(rm / "scalar-a", "scalar_rm", 1)
    log(rm / "bt-b", "bt", 1)
    log(rm / "genrm-c" / "sft", "genrm_sft", 1)
    log(rm / "genrm-c" / "grpo", "genrm_grpo", 1)
    write(rm / "genrm-c" / "training_log.json", {"name": "genrm", "stages": {}})
    log(al / "policy_sft-d", "policy_sft", 2)
    log(al / "grpo-scalar-s0-e", "grpo", 1)
    log(al / "grpo-bt-s0-f", "grpo", None)              # a log from before torch_threads was recorded
    t = T.training_threads(tmp_path)
    assert t == {"reward_models": {"bt": [1], "genrm_sft": [1], "genrm_grpo": [1], "scalar_rm": [1]},
                 "alignment": {"grpo": [1, None], "policy_sft": [2]}}
    assert T.controlled_threads(t) == [1, None]          # policy_sft's 2 is torch's default, not parallel_runs'


def test_a_running_dvc_is_found_in_the_rwlock(tmp_path):
    dead = 2 ** 22 + 12345                                # above Linux's pid_max default: no such process
    write(tmp_path / ".dvc" / "tmp" / "rwlock",
          {"read": {"/x/a": [{"pid": os.getpid(), "cmd": "dvc repro"}, {"pid": dead, "cmd": "dvc repro"}]},
           "write": {"/x/b": {"pid": dead, "cmd": "dvc repro"}}})
    assert T.running_dvc(tmp_path) == [os.getpid()]
    assert T.running_dvc(tmp_path / "nothing") == []


def test_fingerprint_sees_metrics_and_logs_only(one_thread):
    before = T.fingerprint(one_thread)
    (one_thread / "README.md").write_text("x")
    assert T.fingerprint(one_thread) == before
    log(one_thread / "models" / "rm_runs" / "bt-b", "bt", 1)
    assert T.fingerprint(one_thread) != before


def result(a: Path, b: Path) -> dict:
    machine = {"date": "2026-01-01T11:00:00+00:00", "cpu": "Test CPU", "cores": 2, "torch": "2.x",
               "torch_threads": 1, "gpu": None, "load_average": [2.0, 1.5, 1.0], "git_commit": "abc1234"}
    return {"command": "bench/threads.py --from CLONE --threads 2", "source": "/tmp/clone (commit abc1234abc12)",
            "commit": "abc1234" * 5, "copy": None, "cores": 2, "threads": {"a": [1], "b": [2]},
            "settings": {"a": {"reward_models.parallel_runs": 2, "alignment.parallel_runs": 2,
                               "rm_eval.torch_threads": 1},
                         "b": {"reward_models.parallel_runs": 1, "alignment.parallel_runs": 1,
                               "rm_eval.torch_threads": 2}},
            "training_threads": {"a": {"reward_models": {"scalar_rm": [1], "bt": [1]},
                                       "alignment": {"policy_sft": [2], "grpo": [1]}},
                                 "b": {"reward_models": {"scalar_rm": [2], "bt": [2]},
                                       "alignment": {"policy_sft": [2], "grpo": [2]}}},
            "stages_rerun": list(T.STAGES), "stage_walls_s": {"reward_models": 1200.0, "rm_eval": 110.0,
                                                              "alignment": 400.0, "report": 12.0},
            "imports": {}, "clone_unchanged": True, **T.compare_claims(a, b), "machine": machine}


def test_rendering_of_the_threads_section(one_thread, two_threads):
    text = "\n".join(R.threads(result(one_thread, two_threads)))
    assert text.startswith("## `threads`: the claims at another thread count")
    assert "| claim | 1 thread | 2 threads | holds in both |" in text
    assert ("| scalar RM at least 10 points over the majority baseline on PrincipleBench | 64.3 [60.8, 67.7] vs "
            "majority 50.0: holds | 59.0 [55.4, 62.5] vs majority 50.0: margin 9.0 < 10 points | **no** |") in text
    assert "| scalar RM above BT on validation | 70.9 [67.1, 74.3] vs BT 61.6 [57.6, 65.4]: holds | " \
           "60.0 [56.0, 63.9] vs BT 66.0 [64.1, 69.6]: reversed | **no** |" in text
    assert "0.178 [0.107, 0.250] over 3 seeds vs no gain 0.000: holds" in text
    assert ("0.969 [0.964, 0.973] vs before consensus 0.810 [0.806, 0.814]: holds | yes (same numbers) |") in text
    assert "every training on 2 threads instead of 1 thread (2 cores; `principles` not rerun)" in text
    assert "source reward_models: scalar_rm 1, bt 1; alignment: policy_sft 2, grpo 1; copy reward_models: " \
           "scalar_rm 2, bt 2; alignment: policy_sft 2, grpo 2." in text
    assert "`rm_eval.torch_threads` 2" in text and "reward_models 1,200 s" in text
    assert "Claims that hold at both thread counts: **1 of 5**." in text
    assert "point estimate >= majority + 10 AND interval's lower bound > majority" in text


def test_results_md_gets_the_threads_section(one_thread, two_threads, tmp_path, monkeypatch):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"threads": result(one_thread, two_threads)}))
    monkeypatch.setattr(R.common, "RESULTS", results)
    monkeypatch.setattr(R, "OUT", tmp_path / "RESULTS.md")
    R.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.index("## `repro_cold`") < text.index("## `threads`: the claims at another thread count") \
        < text.index("## `gpu`")


@pytest.mark.slow
def test_the_import_probe_sees_the_copys_package(tmp_path):
    """The venv's editable install points at this checkout; a copy's harness and kernel import the copy's."""
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "rlbff_lib", copy / "rlbff_lib", ignore=shutil.ignore_patterns("__pycache__"))
    probe = T.import_probe(copy, sys.executable)
    assert probe["harness"]["rlbff_lib"] == probe["kernel"]["rlbff_lib"] == str(copy / "rlbff_lib" / "__init__.py")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(SystemExit, match=f"the harness imports {REPO}/rlbff_lib/__init__.py, not the copy's"):
        T.import_probe(tmp_path / "elsewhere", sys.executable)
