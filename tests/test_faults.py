"""Fault tolerance: killed runs resume to the uninterrupted result, corrupt state is redone, bad
parameters and bad data files are refused before any work, naming the key or the file and line.

Already covered elsewhere (not repeated here):
- extraction: a SIGKILLed CLI run resumes asking only what has no cached answer, at most the
  in-flight requests lost (``test_extraction.py::test_cli_killed_run_resumes_without_asking_again``);
  a cut cache line is detected and asked again (``test_corrupt_cache_line_is_detected_and_asked_again``);
- reward model: an in-process crash after a checkpoint resumes to the same losses and weights, a
  half-written later checkpoint is skipped (``test_reward_model.py::test_interrupted_training_resumes_to_the_same_result``),
  unreadable ``trainer_state.json`` (``test_checkpoint_checks``);
- parameters: unknown key, wrong type, impossible value, unknown section, missing profile file, the
  ``check`` command (``test_params.py``); a missing ``data.helpsteer3.path`` (``test_data_sources.py``);
- benchmark files: missing fields, wrong labels, duplicate ids, JSON-array indices
  (``test_benchmarks.py``), feedback / principle files (``test_data_sources.py``).
"""
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from rlbff_lib.core.io import DataError, read_jsonl, read_jsonl_tolerant, write_jsonl
from rlbff_lib.core.params import ParamError, load_params

from fakes.openai_server import FakeOpenAI  # noqa: E402
from rlbff_lib.core.params import REPO_ROOT

ROOT = REPO_ROOT
KEY_VAR = "RLBFF_TEST_FAULTS_KEY"


def _child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1", **extra})
    return env


@pytest.fixture
def loopback_only(monkeypatch):
    """Refuse any connection that is not to 127.0.0.1 (the fake endpoint)."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"test tried to connect to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv(KEY_VAR, "sk-faults-test")


# ------------------------------------------------------------------ extraction: SIGKILL, then rerun


def _feedback_records(n: int) -> list[dict]:
    return [{"id": f"rec{i}", "domain": "general", "language": "english",
             "context": [{"role": "user", "content": f"Question {i}?"}], "response1": "A.", "response2": "B.",
             "feedback1": [f"Record {i} one is fine. It is concise.", f"Record {i} one is poor."],
             "feedback2": [f"Record {i} two is fine.", f"Record {i} two is wrong."]} for i in range(n)]


def _extraction_args(server, folder: Path, inp: Path, concurrency: int) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", "fake-model", "--api-key-env", KEY_VAR,
            "--input", str(inp), "--cache", str(folder / "cache.jsonl"), "--out", str(folder / "out.jsonl"),
            "--concurrency", str(concurrency), "--max-failure-share", "0.5"]


def test_sigkilled_extraction_rerun_equals_an_uninterrupted_run(tmp_path, loopback_only):
    from rlbff_lib.principles.extraction import main

    inp = tmp_path / "feedback.jsonl"
    write_jsonl(inp, _feedback_records(6))
    n_items, concurrency = 24, 2
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    with FakeOpenAI() as server:  # the uninterrupted run
        assert main(_extraction_args(server, whole, inp, concurrency)) == 0
    with FakeOpenAI(latency_s=0.1) as server:
        args = [sys.executable, "-m", "rlbff_lib.principles.extraction", *_extraction_args(server, cut, inp, concurrency)]
        proc = subprocess.Popen(args, cwd=ROOT, env=_child_env(**{KEY_VAR: "sk-faults-test"}),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and len(read_jsonl_tolerant(cut / "cache.jsonl")[0]) < 6:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        cached = {r["key"] for r in read_jsonl_tolerant(cut / "cache.jsonl")[0] if r.get("status") == "ok"}
        killed_requests = server.requests
        assert 6 <= len(cached) < n_items and not (cut / "out.jsonl").exists()
        assert main(_extraction_args(server, cut, inp, concurrency)) == 0  # the rerun
        rerun_requests = server.requests - killed_requests
    assert rerun_requests == n_items - len(cached)  # nothing asked twice once answered
    assert read_jsonl(cut / "out.jsonl") == read_jsonl(whole / "out.jsonl")  # same rows, same order
    rows, bad_lines = read_jsonl_tolerant(cut / "cache.jsonl")
    keys = Counter(r["key"] for r in rows if r.get("status") == "ok")
    assert len(keys) == n_items and set(keys.values()) == {1}, "an answer was lost or written twice"
    assert len(bad_lines) <= 1  # at most the line the kill cut


# ------------------------------------------------------------------ reward model: SIGKILL after a checkpoint


def _rm_items(world, n: int) -> list[dict]:
    from rlbff_lib.synthetic.world import PROPERTIES

    rng = random.Random(0)
    truth = {(t["id"], t["response"]): t for t in world.truth}
    items = []
    for rec in world.records:
        for j in (1, 2):
            t = truth[(rec["id"], j)]
            if "followup_question" in t["properties"]:
                items.append({"item_id": f"{rec['id']}-{j}", "context": rec["context"],
                              "response": rec[f"response{j}"][:300],
                              "principle": rng.choice(PROPERTIES["followup_question"].phrasings),
                              "label": "Yes" if t["properties"]["followup_question"] else "No"})
    return items[:n]


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A 1-layer, hidden-32 Qwen3 base model and 48 RM items of the synthetic world."""
    from rlbff_lib.models.lm import ModelSizeConfig, build_qwen3
    from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
    from rlbff_lib.synthetic.world import WorldConfig, corpus_texts, generate_world

    world = generate_world(WorldConfig(n_prompts=120, seed=1))
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=600))
    base = tmp_path_factory.mktemp("tiny_base")
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=512)
    build_qwen3(tok, size, seed=0).save_pretrained(base)
    tok.save_pretrained(base)
    return base, _rm_items(world, 48)


