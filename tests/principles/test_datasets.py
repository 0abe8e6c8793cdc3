"""From kept principles to datasets: the merge by meaning with majority labels, HelpSteer3's official
split kept (PrincipleBench held out of the train prompts), PrincipleBench and its pairs, preference pairs."""
import numpy as np
import pytest

from fakes.embedder import FakeEmbedder, near, unit
from rlbff_lib.data.sources import prompt_key
from rlbff_lib.principles import datasets as D
from rlbff_lib.principles.consensus import Embeddings
from rlbff_lib.principles.filters import principle_key


def _record(i, context=None, op=-2, scores=(-2, -1, -3), split=None):
    rec = {"id": f"rec{i}", "domain": ("general", "stem", "code", "multilingual")[i % 4], "language": "english",
           "context": context or [{"role": "user", "content": f"Question {i}?"}],
           "response1": f"Answer one to {i}.", "response2": f"Answer two to {i}.",
           "feedback1": [], "feedback2": [], "overall_preference": op,
           "individual_preference": [{"score": s, "reasoning": "r"} for s in scores]}
    if split:
        rec["split"] = split
    return rec


def _cand(annotator, principle, fulfillment, response=1, record="r"):
    return {"cand_id": f"{record}:{response}:{annotator}#{principle}", "record_id": record, "response": response,
            "annotator": annotator, "principle": principle, "key": principle_key(principle), "fulfillment": fulfillment}


# ---------------------------------------------------------------- the merge

def test_merge_by_string_majority_label_and_ties():
    recs = {"r": _record(0) | {"id": "r"}}
    cands = [_cand(0, "conciseness", "Yes"), _cand(1, "Conciseness", "No"), _cand(2, "conciseness", "No"),
             _cand(0, "clarity", "Yes", response=2), _cand(1, "clarity", "No", response=2)]
    items, stats = D.merge_candidates(cands, recs, cfg=D.MergeConfig(method="string"))
    assert stats["label_ties"] == 1 and len(items) == 1 and stats["groups"] == 2
    it = items[0]
    assert (it["label"], it["principle"], it["votes"]) == ("No", "conciseness", {"Yes": 1, "No": 2})
    assert it["prompt_id"] == prompt_key(recs["r"]["context"]) and it["response"] == recs["r"]["response1"]
    assert set(it) >= {"item_id", "prompt_id", "domain", "context", "response", "principle", "label", "property",
                       "official_split", "variants"}


def _at(degrees):
    """A unit vector in the plane of unit vectors 0 and 1, ``degrees`` away from unit vector 0."""
    return np.cos(np.radians(degrees)) * unit(0) + np.sin(np.radians(degrees)) * unit(1)


# cosines: conciseness~is concise 0.906, is concise~being concise 0.906, conciseness~being concise 0.643,
# conciseness~brevity 0.7, clarity orthogonal to all
VECS = {"conciseness": _at(0), "is concise": _at(25), "being concise": _at(50), "brevity": near(0, 2, 0.7),
        "clarity": unit(5)}


def test_merge_by_meaning_one_item_per_meaning_with_the_annotators_majority():
    emb = Embeddings(list(VECS), FakeEmbedder(VECS))
    recs = {"r": _record(0) | {"id": "r"}}
    cands = [_cand(0, "conciseness", "No"), _cand(1, "is concise", "No"), _cand(2, "conciseness", "Yes"),
             _cand(0, "clarity", "Yes")]
    by_string, s = D.merge_candidates(cands, recs, emb, D.MergeConfig(method="string"))
    assert sorted((i["principle"], i["label"]) for i in by_string) == [("clarity", "Yes"), ("is concise", "No")]
    assert s["label_ties"] == 1  # "conciseness": one Yes, one No
    by_meaning, s = D.merge_candidates(cands, recs, emb, D.MergeConfig(threshold=0.8))
    got = {i["principle"]: i for i in by_meaning}
    assert set(got) == {"conciseness", "clarity"}  # the most frequent string names the merged item
    assert got["conciseness"]["label"] == "No" and got["conciseness"]["votes"] == {"No": 2, "Yes": 1}
    assert got["conciseness"]["variants"] == ["conciseness", "is concise"]
    assert (s["merged_groups"], s["merged_principles"], s["label_ties"]) == (1, 1, 0)
    # below the threshold (0.7 < 0.8) a paraphrase stays its own item; at 0.6 it joins
    cands_b = [_cand(0, "conciseness", "Yes"), _cand(1, "brevity", "Yes")]
    assert len(D.merge_candidates(cands_b, recs, emb, D.MergeConfig(threshold=0.8))[0]) == 2
    assert len(D.merge_candidates(cands_b, recs, emb, D.MergeConfig(threshold=0.6))[0]) == 1


