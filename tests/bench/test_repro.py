"""bench/repro.py --cold's tables (cold_tables) from a hand-made finished clone, and their rendering in RESULTS.md
(bench/report.py): every expected number below is worked out by hand from the fake tree."""
import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import report as R  # noqa: E402
import repro as P  # noqa: E402

T0 = "2026-01-01T10:00:00.000+00:00"


def at(seconds: float) -> str:
    """ISO UTC time ``seconds`` after 10:00:00 (as train_timer writes it)."""
    m, s = divmod(seconds, 60)
    return f"2026-01-01T10:{int(m):02d}:{s:06.3f}+00:00"


def cell(source: str, duration: float, tags=()) -> dict:
    return {"cell_type": "code", "source": source, "outputs": [], "execution_count": 1,
            "metadata": {"tags": list(tags), "papermill": {"duration": duration}}}


def notebook(path: Path, duration: float, cells: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": "# x", "metadata": {}}, *cells],
                                "metadata": {"papermill": {"duration": duration}}, "nbformat": 4,
                                "nbformat_minor": 5}))


def run_log(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_log.json").write_text(json.dumps({"world_size": 1, "resumed_from": None, **fields}))


@pytest.fixture
def clone(tmp_path):
    root = tmp_path / "clone"
    root.mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {n: {"cmd": f"sh bin/stage run {n}"} for n in
                                                              ("data", "reward_models", "alignment", "report")}},
                                                  sort_keys=False))
    (root / "params.yaml").write_text("reward_models: {parallel_runs: 2}\nalignment: {parallel_runs: 1}\n")
    nbs = root / "outputs" / "notebooks"
    # data: parameters 0.1 + injected 0.05, compute 5.0, an import cell of 0 s (so 0 s of imports come off)
    notebook(nbs / "data.ipynb", 8.0, [cell("x = 1", 0.1, ["parameters"]), cell("x = 2", 0.05, ["injected-parameters"]),
                                       cell("import json", 0.0), cell("y = x", 5.0)])
    notebook(nbs / "reward_models.ipynb", 990.0, [cell("x = 1", 0.2, ["parameters"]), cell("train()", 950.0)])
    notebook(nbs / "alignment.ipynb", 85.0, [cell("train()", 80.0)])               # report: no notebook
    rm = root / "models" / "rm_runs"
    run_log(rm / "scalar-aaa", name="scalar_rm", global_step=100, timed_steps=100, wall_s=300.0,
            started_at=T0, torch_threads=1)
    run_log(rm / "bt-bbb", name="bt", global_step=50, timed_steps=50, wall_s=200.0, started_at=at(0.5),
            torch_threads=1)
    run_log(rm / "genrm-ccc" / "sft", name="genrm_sft", global_step=29, timed_steps=29, wall_s=290.0,
            started_at=at(205), torch_threads=1)
    run_log(rm / "genrm-ccc" / "grpo", name="genrm_grpo", global_step=20, timed_steps=20, wall_s=380.0,
            started_at=at(500), torch_threads=1)
    (rm / "genrm-ccc" / "training_log.json").write_text(json.dumps({"name": "genrm", "stages": {}}))
    (rm / "inputs").mkdir()                                                          # data, not a run
    (rm / "scalar-ddd").mkdir()
    (rm / "scalar-ddd" / "job.json").write_text("{}")                                # launched, never finished
    al = root / "models" / "alignment_runs"
    run_log(al / "policy_sft-eee", name="policy_sft", global_step=60, timed_steps=30, wall_s=60.0,
            started_at=at(2000), torch_threads=2, resumed_from="x/checkpoints/checkpoint-30")
    run_log(al / "grpo-checker-s0-fff", name="grpo", global_step=8, seconds=12.0)     # a log from before wall_s
    return root


WALLS = {"data": 10.0, "reward_models": 1000.0, "alignment": 90.0, "report": 5.0}   # total 1105