@pytest.mark.slow
def test_sigkilled_training_with_a_corrupt_checkpoint_resumes_to_the_uninterrupted_weights(tiny_rm, tmp_path):
    """SIGKILL of `python -m rlbff_lib.reward_models.scalar train` after its second checkpoint; the newest
    complete checkpoint is then corrupted (optimizer state cut in half): the rerun must detect it,
    redo its steps from the checkpoint before, and end with the uninterrupted run's weights."""
    import torch

    from rlbff_lib.training.launch import TrainJob, checkpoint_problem, find_resume_checkpoint
    from rlbff_lib.models.lm import load_causal_lm
    from rlbff_lib.reward_models.scalar import ScalarRMConfig, run_job, train_scalar_rm

    base, items = tiny_rm
    cfg = ScalarRMConfig(learning_rate=5e-3, max_steps=40, per_device_train_batch_size=4, max_length=96,
                         logging_steps=1, save_steps=4, save_total_limit=3, seed=3, warmup_ratio=0.0)
    whole = train_scalar_rm(cfg, base, items, tmp_path / "whole")
    write_jsonl(tmp_path / "train.jsonl", items)
    job = TrainJob(model=str(base), train_file=str(tmp_path / "train.jsonl"), output_dir=str(tmp_path / "cut"),
                   config=dataclasses.asdict(cfg)).write(tmp_path / "job.json")
    checkpoints = tmp_path / "cut" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "rlbff_lib.reward_models.scalar", "train", "--config", str(job)],
                            cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    newest = None
    while time.time() < deadline and proc.poll() is None:
        newest = find_resume_checkpoint(checkpoints)[0]
        if newest and int(newest.rsplit("-", 1)[1]) >= 8:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert newest, "no complete checkpoint appeared"
    assert not (tmp_path / "cut" / "model").exists(), "the run finished before it could be killed"
    newest = find_resume_checkpoint(checkpoints)[0]  # the kill may have completed one more
    step = int(newest.rsplit("-", 1)[1])
    optimizer = Path(newest) / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    assert "optimizer.pt" in checkpoint_problem(newest)

    resumed = run_job(TrainJob.read(job))  # the rerun
    assert resumed["resumed_from"].endswith(f"checkpoint-{step - 4}")
    assert [s["folder"] for s in resumed["skipped_checkpoints"]][:1] == [newest]
    assert not Path(newest).exists() or checkpoint_problem(newest) is None  # deleted, or redone whole
    assert resumed["global_step"] == whole["global_step"] == 40
    a, b = load_causal_lm(tmp_path / "whole" / "model"), load_causal_lm(tmp_path / "cut" / "model")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name
    assert not torch.allclose(a.lm_head.weight, load_causal_lm(base).lm_head.weight)  # it did train


def test_bad_training_file_is_refused_naming_file_line_and_field(tiny_rm, tmp_path):
    from rlbff_lib.training.launch import TrainJob
    from rlbff_lib.reward_models.scalar import ScalarRMConfig, run_job

    base, items = tiny_rm
    bad = [dict(it) for it in items[:5]]
    bad[2]["label"] = "Maybe"
    del bad[4]["principle"]
    for rows, line, needle in ((bad[:4], 3, "label: must be Yes or No"), ([bad[0], bad[4]], 2, "field 'principle'")):
        write_jsonl(tmp_path / "train.jsonl", rows)
        job = TrainJob(model=str(base), train_file=str(tmp_path / "train.jsonl"), output_dir=str(tmp_path / "out"),
                       config=dataclasses.asdict(ScalarRMConfig(max_steps=1)))
        with pytest.raises(DataError) as err:
            run_job(job)
        assert err.value.path.endswith("train.jsonl") and err.value.line == line and needle in str(err.value)
        assert not (tmp_path / "out").exists()  # refused before any work


