"""Consensus across annotators: every other participant must have a close principle; edge cases."""
import numpy as np
import pytest

from fakes.embedder import FakeEmbedder, near, unit
from rlbff_lib.principles import consensus as C
from rlbff_lib.principles.filters import apply_filters, candidates_from_rows


def _row(record_id, response, annotator, text, principles, status="ok"):
    return {"item_id": f"{record_id}:{response}:{annotator}", "record_id": record_id, "response": response,
            "annotator": annotator, "text": text, "status": status, "reason": "" if status == "ok" else "boom",
            "principles": principles}


def _p(principle, fulfillment="Yes"):
    return {"principle": principle, "fulfillment": fulfillment, "evidence": f"It is {principle}."}


def _text(*principles):
    return " ".join(f"It is {p}." for p in principles)


VECS = {"conciseness": unit(0), "brevity": near(0, 1, 0.85), "clarity": unit(2), "uses bullet points": unit(3)}


def _consensus(rows, model, threshold=0.8, min_annotators=2):
    cands, _ = candidates_from_rows(rows)
    apply_filters(cands, {r["item_id"]: r["text"] for r in rows})
    survivors = [c for c in cands if c["fate"] is None]
    emb = C.Embeddings([c["principle"] for c in survivors], model)
    stats = C.consensus_scores(cands, C.participants_by_response(rows), emb, min_annotators)
    C.apply_consensus(cands, threshold)
    return {(c["annotator"], c["principle"]): c for c in cands}, stats


def test_consensus_every_other_annotator_must_agree():
    model = FakeEmbedder(VECS)
    rows = [_row("r", 1, 0, _text("conciseness", "clarity"), [_p("conciseness"), _p("clarity", "No")]),
            _row("r", 1, 1, _text("brevity"), [_p("brevity", "Yes")]),
            _row("r", 1, 2, _text("conciseness", "clarity"), [_p("conciseness", "No"), _p("clarity")])]
    got, _ = _consensus(rows, model, threshold=0.8)
    assert got[(0, "conciseness")]["fate"] == "kept"          # 0.85 to annotator 1, 1.0 to annotator 2
    assert got[(1, "brevity")]["fate"] == "kept"
    assert got[(0, "clarity")]["fate"] == "consensus"         # annotator 1 has nothing close to clarity
    assert got[(0, "conciseness")]["consensus_score"] == pytest.approx(0.85, abs=1e-4)
    got, _ = _consensus(rows, model, threshold=0.9)            # the paraphrase no longer counts
    assert got[(0, "conciseness")]["fate"] == "consensus"
    assert model.calls and all(len(c) == len(set(c)) for c in model.calls)  # each string embedded once


def test_consensus_single_annotator_and_min_annotators():
    rows = [_row("r", 1, 0, _text("conciseness"), [_p("conciseness")])]
    got, stats = _consensus(rows, FakeEmbedder(VECS), min_annotators=2)
    assert got[(0, "conciseness")]["fate"] == "consensus"
    assert got[(0, "conciseness")]["reason"] == "too_few_annotators"
    assert stats["responses_too_few_annotators"] == 1
    got, _ = _consensus(rows, FakeEmbedder(VECS), min_annotators=1)  # literal reading: vacuously true
    assert got[(0, "conciseness")]["fate"] == "kept"


def test_consensus_skipped_or_failed_annotators_neither_support_nor_veto():
    rows = [_row("r", 1, 0, _text("conciseness"), [_p("conciseness")]),
            _row("r", 1, 1, _text("conciseness"), [_p("conciseness", "No")]),
            _row("r", 1, 2, "", [], status="skipped"),
            _row("r", 2, 0, _text("clarity"), [_p("clarity")]),
            _row("r", 2, 1, "timeout", [], status="failed")]
    got, _ = _consensus(rows, FakeEmbedder(VECS))
    assert got[(0, "conciseness")]["fate"] == "kept" and got[(1, "conciseness")]["fate"] == "kept"
    # response 2: the only other annotator failed -> one participant -> too few annotators
    assert got[(0, "clarity")]["reason"] == "too_few_annotators"


def test_consensus_participant_with_no_principle_left_vetoes():
    rows = [_row("r", 1, 0, _text("conciseness"), [_p("conciseness")]),
            _row("r", 1, 1, _text("conciseness"), [_p("conciseness")]),
            _row("r", 1, 2, "The response is helpful.", [{"principle": "helpful", "fulfillment": "Yes",
                                                         "evidence": "The response is helpful."}])]
    got, stats = _consensus(rows, FakeEmbedder(VECS))
    assert got[(0, "conciseness")]["consensus_score"] == -1.0
    assert got[(0, "conciseness")]["fate"] == "consensus"
    assert stats["responses_with_silent_participant"] == 1


def test_consensus_compares_responses_separately():
    rows = [_row("r", 1, 0, _text("conciseness"), [_p("conciseness")]),
            _row("r", 2, 1, _text("conciseness"), [_p("conciseness")])]  # same principle, other response
    got, _ = _consensus(rows, FakeEmbedder(VECS), min_annotators=1)
    assert got[(0, "conciseness")]["consensus_score"] == 1.0  # each response alone: no other participant


def test_embeddings_add_embeds_only_new_strings():
    model = FakeEmbedder(VECS)
    emb = C.Embeddings(["conciseness", "clarity"], model)
    emb.add(["clarity", "brevity", "brevity"])
    assert model.calls == [["conciseness", "clarity"], ["brevity"]]
    assert emb.similarity(["conciseness"], ["brevity", "clarity"]) == pytest.approx(np.array([[0.85, 0.0]]), abs=1e-6)


def test_config_validation_names_the_field():
    for kwargs, name in (({"threshold": 1.0}, "threshold"), ({"sweep": [0.5, 2.0]}, "sweep"),
                         ({"min_annotators": 0}, "min_annotators")):
        with pytest.raises(ValueError, match=f"^{name}: "):
            C.ConsensusConfig(**kwargs)
