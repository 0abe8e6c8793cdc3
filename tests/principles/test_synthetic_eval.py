"""Scoring principles against the synthetic world's truth: the mapping to properties, verdicts, the
accuracy entering and leaving each filter, and the kind of remark a principle came from."""
import pytest

from fakes.embedder import FakeEmbedder
from rlbff_lib.core.stats import wilson_interval
from rlbff_lib.principles import synthetic_eval as E
from rlbff_lib.synthetic import world as W


@pytest.fixture(scope="module")
def minilm():
    from rlbff_lib.models.embed import EmbedderConfig, load_embedder

    return load_embedder(EmbedderConfig())


def test_property_mapping_of_the_rules_vocabulary(minilm):
    m = E.map_principles(["contains inline comments", "conciseness", "uses code blocks", "provides examples",
                          "working code", "includes an explanation", "clarity", "correctness", "uses headings"], minilm)
    got = {p: v["property"] for p, v in m.items()}
    assert got == {"contains inline comments": "inline_comments", "conciseness": "concise",
                   "uses code blocks": "fenced_code", "provides examples": "worked_example", "working code": None,
                   "includes an explanation": None, "clarity": None, "correctness": "arithmetic_correct",
                   "uses headings": None}
    assert m["contains inline comments"]["how"] == "exact"


def test_every_extractor_name_maps_to_its_property_exactly():
    names = [(prop, n) for prop, ns in W.PRINCIPLE_NAMES.items() for n in ns]
    m = E.map_principles([n for _, n in names] + ["Is Concise!"], FakeEmbedder())
    assert all(m[n] == {"property": prop, "how": "exact", "similarity": 1.0} for prop, n in names)
    assert m["Is Concise!"]["property"] == "concise"


ROW = {"properties": {"concise": True, "inline_comments": False}, "comments": [
    {"annotator": 0, "property": "concise", "stated": "Yes", "kind": "salient", "text": "It is short and to the point."},
    {"annotator": 0, "property": "inline_comments", "stated": "Yes", "kind": "mistake",
     "text": "The code is well commented."},
    {"annotator": 1, "property": None, "stated": None, "kind": "offtopic", "text": "I would have liked a citation."}]}
MAP = {"conciseness": {"property": "concise"}, "code comments": {"property": "inline_comments"},
       "uses bullet points": {"property": "bulleted_list"}, "cites sources": {"property": None}}


@pytest.mark.parametrize("principle, label, verdict", [
    ("conciseness", "Yes", "correct"), ("conciseness", "No", "wrong_label"), ("conciseness", "Partially", "partially"),
    ("code comments", "No", "correct"), ("uses bullet points", "Yes", "not_applicable"),
    ("cites sources", "No", "unmapped"), ("never seen", "Yes", "unmapped")])
def test_verdicts(principle, label, verdict):
    assert E.judge(principle, label, ROW, MAP) == verdict
    assert E.judge(principle, label, None, MAP) == "no_truth"


def _cand(principle, label, fate, evidence="", annotator=0):
    return {"principle": principle, "fulfillment": label, "fate": fate, "record_id": "r", "response": 1,
            "annotator": annotator, "evidence": evidence}


def test_accuracy_entering_and_leaving_each_filter():
    tidx = {("r", 1): ROW}
    cands = [_cand("conciseness", "Yes", "kept"),            # correct
             _cand("code comments", "Yes", "consensus"),      # wrong label
             _cand("conciseness", "Partially", "partially"),  # never correct
             _cand("helpful", "Yes", "helpfulness"),          # unmapped
             _cand("uses bullet points", "No", "evidence"),   # not applicable (an invented principle)
             _cand("", "Yes", "valid")]                       # malformed
    items = [{"principle": "conciseness", "label": "Yes", "record_id": "r", "response_index": 1}]
    f = E.funnel_accuracy(cands, items, items, tidx, MAP)
    assert list(f) == ["1_valid", "2_evidence", "3_helpfulness", "4_partially", "5_consensus", "6_merge"]
    assert [(f[k]["in"], f[k]["out"], f[k]["removed"]) for k in list(f)[:5]] == [
        (6, 5, 1), (5, 4, 1), (4, 3, 1), (3, 2, 1), (2, 1, 1)]
    assert [f[k]["accuracy_out"] for k in list(f)[:5]] == [0.2, 0.25, round(1 / 3, 4), 0.5, 1.0]
    assert f["2_evidence"]["accuracy_removed"] == 0.0 and f["5_consensus"]["accuracy_removed"] == 0.0
    assert f["6_merge"]["in"] == 1 and f["6_merge"]["accuracy_out"] == 1.0
    # Wilson's closed forms at the edges, z^2 / (n + z^2): 0 of n -> [0, z2/(n+z2)], n of n -> [n/(n+z2), 1]
    z2 = 1.959964 ** 2
    assert f["6_merge"]["accuracy_out_ci"] == pytest.approx([1 / (1 + z2), 1.0], abs=1e-4)
    assert f["2_evidence"]["accuracy_removed_ci"] == pytest.approx([0.0, z2 / (1 + z2)], abs=1e-4)
    assert f["6_merge"]["string_merge"]["ci"] == f["6_merge"]["accuracy_out_ci"]
    assert f["1_valid"]["accuracy_out_ci"] == [round(x, 4) for x in wilson_interval(1, 5)]  # 0.2 of 5 principles
    for row in f.values():
        for key in [k for k in row if k.startswith("accuracy_") and not k.endswith("_ci")]:
            ci = row[f"{key}_ci"]
            assert (ci is None) == (row[key] is None) and (ci is None or ci[0] <= row[key] <= ci[1]), key


def test_accuracy_and_precision_carry_their_interval():
    tidx = {("r", 1): ROW}
    empty = E.accuracy([], tidx, MAP)
    assert empty["accuracy"] is None and empty["ci"] is None
    items = [{"principle": "conciseness", "label": lab, "record_id": "r", "response_index": 1}
             for lab in ("Yes", "Yes", "Yes", "No")]
    a = E.accuracy(items, tidx, MAP)
    assert a["accuracy"] == 0.75 and a["ci"] == [round(x, 4) for x in wilson_interval(3, 4)]
    per = E.per_property(items, tidx, MAP)["concise"]
    assert (per["precision"], per["precision_ci"]) == (0.75, a["ci"])
    assert per["recall"] == 1.0 and per["recall_ci"] == [round(x, 4) for x in wilson_interval(1, 1)]


def test_comment_kind_follows_the_evidence_also_when_misquoted():
    assert E.comment_kind(_cand("conciseness", "Yes", "kept", "It is short and to the point."), ROW) == "salient"
    assert E.comment_kind(_cand("code comments", "Yes", "kept", "the code is well commented"), ROW) == "mistake"
    assert E.comment_kind(_cand("x", "Yes", "kept", "An invented sentence about bold text."), ROW) == "other"
    assert E.comment_kind(_cand("x", "No", "kept", "I would have liked a citation.", annotator=0), ROW) == "other"
    assert E.comment_kind(_cand("x", "No", "kept", "I would have liked a citation.", annotator=1), ROW) == "offtopic"
