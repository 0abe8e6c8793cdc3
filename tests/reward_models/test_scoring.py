"""The scoring command line: the HelpSteer3 card example, several principles as columns, the summary and
progress with --output, another kind, bad input and bad models named in one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlbff_lib.models.lm import ModelSizeConfig
from rlbff_lib.core.params import REPO_ROOT
from rlbff_lib.reward_models.scorers import load_scorer
from rlbff_lib.reward_models.scoring import main, read_inputs
from rlbff_lib.models.tokenizer import TokenizerConfig, train_tokenizer
from rlbff_lib.synthetic.world import WorldConfig, corpus_texts, generate_world
from fakes.tiny_models import spread_model
from rlbff_lib.evaluation.benchmarks import benchmarks_dir

CARD_EXAMPLE = (benchmarks_dir() or Path("/nonexistent")) / "helpsteer3-card-examples" / "feedback_example.json"
TINY = ModelSizeConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=16, intermediate_size=64, max_position_embeddings=4096)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random causal LM with large weights (scores spread over both signs) saved with its tokenizer."""
    world = generate_world(WorldConfig(n_prompts=60, seed=1))
    tok = train_tokenizer(list(corpus_texts(world)), TokenizerConfig(vocab_size=600))
    path = tmp_path_factory.mktemp("scorer")
    spread_model(tok, TINY, seed=2).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Table body: id -> cells (after the principle legend and the header line)."""
    lines = stdout.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("id "))
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1:]}


@pytest.mark.slow
@pytest.mark.skipif(not CARD_EXAMPLE.exists(), reason="HelpSteer3 card example not available")
def test_cli_on_the_helpsteer3_card_example(model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-m", "rlbff_lib.reward_models.scoring", "--model", str(model_dir), "--principle",
            "correctness", "--input", str(CARD_EXAMPLE), "--max-length", "2048"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert list(rows) == ["feedback_example:response1", "feedback_example:response2"]
    assert "[1] correctness" in proc.stdout
    assert "scalar scoring" in proc.stderr  # progress, never in the table
    record = json.loads(CARD_EXAMPLE.read_text())
    expected = load_scorer("scalar", model_dir, max_length=2048)(
        [record["context"]] * 2, [record["response1"], record["response2"]], "correctness")
    for cells, s, a in zip(rows.values(), expected.scores, expected.answers):
        assert cells == [f"{s:+.3f}", a]
    # with --output: the JSON lines in the file, a summary (not the table) on stdout
    proc = subprocess.run(args + ["--output", str(out)], capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "id " not in proc.stdout and f"scored 2 responses under 1 principle(s); written to {out}" in proc.stdout
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["response_field"] for w in written] == ["response1", "response2"]
    assert [w["scores"]["correctness"] for w in written] == pytest.approx(expected.scores, abs=1e-4)
    assert [w["answers"]["correctness"] for w in written] == expected.answers
    yes = expected.answers.count("Yes")
    assert f"'correctness': Yes {yes}/2, mean score {sum(expected.scores) / 2:+.3f}" in proc.stdout


def test_two_principles_give_two_columns(model_dir, tmp_path, capsys):
    records = [
        {"id": "a", "context": [{"role": "user", "content": "What is 12 + 30?"}], "response": "The answer is 42."},
        {"id": "b", "prompt": "Write a Python function to add two numbers.",
         "response": "```python\ndef add(a, b):\n    return a + b  # sum\n```"},
        {"id": "c", "context": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "Explain photosynthesis briefly."}],
         "response": "- Plants turn light into sugar.\n- They release oxygen.\nAnything else?"},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    principles = ["is concise", "contains inline comments"]
    common = ["--model", str(model_dir), "--principle", principles[0], "--principle", principles[1],
              "--input", str(inp), "--batch-size", "2", "--threads", "1"]
    assert main(common) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["a", "b", "c"] and all(len(cells) == 4 for cells in rows.values())  # 2 x (score, answer)
    assert main(common + ["--output", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    scorer = load_scorer("scalar", model_dir)
    contexts = [r.get("context") or [{"role": "user", "content": r["prompt"]}] for r in records]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    columns = []
    for j, p in enumerate(principles):
        expected = scorer(contexts, [r["response"] for r in records], p)
        columns.append(expected.scores)
        assert [w["scores"][p] for w in written] == pytest.approx(expected.scores, abs=1e-4)
        assert [cells[2 * j] for cells in rows.values()] == [f"{s:+.3f}" for s in expected.scores]
        assert [cells[2 * j + 1] for cells in rows.values()] == expected.answers
    assert columns[0] != pytest.approx(columns[1])  # the principle changes the score


def test_response_field_and_input_errors(model_dir, tmp_path, capsys):
    rec = {"context": [{"role": "user", "content": "q"}], "response1": "r1", "response2": "r2", "response10": "r10"}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(rec))
    assert [r["id"] for r in read_inputs(path)] == ["one:response1", "one:response2", "one:response10"]
    assert [r["response"] for r in read_inputs(path, "response2")] == ["r2"]
    path.write_text(json.dumps([rec, {**rec, "id": "x"}]))
    assert [r["id"] for r in read_inputs(path, "response1")] == ["one:1:response1", "x:response1"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "response": "ok"}) + "\n" + json.dumps({"response": "no context"}) + "\n")
    assert main(["--model", str(model_dir), "--principle", "p", "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl, line 2" in err and "context" in err
    bad.write_text(json.dumps({"prompt": "q", "answer": "x"}) + "\n")
    assert main(["--model", str(model_dir), "--principle", "p", "--input", str(bad)]) == 2
    assert "--response-field" in capsys.readouterr().err


def test_other_kinds_and_bad_models_are_named_in_one_line(model_dir, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "prompt": "What is 12 + 30?", "response": "42."}) + "\n")
    # the same folder read as a Bradley-Terry model: one reward per response, the principle ignored
    assert main(["--model", str(model_dir), "--kind", "bt", "--principle", "p", "--input", str(inp)]) == 0
    assert "a " in capsys.readouterr().out
    for args, message in (
            (["--model", str(tmp_path / "nowhere")], "nowhere: no such model folder"),
            (["--model", str(tmp_path)], "not a model folder (no config.json)"),
            (["--model", str(model_dir), "--max-length", "5000"], "--max-length: 5000 tokens exceed the model's 4096 positions")):
        assert main(args + ["--principle", "p", "--input", str(inp)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