# ------------------------------------------------------------------ parameters refused before any work


def _params(tmp_path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: r["data"].update(source="helpsteer3", helpsteer3={**r["data"]["helpsteer3"], "path": "/nonexistent/hs3"}),
     "data.helpsteer3.path: /nonexistent/hs3 does not exist"),
    (lambda r: r["data"].update(source="helpsteer3",
                                helpsteer3={**r["data"]["helpsteer3"], "preference_path": "/nonexistent/pref.jsonl"}),
     "data.helpsteer3.preference_path: /nonexistent/pref.jsonl does not exist"),
    (lambda r: r["principles"]["extraction"].update(backend="openai", prompt_version="v404"),
     "principles.extraction.prompt_version: no prompt file"),
    (lambda r: r["reward_models"].update(accelerate_config="no_such_cluster.yaml"),
     "reward_models.accelerate_config: no_such_cluster.yaml not found"),
    (lambda r: r["principles"]["consensus"].update(threshold=1.5), "principles.consensus.threshold"),
    (lambda r: r["reward_models"]["scalar"].update(learning_rate="fast"), "reward_models.scalar.learning_rate"),
    (lambda r: r["reward_models"]["scalar"].update(lr=0.1), "reward_models.scalar.lr: unknown key"),
    (lambda r: r["report"].update(dpi=True), "report.dpi: expected an integer"),
])
def test_bad_parameter_is_refused_before_any_work_naming_the_key(tmp_path, mutate, needle):
    from rlbff_lib.core.stage import run_stage

    path = _params(tmp_path, mutate)
    with pytest.raises(ParamError) as err:
        load_params(path)
    assert needle in str(err.value)
    with pytest.raises(ParamError):  # the harness validates every section before executing anything
        run_stage("report", path, workdir=tmp_path)
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "metrics").exists()


# ------------------------------------------------------------------ data files: gaps of the loaders' tests


def test_rmbench_invalid_json_names_file_and_line(tmp_path):
    from rlbff_lib.evaluation import benchmarks as bm

    path = tmp_path / "chat_filtered.json"
    path.write_text('[\n  {"id": 1, "prompt": "p",\n  "chosen": ["a", "b", "c"]\n')  # cut off
    with pytest.raises(DataError) as err:
        bm.load_rmbench_file(path, "chat")
    assert err.value.path == str(path) and "invalid JSON" in str(err.value) and "line 4" in str(err.value)


def test_mtbench_invalid_json_line_names_file_and_line(tmp_path):
    import shutil

    from rlbff_lib.evaluation import benchmarks as bm

    src = bm.benchmarks_dir() / "mt-bench"
    if not src.exists():
        pytest.skip("no local MT-Bench copy")
    folder = tmp_path / "mt-bench"
    shutil.copytree(src, folder)
    lines = (folder / "question.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-5]  # a line cut short
    (folder / "question.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        bm.load_mtbench(tmp_path)
    assert err.value.path == str(folder / "question.jsonl") and err.value.line == 5
    assert "invalid JSON" in str(err.value)


def test_principle_items_with_a_wrong_label_or_missing_field_name_the_line(tmp_path):
    """The items the reward models are evaluated on (PrincipleBench / validation, read by ``rm_eval``)."""
    rm_eval = pytest.importorskip("rlbff_lib.stages.rm_eval")
    good = {"context": [{"role": "user", "content": "q"}], "response": "r", "principle": "is concise", "label": "Yes"}
    write_jsonl(tmp_path / "principlebench.jsonl", [good, {**good, "label": "yes please"}])
    with pytest.raises(DataError) as err:
        read_jsonl(tmp_path / "principlebench.jsonl", rm_eval.validate_rm_item)
    assert err.value.line == 2 and "label" in str(err.value)
    write_jsonl(tmp_path / "principlebench.jsonl", [good, good, {k: v for k, v in good.items() if k != "response"}])
    with pytest.raises(DataError) as err:
        read_jsonl(tmp_path / "principlebench.jsonl", rm_eval.validate_rm_item)
    assert (err.value.line, err.value.field) == (3, "response")