def test_merge_links_chains_and_counts_each_annotator_once():
    emb = Embeddings(list(VECS), FakeEmbedder(VECS))
    recs = {"r": _record(0) | {"id": "r"}}
    # conciseness ~ is concise (0.91) ~ being concise (0.91): one item although conciseness . being concise = 0.64
    chain = [_cand(0, "conciseness", "Yes"), _cand(1, "is concise", "Yes"), _cand(2, "being concise", "No")]
    items, _ = D.merge_candidates(chain, recs, emb)
    assert len(items) == 1 and items[0]["votes"] == {"Yes": 2, "No": 1}
    # annotator 0 names the meaning twice with opposite labels: abstains; the others decide
    twice = [_cand(0, "conciseness", "Yes"), _cand(0, "is concise", "No"), _cand(1, "conciseness", "No")]
    items, _ = D.merge_candidates(twice, recs, emb)
    assert items[0]["label"] == "No" and items[0]["votes"] == {"No": 1}


def test_merger_subsets_equal_a_fresh_merge():
    emb = Embeddings(list(VECS), FakeEmbedder(VECS))
    cands = [_cand(a, p, f, response=r) for a, p, f, r in ((0, "conciseness", "Yes", 1), (1, "is concise", "No", 1),
             (2, "being concise", "No", 1), (0, "clarity", "Yes", 2), (1, "brevity", "No", 2))]
    merger = D.Merger(cands, emb)
    for keep in ({"r:1:0#conciseness", "r:1:2#being concise"}, {c["cand_id"] for c in cands}, set()):
        sub = [c for c in cands if c["cand_id"] in keep]
        a, _ = merger.groups(lambda c: c["cand_id"] in keep)
        b, _ = D.merge_groups(sub, emb)
        assert [(g["principle"], g["label"], g["votes"]) for g in a] == [(g["principle"], g["label"], g["votes"]) for g in b]


# ---------------------------------------------------------------- splits

def _items(n_prompts=200, per_prompt=4, official=None):
    items = []
    for i in range(n_prompts):
        ctx = [{"role": "user", "content": f"Prompt {i}?"}]
        for k in range(per_prompt):
            items.append({"item_id": f"it{i}-{k}", "prompt_id": prompt_key(ctx), "domain": ("code", "stem")[i % 2],
                          "context": ctx, "response": f"r{k % 2}", "principle": f"p{k // 2}",
                          "label": "Yes" if (i + k) % 3 else "No", "property": None, "record_id": f"rec{i}",
                          "response_index": 1 + k % 2,
                          "official_split": official(i) if official else None})
    return items


def _prompts(splits):
    return {s: {i["prompt_id"] for i in rows} for s, rows in splits.items()}


def test_official_split_is_kept_and_principlebench_is_held_out_of_train_prompts():
    official = lambda i: "validation" if i % 10 == 0 else "train"
    items = _items(400, official=official)
    cfg = D.SplitConfig(seed=3, validation_share=0.3, bench_share=0.2)
    splits = D.split_rows(items, cfg)
    prompts = _prompts(splits)
    assert all(prompts[a].isdisjoint(prompts[b]) for a in prompts for b in prompts if a < b)
    assert {i["official_split"] for i in splits["validation"]} == {"validation"}   # exactly the official one
    assert sum(i["official_split"] == "validation" for i in items) == len(splits["validation"])
    assert {i["official_split"] for i in splits["bench"]} == {"train"}             # carved from train prompts
    train_prompts = {i["prompt_id"] for i in items if i["official_split"] == "train"}
    assert 0.12 < len(prompts["bench"]) / len(train_prompts) < 0.28                # ~ bench_share of them
    # a prompt with a record in validation is validation, also where another record says train
    mixed = _items(1, official=lambda i: "train") + [dict(_items(1)[0], item_id="x", official_split="validation")]
    assert {i["item_id"] for i in D.split_rows(mixed, cfg)["validation"]} == {i["item_id"] for i in mixed}
    # official: false ignores the stored split: the hash split of all prompts
    ids = lambda splits: {s: [i["item_id"] for i in rows] for s, rows in splits.items()}
    assert ids(D.split_rows(items, D.SplitConfig(seed=3, official=False))) == ids(D.split_rows(_items(400),
                                                                                            D.SplitConfig(seed=3)))


