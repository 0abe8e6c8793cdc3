"""Errors named, nothing silently dropped (issue 15 item 5): each bad input ends in ONE line naming the file and line,
the field, the key, the model path or the parameter, before the heavy work where it can be known before.

Cases: a missing model folder (loaders, the score command, rm_eval's preflight, a stage notebook that raises); a byte
that is not UTF-8 in an input; an unwritable output folder (the stage preflight, the extraction command); a feedback
record without ``feedback1``; empty input files; empty and over-long principles; ``--max-length`` beyond the model's
positions; duplicate keys in params.yaml; an empty params file.
"""
import gzip
import json
import os
from pathlib import Path

import pytest

from rlbff_lib.core.io import DataError, OutputError, check_writable, load_yaml, read_jsonl
from rlbff_lib.core.params import REPO_ROOT, ParamError, load_params, read_raw

FEEDBACK = {"id": "r0", "domain": "general", "language": "english", "context": [{"role": "user", "content": "Hi?"}],
            "response1": "A.", "response2": "B.", "feedback1": ["One is fine."], "feedback2": ["Two is wrong."]}


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------ a missing model folder


def test_loaders_name_a_missing_local_model_in_one_line(tmp_path, monkeypatch):
    from rlbff_lib.models.lm import check_model_dir, load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for path in ("models/reward_models/nope", "models/nope", "./nope", str(tmp_path / "nope")):
        for load in (load_causal_lm, load_tokenizer):
            with pytest.raises(FileNotFoundError) as e:
                load(path)
            assert one_line(str(e.value)) == f"{path}: no such model folder"
    (tmp_path / "models" / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="^models/empty: not a model folder [(]no config.json[)]$"):
        load_causal_lm("models/empty")
    with pytest.raises(FileNotFoundError, match="^rm_eval.models.bt.path: models/nope: no such model folder$"):
        check_model_dir("models/nope", "rm_eval.models.bt.path")
    check_model_dir("Qwen/Qwen3-32B")  # a hub name (no local folder Qwen/) is left to the hub


def test_rm_eval_preflight_names_the_param_of_a_missing_model(tmp_path):
    from rlbff_lib.core.preflight import PreflightError, preflight

    raw = read_raw(REPO_ROOT / "params.yaml")
    raw["rm_eval"]["models"]["bt"]["path"] = "models/reward_models/nope"
    (tmp_path / "models" / "reward_models" / "scalar").mkdir(parents=True)
    (tmp_path / "models" / "reward_models" / "genrm").mkdir(parents=True)
    with pytest.raises(PreflightError) as e:
        preflight("rm_eval", raw, tmp_path)
    assert one_line(str(e.value)).startswith("rm_eval.models.bt.path: models/reward_models/nope: no such model folder")
    (tmp_path / "models" / "reward_models" / "nope").mkdir()
    preflight("rm_eval", raw, tmp_path)


def test_a_notebook_that_raises_ends_the_stage_command_in_one_line(monkeypatch, capsys):
    """The harness prints the notebook's exception in one line and points at the failed notebook for the
    traceback (papermill's own message repeats the whole traceback)."""
    from papermill.exceptions import PapermillExecutionError

    from rlbff_lib.core import stage

    def run_stage(*args, **kwargs):
        raise PapermillExecutionError(cell_index=3, exec_count=4, source="load_model(cfg)",
                                      ename="FileNotFoundError",
                                      evalue="models/reward_models/bt: no model (config.json) there",
                                      traceback=["Traceback (most recent call last):"] + ["  frame"] * 70)

    monkeypatch.setattr(stage, "run_stage", run_stage)
    assert stage.main(["run", "rm_eval"]) == 1
    err = one_line(capsys.readouterr().err)
    assert err == ("error: stage rm_eval: FileNotFoundError: models/reward_models/bt: no model (config.json) there "
                   "(traceback in outputs/notebooks/rm_eval.failed.ipynb, cell 4)")


# ------------------------------------------------------------------ bytes that are not UTF-8


def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path):
    path = tmp_path / "feedback.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataError) as e:
        read_jsonl(path)
    assert str(e.value) == f"{path}, line 3: not UTF-8: byte 0xe9 at column 11"
    gz = tmp_path / "feedback.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"a": 1}\n\xff\n'))
    with pytest.raises(DataError, match=r"feedback.jsonl.gz, line 2: not UTF-8: byte 0xff at column 1$"):
        read_jsonl(gz)


def test_non_utf8_in_a_json_input_names_its_line(tmp_path):
    from rlbff_lib.data.sources import read_feedback_files
    from rlbff_lib.reward_models.scoring import read_inputs

    path = tmp_path / "feedback.json"
    path.write_bytes(b'[\n  {"prompt": "q",\n   "response": "\x93quoted\x94"}\n]\n')
    with pytest.raises(DataError, match=r"feedback.json, line 3: not UTF-8: byte 0x93 at column 17$"):
        read_inputs(path)
    with pytest.raises(DataError, match=r"feedback.json, line 3: not UTF-8"):
        read_feedback_files(path)