def test_cold_tables_of_a_finished_clone(clone):
    r = P.cold_tables(clone, WALLS, import_reps=1, python=sys.executable)
    assert r["total_s"] == 1105.0 and r["goal_s"] == 900
    d = r["stages"]["data"]
    assert d["compute_s"] == 5.0 and d["imports_s"] == 0.0 and d["parameter_cells_s"] == 0.15
    assert d["overhead_s"] == 5.0 and d["outside_notebook_s"] == 2.0
    assert d["kernel_and_papermill_s"] == pytest.approx(2.85) and d["share"] == round(10 / 1105, 4)
    assert r["stages"]["reward_models"]["compute_s"] == 950.0 and r["stages"]["reward_models"]["overhead_s"] == 50.0
    assert r["stages"]["reward_models"]["training_span_s"] == 880.0     # scalar starts at 0, GenRM GRPO ends at 880
    assert r["stages_without_notebook"] == ["report"]
    assert r["compute_s"] == 1035.0 and r["overhead_s"] == 65.0          # over the 3 stages with a notebook (1100 s)
    assert r["parallel_runs"] == {"reward_models": 2, "alignment": 1}
    rows = {x["run"]: x for x in r["runs"]}
    assert list(rows) == ["bt-bbb", "genrm-ccc/sft", "genrm-ccc/grpo", "scalar-aaa", "grpo-checker-s0-fff",
                          "policy_sft-eee"]                              # folders by name, a GenRM's parts by time
    assert [rows[n]["s_per_step"] for n in rows] == [4.0, 10.0, 19.0, 3.0, None, 2.0]
    assert rows["genrm-ccc/sft"]["stage"] == "reward_models" and rows["policy_sft-eee"]["stage"] == "alignment"
    assert rows["policy_sft-eee"]["timed_steps"] == 30 and rows["policy_sft-eee"]["torch_threads"] == 2
    assert rows["grpo-checker-s0-fff"]["wall_s"] is None and rows["grpo-checker-s0-fff"]["timed_steps"] == 8
    assert r["unfinished_runs"] == ["models/rm_runs/scalar-ddd"]
    # GenRM GRPO ends last; it waited for GenRM SFT, which took BT's slot (scalar still running until 300 s)
    assert r["critical_path"]["runs"]["reward_models"] == [
        {"run": "genrm-ccc/grpo", "wall_s": 380.0}, {"run": "genrm-ccc/sft", "wall_s": 290.0},
        {"run": "bt-bbb", "wall_s": 200.0}]
    assert r["critical_path"]["runs"]["alignment"] == [{"run": "policy_sft-eee", "wall_s": 60.0}]
    assert [x["stage"] for x in r["critical_path"]["stages"]] == ["reward_models", "alignment", "data", "report"]


def test_a_bad_training_log_is_named(clone):
    (clone / "models" / "rm_runs" / "bt-bbb" / "training_log.json").write_text("{not json")
    with pytest.raises(SystemExit, match="bt-bbb/training_log.json"):
        P.cold_tables(clone, WALLS, import_reps=1, python=sys.executable)


def full_result(clone, walls=WALLS) -> dict:
    machine = {"date": "2026-01-01T11:00:00+00:00", "cpu": "Test CPU", "cores": 2, "torch": "2.x",
               "torch_threads": 2, "gpu": None, "load_average": [2.0, 1.5, 1.0], "git_commit": "abc1234"}
    return {"command": "bench/repro.py --cold", "source": "git clone of HEAD abc1234 (committed tree)",
            "commit": "abc1234" * 5, "venv_s": 99.0, **P.cold_tables(clone, walls, 1, sys.executable),
            "definition": "wall = ...", "load_average_start": [0.5, 0.4, 0.3], "machine": machine}