def test_hash_split_without_official_split_is_disjoint_and_stable():
    cfg = D.SplitConfig(seed=1, validation_share=0.2, bench_share=0.2)
    items = _items()
    splits = D.split_rows(items, cfg)
    prompts = _prompts(splits)
    assert all(prompts[a].isdisjoint(prompts[b]) for a in prompts for b in prompts if a < b)
    assert sum(len(v) for v in splits.values()) == len(items)
    assert all(len(prompts[s]) > 10 for s in prompts)
    # the split of a prompt depends only on the prompt: the same with half the data
    again = D.split_rows(items[: len(items) // 2], cfg)
    assert all(D.split_of(i["prompt_id"], cfg) == s for s, rows in again.items() for i in rows)


def test_build_datasets_splits_pairs_like_items():
    records = [_record(i, split="validation" if i % 5 == 0 else "train") for i in range(120)]
    items = [{"item_id": f"i{i}", "prompt_id": prompt_key(r["context"]), "domain": r["domain"], "context": r["context"],
              "response": r["response1"], "principle": "p", "label": "Yes" if i % 2 else "No", "property": None,
              "record_id": r["id"], "response_index": 1, "official_split": r["split"]} for i, r in enumerate(records)]
    ds, m = D.build_datasets(items, records, D.SplitConfig(bench_share=0.25), D.BenchConfig())
    assert m["datasets"]["split_method"] == "official"
    for s in D.SPLITS:
        assert {p["prompt_id"] for p in ds["pairs"][s]} == {i["prompt_id"] for i in ds["splits"][s]}
    assert m["datasets"]["validation"] == 24 and m["datasets"]["pairs_validation"] == 24


# ---------------------------------------------------------------- PrincipleBench and pairs

def test_principlebench_balance_edge_cases():
    def item(i, domain, label):
        return {"item_id": f"{domain}{i}", "domain": domain, "label": label}

    items = ([item(i, "code", "Yes") for i in range(10)] + [item(i + 10, "code", "No") for i in range(4)]
             + [item(i, "stem", "Yes") for i in range(5)])
    bench, stats = D.build_principlebench(items, D.BenchConfig(yes_share=0.5))
    assert stats["code"]["yes"] == stats["code"]["no"] == 4
    assert stats["stem"] == {"items": 5, "yes": 5, "no": 0, "yes_share": 1.0, "balanced": False,
                             "available": {"yes": 5, "no": 0}}
    bench, stats = D.build_principlebench(items, D.BenchConfig(yes_share=0.6))
    assert (stats["code"]["yes"], stats["code"]["no"]) == (6, 4)
    bench, stats = D.build_principlebench(items, D.BenchConfig(yes_share=0.5, max_items_per_domain=4))
    assert (stats["code"]["yes"], stats["code"]["no"]) == (2, 2)
    assert bench == D.build_principlebench(items, D.BenchConfig(yes_share=0.5, max_items_per_domain=4))[0]


def test_principlebench_pairs_need_opposite_labels_and_the_same_meaning():
    base = {"prompt_id": "p", "domain": "code", "context": [], "property": None, "record_id": "r"}
    items = [{**base, "item_id": "a", "principle": "conciseness", "label": "Yes", "response": "R1", "response_index": 1},
             {**base, "item_id": "b", "principle": "Conciseness", "label": "No", "response": "R2", "response_index": 2},
             {**base, "item_id": "c", "principle": "clarity", "label": "Yes", "response": "R1", "response_index": 1},
             {**base, "item_id": "d", "principle": "clarity", "label": "Yes", "response": "R2", "response_index": 2}]
    pairs = D.principlebench_pairs(items)
    assert len(pairs) == 1 and (pairs[0]["chosen"], pairs[0]["rejected"]) == ("R1", "R2")
    # the same meaning in other words pairs only with the embeddings
    para = [items[0], {**items[1], "principle": "is concise"}]
    assert D.principlebench_pairs(para) == []
    emb = Embeddings(list(VECS), FakeEmbedder(VECS))
    got = D.principlebench_pairs(para, emb, threshold=0.8)
    assert len(got) == 1 and got[0]["chosen"] == "R1"
    assert D.principlebench_pairs([items[0], {**items[1], "principle": "brevity"}], emb, threshold=0.8) == []


def test_preference_pairs_drop_ties_and_unlabelled():
    recs = [_record(0, op=-2, scores=(-2, -1, -3)), _record(1, op=0, scores=(0, 1, -1)),
            _record(2, op=3, scores=(3, 3, 3)), _record(3, op=None, scores=())]
    pairs, counts = D.preference_pairs(recs)
    assert counts == {"pairs": 2, "ties_dropped": 1, "unlabelled_dropped": 1}
    a, b = pairs
    assert (a["chosen"], a["rejected"]) == (recs[0]["response1"], recs[0]["response2"])
    assert (b["chosen"], b["rejected"]) == (recs[2]["response2"], recs[2]["response1"])
    assert a["annotator_spread"] == pytest.approx(np.std([-2, -1, -3]))
    assert b["annotator_spread"] == 0.0


def test_config_validation_names_the_field():
    for cls, kwargs, name in ((D.MergeConfig, {"method": "vibes"}, "method"), (D.MergeConfig, {"threshold": 1.5}, "threshold"),
                              (D.SplitConfig, {"bench_share": 1.0}, "bench_share"),
                              (D.SplitConfig, {"validation_share": 0.6, "bench_share": 0.5}, "validation_share"),
                              (D.BenchConfig, {"yes_share": 0.0}, "yes_share")):
        with pytest.raises(ValueError, match=f"^{name}: "):
            cls(**kwargs)