# ------------------------------------------------------------------ unwritable output folders


def test_check_writable_names_the_folder_and_creates_nothing(tmp_path, monkeypatch):
    (tmp_path / "metrics").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="cannot create output folder .*metrics/sub: .*metrics is not a folder"):
        check_writable([tmp_path / "figures" / "a.png", tmp_path / "metrics" / "sub" / "data.json"])
    assert not (tmp_path / "figures").exists()
    check_writable([tmp_path / "models" / "assets", tmp_path / "new" / "deep" / "x.json"])
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(OutputError, match=f"output folder {locked} is not writable [(]output {locked}/m.json[)]"):
        check_writable([locked / "m.json"])


def test_stage_preflight_names_an_unwritable_output_before_the_notebook(tmp_path):
    from rlbff_lib.core.preflight import PreflightError, preflight

    from rlbff_lib.core.stage import pipeline_outs

    (tmp_path / "dvc.yaml").write_text((REPO_ROOT / "dvc.yaml").read_text())
    (tmp_path / "figures").write_text("not a folder")
    raw = read_raw(REPO_ROOT / "params.yaml")
    outs = pipeline_outs(tmp_path, "data")
    assert tmp_path / "metrics" / "data.json" in outs and tmp_path / "models" / "assets" not in outs
    with pytest.raises(PreflightError) as e:
        preflight("data", raw, tmp_path, outs)
    assert one_line(str(e.value)).startswith(f"data: cannot create output folder {tmp_path}/figures")
    (tmp_path / "figures").unlink()
    preflight("data", raw, tmp_path, outs)


def test_extraction_command_names_an_unwritable_output_before_reading(tmp_path, capsys):
    from rlbff_lib.principles.extraction import main

    inp = tmp_path / "feedback.jsonl"
    inp.write_text(json.dumps(FEEDBACK) + "\n")
    (tmp_path / "blocker").write_text("x")
    out = tmp_path / "blocker" / "out.jsonl"
    assert main(["--input", str(inp), "--cache", str(tmp_path / "cache.jsonl"), "--out", str(out)]) == 2
    assert "blocker is not a folder" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "cache.jsonl").exists()


# ------------------------------------------------------------------ records and files silently accepted before


@pytest.mark.parametrize("field", ["feedback1", "feedback2"])
def test_a_feedback_record_without_feedback_texts_is_refused(tmp_path, capsys, field):
    from rlbff_lib.data.sources import read_feedback_files
    from rlbff_lib.principles.extraction import main

    inp = tmp_path / "feedback.jsonl"
    bad = {k: v for k, v in FEEDBACK.items() if k != field}
    inp.write_text(json.dumps(FEEDBACK) + "\n" + json.dumps({**bad, "id": "r1"}) + "\n")
    with pytest.raises(DataError, match=f"feedback.jsonl, line 2, field '{field}': missing field$"):
        read_feedback_files(inp)
    rc = main(["--input", str(inp), "--cache", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2
    assert one_line(capsys.readouterr().err) == f"error: {inp}, line 2, field '{field}': missing field"
    assert not (tmp_path / "o.jsonl").exists()


def test_empty_input_files_are_refused(tmp_path, capsys):
    from rlbff_lib.data.sources import read_feedback_files, read_principle_files
    from rlbff_lib.principles.extraction import main as extract
    from rlbff_lib.reward_models.scoring import main as score

    empty = tmp_path / "feedback.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="feedback.jsonl: no feedback records [(]empty file[)]"):
        read_feedback_files(empty)
    principle = tmp_path / "principle.jsonl"
    principle.write_text("")
    with pytest.raises(DataError, match="principle.jsonl: no principle records [(]empty file[)]"):
        read_principle_files(principle)
    assert extract(["--input", str(empty), "--cache", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert one_line(capsys.readouterr().err) == f"error: {empty}: no feedback records (empty file)"
    assert score(["--model", str(tmp_path / "unused"), "--principle", "p", "--input", str(empty)]) == 2
    assert one_line(capsys.readouterr().err) == f"error: {empty}: no records (empty file)"


def test_empty_principles_are_refused(tmp_path, capsys):
    from rlbff_lib.reward_models.scalar import validate_item
    from rlbff_lib.reward_models.scoring import main as score
    from rlbff_lib.stages.rm_eval import validate_pb_pair, validate_rm_item

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "q", "response": "r"}) + "\n")
    with pytest.raises(SystemExit) as e:
        score(["--model", str(tmp_path), "--principle", " ", "--input", str(inp)])
    assert e.value.code == 2 and "--principle: empty" in capsys.readouterr().err
    item = {"context": [{"role": "user", "content": "q"}], "response": "r", "principle": "  ", "label": "Yes"}
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({**item, "principle": "is concise"}) + "\n" + json.dumps(item) + "\n")
    for validate in (validate_item, validate_rm_item):
        with pytest.raises(DataError, match="items.jsonl, line 2: principle: must be a non-empty string"):
            read_jsonl(path, validate)
    pair = {"pair_id": "p", "context": item["context"], "principle": "", "chosen": "a", "rejected": "b"}
    path.write_text(json.dumps(pair) + "\n")
    with pytest.raises(DataError, match="items.jsonl, line 1: principle: must be a non-empty string"):
        read_jsonl(path, validate_pb_pair)