def test_rendering_of_the_cold_run(clone):
    text = "\n".join(R.repro_cold(full_result(clone)))
    assert "git clone of HEAD abc1234 (committed tree), `make venv` there (99 s, not counted below)" in text
    assert "load average at the start: 0.5/0.4/0.3" in text and "Test CPU, 2 logical cores" in text
    assert "**1,105 s (18.4 min)** against the goal of 15 min (900 s): NOT met (1.23× the goal)" in text
    assert ("largest first): reward_models 1,000 s (90%) [training runs on its critical path: genrm-ccc/grpo 380 s, "
            "genrm-ccc/sft 290 s, bt-bbb 200 s]; alignment 90 s (8%) [training runs on its critical path: "
            "policy_sft-eee 60 s]; data 10 s (1%); report 5 s (0%).") in text
    assert "Trainings at once (`parallel_runs`): reward_models 2, alignment 1." in text
    assert "| data | 10.0 | 0.9% | 5.0 | 5.0 |  |" in text
    assert "| reward_models | 1,000.0 | 90.5% | 950.0 | 50.0 | 880.0 |" in text
    assert "| **total** | **1,105.0** | 100% | 1,035.0 | 65.0 | |" in text
    assert "| reward_models | scalar-aaa | 100 | 300.0 | 3.000 | 1 | 1 |" in text
    assert "| alignment | policy_sft-eee | 30 of 60 (resumed) | 60.0 | 2.000 | 2 | 1 |" in text
    assert "| alignment | grpo-checker-s0-fff | 8 | n/a | n/a | n/a | 1 |" in text
    assert "without a training log (not finished): models/rm_runs/scalar-ddd." in text
    assert "without an executed notebook (compute not counted): report." in text
    short = "\n".join(R.repro_cold(full_result(clone, {"data": 10.0, "reward_models": 700.0, "alignment": 90.0})))
    assert "**800 s (13.3 min)** against the goal of 15 min (900 s): met (0.89× the goal)" in short


def test_results_md_gets_the_cold_section_and_keeps_the_repro_one(clone, tmp_path, monkeypatch):
    repro = {"overhead_share": 0.05, "total_s": 100.0, "overhead_s": 5.0, "compute_s": 95.0,
             "wall_source": "dvc repro --force --single-item per stage (full stage wall)",
             "stages": {"data": {"wall_s": 10.0, "compute_s": 9.0, "imports_s": 0.2, "kernel_and_papermill_s": 0.5,
                                 "outside_notebook_s": 0.3}},
             "stages_without_notebook": [], "definition": "d", "machine": full_result(clone)["machine"]}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"repro": repro, "repro_cold": full_result(clone)}))
    monkeypatch.setattr(R.common, "RESULTS", results)
    monkeypatch.setattr(R, "OUT", tmp_path / "RESULTS.md")
    R.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| `repro_cold.total_s` | 1,105 s | ≤ 900 s (15 min) |" in text
    assert "## `repro`: the share of a smoke `dvc repro` spent outside model compute" in text
    assert text.index("## `repro`:") < text.index("## `repro_cold`:") < text.index("## `gpu`")


def test_work_folder_is_removed_after_success_and_kept_and_named_after_a_failure(tmp_path):
    import common

    with common.work_folder(None, "rlbff-test-", "clone") as dest:
        dest.mkdir()
        (dest / "f").write_text("x")
    assert not dest.parent.exists()
    with pytest.raises(SystemExit, match=r"boom \(clone kept in .*rlbff\)"):
        with common.work_folder(None, "rlbff-test-", "clone") as dest:
            dest.mkdir()
            raise SystemExit("boom")
    assert dest.exists()
    import shutil
    shutil.rmtree(dest.parent)
    keep = tmp_path / "keep"
    with common.work_folder(keep, "rlbff-test-", "copy") as dest:
        assert dest == keep.resolve() and not dest.exists()
        dest.mkdir()
    assert keep.exists()
    (keep / "f").write_text("x")
    with pytest.raises(SystemExit, match="folder exists and is not empty"):
        with common.work_folder(keep, "rlbff-test-", "copy"):
            pass
