"""Integration: the pipeline's notebooks execute through papermill on tiny parameters.

Each stage runs in a temporary working folder (its relative inputs and outputs
resolve there), in order, exactly as `dvc repro` would run them.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlbff_lib.core.stage import run_stage
from rlbff_lib.core.params import REPO_ROOT

ROOT = REPO_ROOT

TINY = {
    "data": {"world": {"n_prompts": 80, "seed": 5}},
    "assets": {
        "tokenizer": {"vocab_size": 600},
        "models": {role: {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 64,
                          "max_position_embeddings": 512} for role in ("policy", "reward")},
        "pretrain": {"steps": 4, "batch_size": 4, "seq_len": 64},
    },
    "principles": {"split": {"bench_share": 0.3}, "consensus": {"sweep": [0.7, 0.9]}, "top_k": 5},
    "reward_models": {
        "scalar": {"max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1, "save_steps": 1},
        "bt": {"max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1, "save_steps": 1},
        "genrm": {"sft": {"max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1, "save_steps": 1},
                  "grpo": {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 4,
                           "max_completion_length": 8, "logging_steps": 1, "save_steps": 1},
                  "eval_max_new_tokens": 8},
        "genrm_eval_limit": 4,
    },
    "alignment": {
        "policy": {"sft_steps": 2, "n_examples": 16, "per_device_train_batch_size": 4, "logging_steps": 1,
                   "save_steps": 1},
        "grpo": {"n_prompts": 8, "max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 4,
                 "max_completion_length": 8, "logging_steps": 1, "save_steps": 1},
        "seeds": [0, 1],
        "fulfilment": {"n_prompts": 4, "max_new_tokens": 8, "batch_size": 4},
        "evaluation": {"mtbench_limit": 1, "arena_limit": 2, "max_new_tokens": 8, "n_bootstrap": 5},
    },
}
STAGES = [name for name in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]]


SECRET = "sk-planted-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    # a secret in the environment of every stage: it must never reach an output, log or executed notebook
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_API_KEY", SECRET)
    mp.setenv("RLBFF_PLANTED_SECRET", SECRET)
    wd = tmp_path_factory.mktemp("pipeline")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, over in TINY.items():
        raw[section] = _merge(raw[section], over)
    (wd / "params.yaml").write_text(yaml.safe_dump(raw))
    yield wd
    mp.undo()


def _merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


@pytest.mark.slow
def test_data_and_assets_stages_execute(workdir):
    for name in ("data", "assets"):
        out = run_stage(name, workdir / "params.yaml", workdir=workdir)
        nb = json.loads(out.read_text())
        assert any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
        assert not (workdir / "outputs" / "notebooks" / f"{name}.failed.ipynb").exists()
    data = json.loads((workdir / "metrics" / "data.json").read_text())
    assert data["records"] == 80
    assert (workdir / "data" / "source" / "truth.jsonl").exists()
    assert (workdir / "figures" / "data_properties.png").stat().st_size > 1000
    assets = json.loads((workdir / "outputs" / "details" / "assets.json").read_text())
    assert assets["tokenizer"]["vocab_size"] == 600
    assert json.loads((workdir / "metrics" / "assets.json").read_text())["vocab_size"] == 600  # the headline
    assert (workdir / "models" / "assets" / "base_policy" / "model.safetensors").exists()
    # the notebook read the workdir's params.yaml itself (nothing injected), and shows its figures inline
    executed = json.loads((workdir / "outputs" / "notebooks" / "data.ipynb").read_text())
    assert not [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    figures = [o["metadata"]["rlbff"]["figure"] for c in executed["cells"] for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})]
    assert figures == ["figures/data_properties.png", "figures/data_preferences.png"]


@pytest.mark.slow
def test_a_failing_stage_leaves_no_trusted_output(workdir):
    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["data"]["helpsteer3"]["path"] = str(workdir / "empty")
    raw["data"]["source"] = "helpsteer3"
    (workdir / "empty").mkdir(exist_ok=True)
    bad = workdir / "bad_params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = workdir / "outputs" / "bad" / "data.ipynb"
    with pytest.raises(Exception, match="no feedback"):
        run_stage("data", bad, output=out, workdir=workdir)
    assert not out.exists()
    assert (workdir / "outputs" / "bad" / "data.failed.ipynb").exists()


@pytest.mark.slow
def test_principles_stage_executes(workdir):
    if not (workdir / "data" / "source" / "feedback.jsonl").exists():
        run_stage("data", workdir / "params.yaml", workdir=workdir)
    run_stage("principles", workdir / "params.yaml", workdir=workdir)
    m = json.loads((workdir / "outputs" / "details" / "principles.json").read_text())
    assert m["source"] == "feedback" and m["funnel"]["0_extracted"]["count"] > 0
    assert set(m["consensus"]["sweep"]) == {"0.7", "0.9"}
    assert m["synthetic"]["accuracy_after_consensus"] is not None
    out = workdir / "data" / "principles"
    splits = {s: {json.loads(l)["prompt_id"] for l in (out / f"{s}.jsonl").read_text().splitlines()}
              for s in ("train", "validation", "principlebench")}
    assert splits["principlebench"].isdisjoint(splits["train"] | splits["validation"])
    assert (workdir / "data" / "cache" / "extraction.jsonl").stat().st_size > 0
    for fig in ("funnel", "top", "threshold"):
        assert (workdir / "figures" / f"principles_{fig}.png").stat().st_size > 1000


@pytest.mark.slow
def test_reward_models_stage_executes(workdir):
    """The three trainers run as accelerate subprocesses for a couple of steps, then are measured."""
    for name in ("data", "assets", "principles"):
        if not (workdir / "outputs" / "notebooks" / f"{name}.ipynb").exists():
            run_stage(name, workdir / "params.yaml", workdir=workdir)
    run_stage("reward_models", workdir / "params.yaml", workdir=workdir)
    m = json.loads((workdir / "outputs" / "details" / "reward_models.json").read_text())
    assert set(m["validation"]["accuracy"]) == {"scalar", "bt", "genrm"}  # percent, with 95% Wilson intervals
    assert all(lo <= m["validation"]["accuracy"][k] <= hi for k, (lo, hi) in m["validation"]["ci"].items())
    assert 50 <= m["validation"]["majority_baseline"] <= 100
    assert "principlebench" not in m  # PrincipleBench is published once, by rm_eval
    for name in ("scalar", "bt", "genrm"):
        assert (workdir / "models" / "reward_models" / name / "model.safetensors").exists()
    assert len(list((workdir / "models" / "rm_runs").glob("scalar-*"))) == 1
    assert (workdir / "figures" / "reward_models_calibration.png").exists()


@pytest.mark.slow
def test_alignment_stage_executes(workdir):
    """SFT, GRPO (scalar and BT rewards, two seeds each), fulfilment, MT-Bench and Arena-Hard on the
    local benchmark files; a rerun reuses every finished run."""
    from rlbff_lib.evaluation.benchmarks import benchmarks_dir

    for name in ("data", "assets", "principles", "reward_models"):
        if not (workdir / "outputs" / "notebooks" / f"{name}.ipynb").exists():
            run_stage(name, workdir / "params.yaml", workdir=workdir)
    run_stage("alignment", workdir / "params.yaml", workdir=workdir)
    m = json.loads((workdir / "outputs" / "details" / "alignment.json").read_text())
    ful = m["fulfilment"]
    assert [s["seed"] for s in ful["seeds"]] == [0, 1] and set(ful["by_reward"]) == {"scalar", "bt"}
    assert ful["gain"]["mean"] == pytest.approx(sum(s["gain"] for s in ful["seeds"]) / 2)
    assert set(ful["before"]["rates"]) == set(m["train_properties"]) | set(m["held_out_properties"])
    assert set(m["curves"]) == {"scalar s0", "scalar s1", "bt s0", "bt s1"}
    assert all(p["step"] == 1 for c in m["curves"].values() for p in c)
    runs = sorted(p.name.rsplit("-", 1)[0] for p in (workdir / "models" / "alignment_runs").iterdir())
    assert runs == ["grpo-bt-s0", "grpo-bt-s1", "grpo-scalar-s0", "grpo-scalar-s1", "policy_sft"]
    if benchmarks_dir() is not None:
        assert m["policies"]["scalar"]["mt_bench"]["judge"] == "principle-RM (smoke, not GPT-4)"
        assert 1 <= m["policies"]["sft"]["mt_bench"]["overall"] <= 10
        assert 0 <= m["policies"]["bt"]["arena_hard"]["win_rate"] <= 100
    for fig in ("curves", "fulfilment"):
        assert (workdir / "figures" / f"alignment_{fig}.png").stat().st_size > 1000
    stamps = {p: p.stat().st_mtime_ns for p in (workdir / "models" / "alignment_runs").glob("*/model/*.safetensors")}
    run_stage("alignment", workdir / "params.yaml", workdir=workdir)  # finished runs are reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps



JUDGE_KEY_VAR = "RLBFF_TEST_JUDGE_KEY"  # holds SECRET: test_no_secret_in_any_output then scans the judge cache too


def _dvc_project(wd: Path, stage: str) -> None:
    """Make ``wd`` a DVC project as a clone is one: the repository's dvc.yaml and .dvcignore, and each top-level
    folder or file that ``stage``'s deps and params files name (launcher, notebooks, library, configs,
    profiles). The deps an upstream stage makes must already be in ``wd``."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    made = [Path(next(iter(o)) if isinstance(o, dict) else o) for s in stages.values()
            for kind in ("outs", "metrics", "plots") for o in s.get(kind, [])]
    spec = stages[stage]
    for name in [*spec["deps"], *(next(iter(p)) for p in spec.get("params", []) if isinstance(p, dict))]:
        if any(o == Path(name) or o in Path(name).parents for o in made):
            assert (wd / name).exists(), f"{name}: made by an upstream stage, missing in {wd}"
            continue
        top = Path(name).parts[0]
        if not (wd / top).exists():
            if (ROOT / top).is_dir():
                shutil.copytree(ROOT / top, wd / top, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / top, wd / top)
    shutil.copy2(ROOT / "dvc.yaml", wd / "dvc.yaml")


