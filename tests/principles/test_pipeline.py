"""The principles stage: filters, consensus (and its edge cases), merging, prompt splits,
PrincipleBench, preference pairs, the released principle config, and the synthetic evaluation."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlbff_lib.principles import pipeline as P
from rlbff_lib.data.sources import prompt_key
from rlbff_lib.core.io import DataError, write_jsonl
from rlbff_lib.core.params import REPO_ROOT

ROOT = REPO_ROOT


# ---------------------------------------------------------------- helpers

class FakeEmbedder:
    """A sentence embedder stand-in: chosen strings get chosen vectors, others a random unit vector."""

    DIM = 64

    def __init__(self, vectors: dict[str, np.ndarray] | None = None):
        self.vectors = vectors or {}
        self.calls = []

    def get_sentence_embedding_dimension(self):
        return self.DIM

    def encode(self, strings, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        self.calls.append(list(strings))
        out = []
        for s in strings:
            v = self.vectors.get(s)
            if v is None:
                seed = int(hashlib.sha256(s.encode()).hexdigest()[:8], 16)
                v = np.random.default_rng(seed).normal(size=self.DIM)
            out.append(np.asarray(v, dtype=np.float64) / np.linalg.norm(v))
        return np.array(out, dtype=np.float32)


def _unit(i, dim=FakeEmbedder.DIM):
    v = np.zeros(dim)
    v[i] = 1.0
    return v


def _near(i, j, cos):
    """A vector with cosine ``cos`` to unit vector i."""
    return cos * _unit(i) + np.sqrt(1 - cos ** 2) * _unit(j)


def _row(record_id, response, annotator, text, principles, status="ok"):
    return {"item_id": f"{record_id}:{response}:{annotator}", "record_id": record_id, "response": response,
            "annotator": annotator, "text": text, "status": status, "reason": "" if status == "ok" else "boom",
            "principles": principles}


def _p(principle, fulfillment="Yes", evidence=None):
    return {"principle": principle, "fulfillment": fulfillment, "evidence": evidence or f"It is {principle}."}


def _text(*principles):
    return " ".join(f"It is {p}." for p in principles)


def _record(i, context=None, op=-2, scores=(-2, -1, -3)):
    return {"id": f"rec{i}", "domain": ("general", "stem", "code", "multilingual")[i % 4], "language": "english",
            "context": context or [{"role": "user", "content": f"Question {i}?"}],
            "response1": f"Answer one to {i}.", "response2": f"Answer two to {i}.",
            "feedback1": [], "feedback2": [], "overall_preference": op,
            "individual_preference": [{"score": s, "reasoning": "r"} for s in scores]}


def _consensus(rows, model, threshold=0.8, min_annotators=2):
    cands, _ = P.candidates_from_rows(rows)
    P.apply_filters(cands, {r["item_id"]: r["text"] for r in rows})
    survivors = [c for c in cands if c["fate"] is None]
    emb = P.Embeddings([c["principle"] for c in survivors], model)
    stats = P.consensus_scores(cands, P.participants_by_response(rows), emb, min_annotators)
    P.apply_consensus(cands, threshold)
    return {(c["annotator"], c["principle"]): c for c in cands}, stats


# ---------------------------------------------------------------- filters 0-3

@pytest.mark.parametrize("principle", [
    "helpful", "Helpfulness", "overall helpfulness", "is helpful", "The response is helpful.", "unhelpful",
    "not helpful", "mostly helpful", "usefulness", "the response is mostly helpful", "helpful response",
    "  HELPFUL  ", "response helpfulness"])
def test_helpfulness_and_close_variants_are_dropped(principle):
    assert P.is_helpfulness(principle)


@pytest.mark.parametrize("principle", [
    "helpful code comments", "provides helpful examples", "conciseness", "helps the user debug",
    "usefulness of the examples", "contains inline comments"])
def test_specific_principles_are_not_helpfulness(principle):
    assert not P.is_helpfulness(principle)


def test_evidence_match_partial_ratio_and_unicode():
    fb = "The response is mostly helpful. The code lacks inline comments, which makes it hard to follow."
    assert P.evidence_score("The code lacks inline comments", fb) == 100
    # smart quotes, zero-width characters, full-width letters and odd spacing still match
    assert P.evidence_score("The\u200b code  lacks ｉｎｌｉｎｅ comments", fb) > 90
    assert P.evidence_score("The example about photosynthesis is wrong", fb) <= 60
    assert P.evidence_score("", fb) == 0


def test_sanitize_counts_and_drops_bad_principles():
    principles = [
        _p("conciseness", "yes"),                     # fulfillment case is tolerated
        _p("Conciseness ", "No"),                     # duplicate in the same feedback (case/space)
        _p("", "Yes"),                                # empty
        _p("   ", "No"),                              # blank
        _p("x" * 500, "Yes"),                         # enormous
        {"principle": "clarity", "fulfillment": "Maybe", "evidence": "e"},  # bad fulfillment
        {"principle": 3, "fulfillment": "Yes", "evidence": "e"},             # not a string
        "not even a dict",
        _p("uses\u200b bullet\u00a0points", "Yes"),  # unicode oddities: cleaned, kept
    ]
    rows = [_row("r", 1, 0, "text", principles), _row("r", 1, 1, "", [], status="skipped"),
            _row("r", 1, 2, "t", [], status="failed")]
    cands, counts = P.candidates_from_rows(rows, max_principle_chars=100)
    reasons = [c["reason"] for c in cands]
    assert reasons == ["", "duplicate_in_feedback", "empty_principle", "empty_principle", "overlong_principle",
                       "malformed", "malformed", "malformed", ""]
    assert cands[0]["fulfillment"] == "Yes"
    assert cands[-1]["principle"] == "uses bullet points"
    assert counts["unicode_normalized"] >= 1 and counts["malformed"] == 3


def test_filters_in_order_evidence_helpfulness_partially():
    text = "The response is mostly helpful. It is concise. The list is only partly used."
    rows = [_row("r", 1, 0, text, [
        _p("helpful", "Yes", "The response is mostly helpful."),
        _p("conciseness", "Yes", "It is concise."),
        _p("uses bullet points", "Partially", "The list is only partly used."),
        _p("correctness", "No", "The arithmetic in step three is wrong and misleading."),  # not in the text
    ])]
    cands, _ = P.candidates_from_rows(rows)
    drops = P.apply_filters(cands, {"r:1:0": text}, evidence_threshold=60)
    assert [c["fate"] for c in cands] == ["helpfulness", None, "partially", "evidence"]
    assert drops == {"evidence": 1, "helpfulness": 1, "partially": 1}
    funnel = P.funnel(cands)
    assert [funnel[k]["count"] for k in sorted(funnel)] == [4, 4, 3, 2, 1, 1]


# ---------------------------------------------------------------- consensus

VECS = {"conciseness": _unit(0), "brevity": _near(0, 1, 0.85), "clarity": _unit(2), "uses bullet points": _unit(3)}


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
            _row("r", 1, 2, "The response is helpful.", [_p("helpful", "Yes", "The response is helpful.")])]
    got, stats = _consensus(rows, FakeEmbedder(VECS))
    assert got[(0, "conciseness")]["consensus_score"] == -1.0
    assert got[(0, "conciseness")]["fate"] == "consensus"
    assert stats["responses_with_silent_participant"] == 1


def test_consensus_compares_responses_separately():
    rows = [_row("r", 1, 0, _text("conciseness"), [_p("conciseness")]),
            _row("r", 2, 1, _text("conciseness"), [_p("conciseness")])]  # same principle, other response
    got, _ = _consensus(rows, FakeEmbedder(VECS), min_annotators=1)
    assert got[(0, "conciseness")]["consensus_score"] == 1.0  # each response alone: no other participant


def test_merge_majority_label_and_ties():
    recs = {"r": _record(0) | {"id": "r"}}
    cands = [{"record_id": "r", "response": 1, "key": "conciseness", "principle": p, "fulfillment": f}
             for p, f in (("conciseness", "Yes"), ("Conciseness", "No"), ("conciseness", "No"))]
    cands += [{"record_id": "r", "response": 2, "key": "clarity", "principle": "clarity", "fulfillment": f}
              for f in ("Yes", "No")]
    items, ties = P.merge_candidates(cands, recs)
    assert ties == 1 and len(items) == 1
    it = items[0]
    assert (it["label"], it["principle"], it["votes"]) == ("No", "conciseness", {"Yes": 1, "No": 2})
    assert it["prompt_id"] == prompt_key(recs["r"]["context"]) and it["response"] == recs["r"]["response1"]
    assert set(it) >= {"item_id", "prompt_id", "domain", "context", "response", "principle", "label", "property"}


# ---------------------------------------------------------------- splits, bench, pairs

def _items(n_prompts=200, per_prompt=4):
    items = []
    for i in range(n_prompts):
        ctx = [{"role": "user", "content": f"Prompt {i}?"}]
        for k in range(per_prompt):
            items.append({"item_id": f"it{i}-{k}", "prompt_id": prompt_key(ctx), "domain": ("code", "stem")[i % 2],
                          "context": ctx, "response": f"r{k % 2}", "principle": f"p{k // 2}",
                          "label": "Yes" if (i + k) % 3 else "No", "property": None, "record_id": f"rec{i}",
                          "response_index": 1 + k % 2})
    return items


def test_splits_are_disjoint_by_prompt_and_bench_is_held_out():
    cfg = P.SplitConfig(seed=1, validation_share=0.2, bench_share=0.2)
    items = _items()
    splits = P.split_rows(items, cfg)
    prompts = {s: {i["prompt_id"] for i in rows} for s, rows in splits.items()}
    assert all(prompts[a].isdisjoint(prompts[b]) for a in prompts for b in prompts if a < b)
    assert sum(len(v) for v in splits.values()) == len(items)
    assert all(len(prompts[s]) > 10 for s in prompts)
    bench, stats = P.build_principlebench(splits["bench"], P.BenchConfig(yes_share=0.5))
    bench_prompts = {i["prompt_id"] for i in bench}
    assert bench_prompts <= prompts["bench"]
    assert bench_prompts.isdisjoint(prompts["train"] | prompts["validation"])
    for domain, st in stats.items():
        assert st["balanced"] and st["yes"] == st["no"] > 0, domain
    # the split of a prompt depends only on the prompt: the same with half the data
    again = P.split_rows(items[: len(items) // 2], cfg)
    assert all(P.split_of(i["prompt_id"], cfg) == s for s, rows in again.items() for i in rows)
    assert {i["prompt_id"] for i in again["bench"]} <= prompts["bench"]


def test_principlebench_balance_edge_cases():
    def item(i, domain, label):
        return {"item_id": f"{domain}{i}", "domain": domain, "label": label}

    items = ([item(i, "code", "Yes") for i in range(10)] + [item(i + 10, "code", "No") for i in range(4)]
             + [item(i, "stem", "Yes") for i in range(5)])
    bench, stats = P.build_principlebench(items, P.BenchConfig(yes_share=0.5))
    assert stats["code"]["yes"] == stats["code"]["no"] == 4
    assert stats["stem"] == {"items": 5, "yes": 5, "no": 0, "yes_share": 1.0, "balanced": False,
                             "available": {"yes": 5, "no": 0}}
    bench, stats = P.build_principlebench(items, P.BenchConfig(yes_share=0.6))
    assert (stats["code"]["yes"], stats["code"]["no"]) == (6, 4)
    bench, stats = P.build_principlebench(items, P.BenchConfig(yes_share=0.5, max_items_per_domain=4))
    assert (stats["code"]["yes"], stats["code"]["no"]) == (2, 2)
    assert bench == P.build_principlebench(items, P.BenchConfig(yes_share=0.5, max_items_per_domain=4))[0]


def test_preference_pairs_drop_ties_and_unlabelled():
    recs = [_record(0, op=-2, scores=(-2, -1, -3)), _record(1, op=0, scores=(0, 1, -1)),
            _record(2, op=3, scores=(3, 3, 3)), _record(3, op=None, scores=())]
    pairs, counts = P.preference_pairs(recs)
    assert counts == {"pairs": 2, "ties_dropped": 1, "unlabelled_dropped": 1}
    a, b = pairs
    assert (a["chosen"], a["rejected"]) == (recs[0]["response1"], recs[0]["response2"])
    assert (b["chosen"], b["rejected"]) == (recs[2]["response2"], recs[2]["response1"])
    assert a["annotator_spread"] == pytest.approx(np.std([-2, -1, -3]))
    assert b["annotator_spread"] == 0.0
    assert set(a) >= {"pair_id", "prompt_id", "domain", "context", "chosen", "rejected", "overall_preference",
                      "annotator_spread"}


def test_principlebench_pairs_need_opposite_labels():
    base = {"prompt_id": "p", "domain": "code", "context": [], "property": None, "record_id": "r"}
    items = [{**base, "item_id": "a", "principle": "conciseness", "label": "Yes", "response": "R1", "response_index": 1},
             {**base, "item_id": "b", "principle": "Conciseness", "label": "No", "response": "R2", "response_index": 2},
             {**base, "item_id": "c", "principle": "clarity", "label": "Yes", "response": "R1", "response_index": 1},
             {**base, "item_id": "d", "principle": "clarity", "label": "Yes", "response": "R2", "response_index": 2}]
    pairs = P.principlebench_pairs(items)
    assert len(pairs) == 1 and (pairs[0]["chosen"], pairs[0]["rejected"]) == ("R1", "R2")


# ---------------------------------------------------------------- failures and bad input

def test_extraction_failure_share_fails_loudly_naming_items():
    rows = [_row(f"r{i}", 1, 0, "t", [], status="failed") for i in range(3)]
    rows += [_row(f"s{i}", 1, 0, "t", [_p("conciseness")]) for i in range(97)]
    rows += [_row("e", 1, 0, "", [], status="skipped")]  # skipped texts are not failures
    out = P.check_extraction(rows, 0.05)
    assert out["failed"] == 3 and out["failure_share"] == 0.03 and out["skipped"] == 1
    with pytest.raises(P.ExtractionFailed, match=r"3 of 100 .*r0:1:0: boom"):
        P.check_extraction(rows, 0.02)


def test_bad_feedback_input_is_named_before_any_work(tmp_path):
    src = tmp_path / "source"
    src.mkdir()
    rec = _record(0)
    del rec["response2"]
    write_jsonl(src / "feedback.jsonl", [_record(1), rec])
    with pytest.raises(DataError, match=r"feedback.jsonl, line 2, field 'response2'"):
        P.load_inputs(src)


def test_odd_feedback_texts_are_counted_never_crash(tmp_path):
    texts = ["", "The response is mostly helpful. It is concise and the example helps.",
             "La respuesta es útil. Es muy clara y también concisa.", "回答很有帮助。代码有注释。",
             "The response\u200b is ｐｅｒｆｅｃｔｌｙ helpful. It is concise.", "x" * 30_000]
    rec = _record(0) | {"feedback1": texts[:3], "feedback2": texts[3:]}
    src = tmp_path / "source"
    src.mkdir()
    write_jsonl(src / "feedback.jsonl", [rec, _record(1) | {"feedback1": [texts[1]] * 3}])
    cfg = P.PrinciplesConfig(extraction=P.ExtractionConfig(max_feedback_chars=20_000))
    res = P.run_principles(cfg, P.load_inputs(src), FakeEmbedder(), tmp_path / "cache.jsonl", log=lambda m: None)
    m = res.metrics
    assert m["extraction"]["skipped"] == 2 and m["extraction"]["failed"] == 0
    assert set(m["extraction"]["skip_reasons"]) == {"empty feedback text",
                                                    "feedback text longer than max_feedback_chars=20000 (30000)"}
    assert m["feedback"]["non_english"] == 2
    assert m["funnel"]["0_extracted"]["count"] == len(res.cands) > 0
    kept = {(c["record_id"], c["response"], c["principle"]) for c in res.cands if c["fate"] == "kept"}
    assert ("rec1", 1, "conciseness") in kept  # three identical texts agree
    written = P.write_outputs(res, tmp_path / "out")
    assert written["train.jsonl"] + written["validation.jsonl"] + m["datasets"]["bench_pool"] == len(res.items)
    # a rerun answers from the cache
    res2 = P.run_principles(cfg, P.load_inputs(src), FakeEmbedder(), tmp_path / "cache.jsonl", log=lambda m: None)
    assert res2.metrics["extraction"]["cache_hits"] == m["extraction"]["ok"]
    assert [i["item_id"] for i in res2.items] == [i["item_id"] for i in res.items]


# ---------------------------------------------------------------- the released principle config

def _benchmarks_dir() -> Path:
    return Path(os.environ.get("RLBFF_BENCHMARKS_DIR") or ROOT.parent / "shared" / "benchmarks")


def test_released_principle_config_is_used_directly(tmp_path):
    example = _benchmarks_dir() / "helpsteer3-card-examples" / "principle_example_abbrev.json"
    if not example.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{example} is missing")
        pytest.skip(f"{example} not available")
    rec = json.loads(example.read_text())
    src = tmp_path / "source"
    src.mkdir()
    shutil.copy(example, tmp_path / "principle_example.json")
    twin = {k: v for k, v in rec.items() if not k.startswith("_")}
    other = twin | {"principle": "uses headings", "fulfilment": "Yes"}
    write_jsonl(src / "principle.jsonl", [twin, twin, other])  # a duplicate is merged
    write_jsonl(src / "feedback.jsonl", [])
    inputs = P.load_inputs(src)
    assert inputs.source == "released"
    res = P.run_principles(P.PrinciplesConfig(), inputs, None, None, log=lambda m: None)
    assert len(res.items) == 2 and res.metrics["released"]["records"] == 3
    by = {i["principle"]: i for i in res.items}
    assert by["adherence to word count requirement"]["label"] == "No"
    assert by["uses headings"]["label"] == "Yes"
    assert by["uses headings"]["prompt_id"] == prompt_key(twin["context"])
    assert sum(len(v) for v in res.splits.values()) == 2 and not any(res.pairs.values())
    assert "funnel" not in res.metrics and res.metrics["labels"]["items"]["yes_share"] == 0.5


# ---------------------------------------------------------------- synthetic world

@pytest.fixture(scope="module")
def minilm():
    from rlbff_lib.models.embed import EmbedderConfig, load_embedder

    return load_embedder(EmbedderConfig())


def test_property_mapping_of_the_rules_vocabulary(minilm):
    m = P.map_principles(["contains inline comments", "conciseness", "uses code blocks", "provides examples",
                          "working code", "includes an explanation", "clarity", "correctness"], minilm)
    got = {p: v["property"] for p, v in m.items()}
    assert got == {"contains inline comments": "inline_comments", "conciseness": "concise",
                   "uses code blocks": "fenced_code", "provides examples": "worked_example", "working code": None,
                   "includes an explanation": None, "clarity": None, "correctness": "arithmetic_correct"}
    assert m["contains inline comments"]["how"] == "exact"


def test_consensus_raises_synthetic_accuracy_on_a_small_world(tmp_path, minilm):
    from rlbff_lib.synthetic.world import PROPERTIES, WorldConfig, generate_world

    world = generate_world(WorldConfig(n_prompts=150, seed=11))
    src = tmp_path / "source"
    src.mkdir()
    write_jsonl(src / "feedback.jsonl", world.records)
    write_jsonl(src / "truth.jsonl", world.truth)
    cfg = P.PrinciplesConfig(consensus=P.ConsensusConfig(sweep=[0.0, 0.8]))
    res = P.run_principles(cfg, P.load_inputs(src), minilm, None, log=lambda m: None)
    s = res.metrics["synthetic"]
    assert s["accuracy_after_consensus"] > s["accuracy_before_consensus"] + 0.05
    assert s["principle_accuracy_after_consensus"] > s["principle_accuracy_before_consensus"]
    assert s["items_after_consensus"] < s["items_before_consensus"]
    assert s["remark_kinds"]["offtopic"]["kept_share"] < s["remark_kinds"]["salient"]["kept_share"]
    sweep = res.metrics["consensus"]["sweep"]
    assert sweep["0"]["items"] >= sweep["0.8"]["items"] == s["items_after_consensus"]
    assert sweep["0.8"]["accuracy"] == s["accuracy_after_consensus"]
    props = {i["property"] for i in res.items}
    assert "concise" in props and props <= set(PROPERTIES) | {None}
    # truth is evaluation only: the datasets are the same without it
    res_blind = P.run_principles(cfg, P.Inputs(world.records, [], [], "feedback"), minilm, None, log=lambda m: None)
    assert [(i["item_id"], i["label"]) for i in res_blind.items] == [(i["item_id"], i["label"]) for i in res.items]
    assert "synthetic" not in res_blind.metrics