# ------------------------------------------------------------------ the score command against a 2,048-position model


@pytest.fixture(scope="module")
def model_2048(tmp_path_factory):
    import torch

    from fakes.tiny_models import save_base
    from rlbff_lib.models.lm import ModelSizeConfig
    from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
    from rlbff_lib.synthetic.world import WorldConfig, corpus_texts, generate_world

    torch.set_num_threads(1)
    tok = train_tokenizer(list(corpus_texts(generate_world(WorldConfig(n_prompts=40, seed=1)))),
                          TokenizerConfig(vocab_size=500))
    size = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, intermediate_size=64, max_position_embeddings=2048)
    return save_base(tok, size, tmp_path_factory.mktemp("m2048"))


def test_max_length_beyond_the_positions_is_refused_before_the_weights_load(model_2048, tmp_path, monkeypatch, capsys):
    from rlbff_lib.reward_models import scorers
    from rlbff_lib.reward_models.scoring import main as score

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "q", "response": "r"}) + "\n")

    def no_load(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(scorers, "load_scorer", no_load)
    assert score(["--model", str(model_2048), "--max-length", "4096", "--principle", "p", "--input", str(inp)]) == 2
    assert one_line(capsys.readouterr().err) == (f"error: --max-length: 4096 tokens exceed the model's 2048 positions "
                                                 f"(max_position_embeddings of {model_2048})")


def test_a_principle_that_would_push_the_response_out_is_refused(model_2048, tmp_path, capsys):
    from rlbff_lib.reward_models.scoring import main as score

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "q", "response": "r"}) + "\n")
    long = "is correct and " * 700  # ~10,000 characters
    out = tmp_path / "out.jsonl"
    assert score(["--model", str(model_2048), "--principle", long, "--input", str(inp), "--output", str(out)]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: --principle: 'is correct and is correct and is correct'... (10500 characters) "
                          "takes ") and "of the 2047 prompt tokens; over half" in err
    assert not out.exists()
    assert score(["--model", str(model_2048), "--principle", "is concise", "--input", str(inp), "--output", str(out)]) == 0


# ------------------------------------------------------------------ params files


def test_duplicate_yaml_keys_name_the_line_and_key(tmp_path):
    with pytest.raises(DataError, match=r"^x.yaml, line 4, field 'seed': duplicate key \(first at line 2\)$"):
        load_yaml("a:\n  seed: 0\n  other: 1\n  seed: 1\n", "x.yaml")
    assert load_yaml("base: &b {x: 1}\nuse:\n  <<: *b\n  x: 2\n") == {"base": {"x": 1}, "use": {"x": 2}}
    text = (REPO_ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(text + "\nreport: {svg: false, dpi: 90, top_principles: 5}\n")  # a second `report` section
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("report:"))
    with pytest.raises(ParamError) as e:
        load_params(path)
    assert one_line(str(e.value)) == (f"{path}, line {len(text.splitlines()) + 2}, field 'report': "
                                      f"duplicate key (first at line {first})")


def test_an_empty_params_file_is_refused(tmp_path, capsys):
    from rlbff_lib.core.stage import main

    path = tmp_path / "params.yaml"
    path.write_text("# nothing here\n\n")
    with pytest.raises(ParamError, match="params.yaml: empty; it needs at least `profile: smoke`"):
        load_params(path)
    assert main(["check", "--params", str(path)]) == 2
    assert "empty" in one_line(capsys.readouterr().err)
    path.write_text("profile: smoke\n")
    assert load_params(path)["profile"] == "smoke"  # every section at its defaults: stated, not implied


def test_a_recorded_base_model_that_is_gone_is_named_with_its_record(tmp_path, monkeypatch):
    from rlbff_lib.models.lm import base_model

    monkeypatch.chdir(tmp_path)
    assets = tmp_path / "models" / "assets"
    (assets / "base_policy").mkdir(parents=True)
    (assets / "base_policy" / "config.json").write_text("{}")
    (assets / "base_models.json").write_text(json.dumps({"policy": "models/assets/base_policy",
                                                         "reward": "models/assets/base_reward"}))
    assert base_model("policy") == "models/assets/base_policy"
    with pytest.raises(FileNotFoundError) as e:
        base_model("reward")
    assert one_line(str(e.value)) == ("models/assets/base_models.json: reward: models/assets/base_reward: "
                                      "no such model folder")