def _judge_reply(payload: dict, mtbench_model: str) -> str:
    """The fake judge's answer: deterministic in the request, in the official formats (FastChat's MT-Bench
    rating, Arena-Hard's verdict)."""
    user = payload["messages"][-1]["content"]
    return f"Rating: [[{len(user) % 9 + 1}]]" if payload["model"] == mtbench_model else "My final verdict is: [[A=B]]"


def _dvc_repro(dvc: Path, wd: Path, env: dict, stage: str) -> str:
    r = subprocess.run([str(dvc), "repro", "--force", "-s", stage], cwd=wd, env=env, capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, f"dvc repro --force -s {stage}: rc {r.returncode}\n{(r.stdout + r.stderr)[-4000:]}"
    return r.stdout + r.stderr


@pytest.mark.slow
def test_dvc_rerun_of_alignment_asks_the_judge_nothing(workdir):
    """Issue 15: through DVC itself, in a project as a user has one, with the OpenAI-compatible judges on a
    counting fake server, `dvc repro --force -s alignment` asks the judges, and a second one asks them
    nothing (their answers are cached in a `persist` output DVC keeps) and retrains nothing."""
    from fakes.openai_server import FakeOpenAI
    from rlbff_lib.evaluation.benchmarks import ENV_VAR, benchmarks_dir

    bench = benchmarks_dir()
    if bench is None:
        pytest.skip(f"no benchmarks folder (${ENV_VAR} or ../shared/benchmarks): MT-Bench and Arena-Hard "
                    "questions, which the judges are asked about, come from it")
    for name in ("data", "assets", "principles", "reward_models"):
        if not (workdir / "outputs" / "notebooks" / f"{name}.ipynb").exists():
            run_stage(name, workdir / "params.yaml", workdir=workdir)
    _dvc_project(workdir, "alignment")
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in ("RLBFF_ROOT", "RLBFF_PARAMS", "RLBFF_PYTHON")}
    env.update({"PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}", "DVC_NO_ANALYTICS": "1", ENV_VAR: str(bench),
                JUDGE_KEY_VAR: SECRET})
    subprocess.run([str(bindir / "dvc"), "init", "--no-scm", "-q"], cwd=workdir, env=env, check=True)
    shutil.copy2(ROOT / ".dvcignore", workdir / ".dvcignore")

    params = workdir / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    ev = raw["alignment"]["evaluation"]
    models = (ev["mtbench_judge_model"], ev["arena_judge_model"])
    weights = lambda: {p: p.stat().st_mtime_ns for p in (workdir / "models" / "alignment_runs").glob(
        "*/model/*.safetensors")}
    with FakeOpenAI(models=models, api_key=SECRET, reply=lambda p: _judge_reply(p, models[0])) as server:
        ev.update(judge="openai", judge_base_url=server.base_url, judge_api_key_env=JUDGE_KEY_VAR)
        params.write_text(yaml.safe_dump(raw))
        try:
            trained = weights()  # by test_alignment_stage_executes when it ran; else the first repro trains
            _dvc_repro(bindir / "dvc", workdir, env, "alignment")
            asked, stamps = server.requests, weights()
            assert not trained or stamps == trained  # the judge is no part of a training run's key
            assert asked > 0 and {c["payload"]["model"] for c in server.calls} == set(models)
            _dvc_repro(bindir / "dvc", workdir, env, "alignment")
            assert server.requests == asked, f"the rerun asked the judges {server.requests - asked} request(s)"
        finally:
            params.write_text(original)
    assert len(stamps) == 5 and weights() == stamps  # SFT and 4 GRPO runs, reused by the rerun
    # the judges' answers live in an output DVC neither deletes nor restores on a rerun (persist: true)
    cache, = workdir.glob("models/*/judge_cache.jsonl")
    assert len(cache.read_text().splitlines()) == asked and SECRET not in cache.read_text()
    outs = yaml.safe_load((workdir / "dvc.yaml").read_text())["stages"]["alignment"]["outs"]
    kept = [Path(next(iter(o))) for o in outs if isinstance(o, dict) and next(iter(o.values())).get("persist")]
    assert any(k in cache.relative_to(workdir).parents for k in kept)


@pytest.mark.slow
def test_no_secret_in_any_output(workdir):
    """Runs last: every file the stages wrote (data, models, metrics, figures, notebooks) is scanned."""
    scanned = 0
    for path in workdir.rglob("*"):
        if path.is_file():
            scanned += 1
            assert SECRET.encode() not in path.read_bytes(), f"secret leaked into {path}"
    assert scanned > 10
