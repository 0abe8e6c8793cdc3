"""Data sources: HelpSteer3 files (real card examples + written files), validation errors, the world."""
import gzip
import json
import os
from pathlib import Path

import pytest

from rlbff_lib.data.sources import (HelpSteer3Config, join_preferences, load_source, read_feedback_files,
                                   read_principle_files)
from rlbff_lib.stages.data import DataConfig, summarize
from rlbff_lib.core.io import DataError
from rlbff_lib.synthetic.world import WorldConfig
from rlbff_lib.core.params import REPO_ROOT
from rlbff_lib.evaluation.benchmarks import benchmarks_dir

ROOT = REPO_ROOT


def _card_dir():
    base = str(benchmarks_dir() or ROOT / "nonexistent")
    path = Path(base) / "helpsteer3-card-examples"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"benchmark folder missing in CI: {path}")
        pytest.skip("shared benchmarks not available")
    return path


def _record(**over):
    rec = {"domain": "general", "language": "english",
           "context": [{"role": "user", "content": "Give me a tip."}],
           "response1": "Drink water.", "response2": "Sleep well.",
           "feedback1": ["The response is mostly helpful. It is concise."],
           "feedback2": ["The response is slightly helpful. It is vague."],
           "overall_preference": -1,
           "individual_preference": [{"score": -1, "reasoning": "@Response 1 is slightly better."}]}
    rec.update(over)
    return rec


def test_real_card_feedback_example_loads(tmp_path):
    card = _card_dir()
    recs = read_feedback_files(card / "feedback_example.json")
    assert len(recs) == 1
    r = recs[0]
    assert r["domain"] == "code" and len(r["feedback1"]) == 3
    assert r["feedback1"][0].startswith("The response is")
    assert r["id"].startswith("hs3-")


def test_real_card_principle_example_loads(tmp_path):
    card = _card_dir()
    target = tmp_path / "principle_card.json"
    target.write_text((card / "principle_example_abbrev.json").read_text())
    recs = read_principle_files(target)
    assert recs[0]["fulfilment"] == "No" and recs[0]["principle"]


def test_preference_join_with_real_labels():
    card = _card_dir()
    fb = read_feedback_files(card / "feedback_example.json")
    labels = json.loads((card / "preference_example_labels.json").read_text())
    pref = dict(labels, context=fb[0]["context"], response1=fb[0]["response1"], response2=fb[0]["response2"])
    assert join_preferences(fb, [pref]) == 1
    assert fb[0]["overall_preference"] == -2


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "parquet"])
def test_local_files_in_each_format(tmp_path, suffix):
    rows = [_record(), _record(response1="Walk daily.")]
    path = tmp_path / f"feedback_train.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == "jsonl.gz":
        with gzip.open(path, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    cfg = DataConfig(source="helpsteer3", helpsteer3=HelpSteer3Config(path=str(tmp_path)))
    src = load_source(cfg)
    assert len(src["feedback"]) == 2 and src["truth"] == []
    assert len({r["id"] for r in src["feedback"]}) == 2


@pytest.mark.parametrize("over, field", [
    ({"domain": "law"}, "domain"),
    ({"context": []}, "context"),
    ({"context": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "context"),
    ({"context": [{"role": "bot", "content": "a"}]}, "context[0]"),
    ({"response2": None}, "response2"),
    ({"feedback1": ["a", "b", "c", "d"]}, "feedback1"),
    ({"overall_preference": 5}, "overall_preference"),
    ({"individual_preference": [{"score": "high"}]}, "individual_preference[0].score"),
])
def test_bad_record_names_file_line_and_field(tmp_path, over, field):
    path = tmp_path / "feedback.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(**over)) + "\n")
    with pytest.raises(DataError) as e:
        read_feedback_files(path)
    assert e.value.line == 2 and e.value.field == field
    assert str(path) in str(e.value) and "line 2" in str(e.value)


def test_missing_field_and_invalid_json(tmp_path):
    path = tmp_path / "feedback.jsonl"
    rec = _record()
    del rec["response1"]
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="field 'response1'"):
        read_feedback_files(path)
    path.write_text(json.dumps(_record()) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2.*invalid JSON"):
        read_feedback_files(path)


def test_bad_principle_label(tmp_path):
    path = tmp_path / "principle.jsonl"
    path.write_text(json.dumps({"domain": "general", "context": [{"role": "user", "content": "x"}],
                                "response": "y", "principle": "is concise", "fulfilment": "Partially"}) + "\n")
    with pytest.raises(DataError, match="fulfilment"):
        read_principle_files(path)


def test_synthetic_source_passes_its_own_validation_and_summarizes(tmp_path):
    src = load_source(DataConfig(world=WorldConfig(n_prompts=40, seed=3)))
    assert len(src["feedback"]) == 40 and len(src["truth"]) == 80
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in src["feedback"]))
    assert len(read_feedback_files(path)) == 40  # the world's records meet the HelpSteer3 schema
    s = summarize(src)
    assert s["records"] == 40 and sum(s["records_per_domain"].values()) == 40
    assert len(s["properties"]) >= 10
    assert 0 < s["property_label_balance"]["yes_share"] < 1
    assert abs(sum(s["preference"][k] for k in ("response1_better", "tie", "response2_better")) - 1) < 1e-9


def test_missing_local_path_is_a_parameter_error():
    with pytest.raises(ValueError, match="helpsteer3.path"):
        DataConfig(source="helpsteer3", helpsteer3=HelpSteer3Config(path="/nonexistent/hs3"))
