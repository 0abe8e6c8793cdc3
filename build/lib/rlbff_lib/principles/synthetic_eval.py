"""The principles measured against the synthetic world's ground truth (evaluation only).

Nothing here feeds a dataset: extraction, filters, consensus and the merge never read the truth
(``truth.jsonl``); this module only scores what they produced. A principle is mapped to a world
property (:func:`map_principles`); an item (or an annotator-level principle) is *correct* when its
property applies to the response (one of the response's ground-truth properties) AND its label
equals that property's checker value. "Partially" is never correct (the truth is binary). Every
accuracy, precision, recall and share carries its 95% Wilson interval beside it (``ci`` or ``<key>_ci``).

Measured: the accuracy entering and leaving each filter (:func:`funnel_accuracy`), the items and
accuracy of the whole pipeline with one step switched off (:func:`ablation`), per-property precision
and recall, and which kind of world remark the kept principles came from.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from rlbff_lib.core.stats import wilson_interval
from rlbff_lib.principles.consensus import ConsensusConfig, Embeddings, score_survivors
from rlbff_lib.principles.datasets import MergeConfig, Merger, merge_groups
from rlbff_lib.principles.filters import FILTER_STEPS

FUNNEL = ("valid", *FILTER_STEPS, "consensus")


@dataclass
class EvaluationConfig:
    """Principle -> world property mapping (see :func:`map_principles`).

    map_threshold: nearest property by cosine accepted at or above this.
    mention_min_similarity: a property the principle names (a stem of its name's words) is
      accepted at or above this lower similarity.
    """

    map_threshold: float = 0.75
    mention_min_similarity: float = 0.3

    def __post_init__(self):
        for name in ("map_threshold", "mention_min_similarity"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [-1, 1], got {getattr(self, name)}")


# ---------------------------------------------------------------- principle -> property

# Words by which a principle names a world property (regexes matched at word starts, case-insensitive).
# A principle that names one or more properties maps to the most similar of them.
PROPERTY_TERMS: dict[str, tuple[str, ...]] = {
    "concise": (r"concis", r"brevity", r"brief", r"succinct", r"verbos", r"wordy", r"length\b", r"lengthy"),
    "bulleted_list": (r"bullet", r"list(?:s|ed)?\b", r"itemi[sz]"),
    "worked_example": (r"example", r"worked example", r"sample case"),
    "inline_comments": (r"comment",),
    "fenced_code": (r"code blocks?\b", r"fence", r"backtick"),
    "code_docstring": (r"docstring", r"documentation string"),
    "arithmetic_correct": (r"correct", r"accura", r"arithmetic", r"calculat", r"computation", r"final answer"),
    "same_language": (r"language",),
    "no_repetition": (r"repeti", r"repeat", r"redundan"),
    "direct_answer": (r"preamble", r"filler", r"pleasantr", r"direct"),
    "followup_question": (r"follow[- ]?up", r"closing question"),
    "bold_key_terms": (r"bold",),
}
_PROPERTY_TERM_RES = {name: re.compile(r"\b(?:" + "|".join(terms) + ")", re.I) for name, terms in PROPERTY_TERMS.items()}


def mentioned_properties(principle: str) -> list[str]:
    """World properties a principle names by one of their :data:`PROPERTY_TERMS`."""
    return [name for name, rx in _PROPERTY_TERM_RES.items() if rx.search(principle)]


def map_principles(principles: list[str], model, cfg: EvaluationConfig | None = None,
                   batch_size: int = 128) -> dict[str, dict]:
    """principle -> ``{"property", "how", "similarity"}``.

    In order: (1) ``world.match_property`` (a world phrasing or an extractor name of
    ``world.PRINCIPLE_NAMES``) -> ``how="exact"``; (2) properties the principle names by one of their
    :data:`PROPERTY_TERMS` (e.g. "uses code blocks" -> ``fenced_code``): the most similar of them
    (max cosine to its phrasings) if that similarity is >= ``mention_min_similarity`` ->
    ``"mention"``; (3) the most similar property if >= ``map_threshold`` -> ``"similarity"``; else
    ``None``.
    """
    from rlbff_lib.synthetic import world

    cfg = cfg or EvaluationConfig()
    phrasings = world.all_phrasings()
    uniq = list(dict.fromkeys(principles))
    emb = Embeddings([p for _, p in phrasings] + uniq, model, batch_size)
    names = list(world.PROPERTIES)
    sims_all = emb.similarity(uniq, [p for _, p in phrasings]) if uniq else None
    out = {}
    for i, principle in enumerate(uniq):
        exact = world.match_property(principle)
        if exact:
            out[principle] = {"property": exact, "how": "exact", "similarity": 1.0}
            continue
        best = {n: -1.0 for n in names}
        for j, (name, _) in enumerate(phrasings):
            best[name] = max(best[name], float(sims_all[i, j]))
        mentioned = mentioned_properties(principle)
        choice = None
        if mentioned:
            top = max(mentioned, key=lambda n: best[n])
            if best[top] >= cfg.mention_min_similarity:
                choice = (top, "mention")
        if choice is None:
            top = max(names, key=lambda n: best[n])
            if best[top] >= cfg.map_threshold:
                choice = (top, "similarity")
        out[principle] = {"property": choice[0] if choice else None, "how": choice[1] if choice else None,
                          "similarity": round(best[choice[0] if choice else max(names, key=lambda n: best[n])], 4)}
    return out


# ---------------------------------------------------------------- verdicts

def truth_index(truth: list[dict]) -> dict[tuple, dict]:
    """(record_id, response index) -> truth row."""
    return {(t["id"], t["response"]): t for t in truth}


def judge(principle: str, label: str, truth_row: dict | None, mapping: dict[str, dict]) -> str:
    """``correct`` | ``wrong_label`` | ``partially`` (a Partially label) | ``not_applicable`` (property
    not of this response) | ``unmapped`` (names no property) | ``no_truth``."""
    if truth_row is None:
        return "no_truth"
    prop = (mapping.get(principle) or {}).get("property")
    if prop is None:
        return "unmapped"
    if prop not in truth_row["properties"]:
        return "not_applicable"
    if label == "Partially":
        return "partially"
    return "correct" if label == ("Yes" if truth_row["properties"][prop] else "No") else "wrong_label"


def as_items(cands: list[dict]) -> list[dict]:
    """Annotator-level candidates in the item shape :func:`accuracy` reads."""
    return [{"principle": c["principle"], "label": c["fulfillment"], "record_id": c["record_id"],
             "response_index": c["response"]} for c in cands]


def rate_ci(k: int, n: int) -> list[float] | None:
    """The 95% Wilson ``[lower, upper]`` (shares, 4 decimals) of k right out of n; None when n is 0."""
    return [round(x, 4) for x in wilson_interval(k, n)] if n else None


def accuracy(items: list[dict], tidx: dict, mapping: dict) -> dict:
    """Share of items whose principle maps to a property of the response with the checker's label:
    ``{items, accuracy, ci (95% Wilson over the items), verdicts}``."""
    verdicts = Counter(judge(i["principle"], i["label"], tidx.get((i["record_id"], i["response_index"])), mapping)
                       for i in items)
    n = sum(verdicts.values())
    return {"items": n, "accuracy": round(verdicts["correct"] / n, 4) if n else None,
            "ci": rate_ci(verdicts["correct"], n), "verdicts": dict(sorted(verdicts.items()))}


def comment_kind(cand: dict, truth_row: dict | None) -> str:
    """The kind of the world remark a candidate came from: ``salient`` | ``mistake`` | ``partial`` |
    ``offtopic`` | ``other`` (neutral sentence, helpfulness, invented). Its evidence holds the
    remark, or (a misquote) matches one of the annotator's remarks with ``partial_ratio`` >= 80."""
    if truth_row is None:
        return "other"
    from rapidfuzz import fuzz

    ev = cand.get("evidence", "")
    mine = [c for c in truth_row["comments"] if c["annotator"] == cand["annotator"] and c["text"]]
    for c in mine:
        if c["text"] in ev:
            return c["kind"]
    scored = [(fuzz.ratio(ev.lower(), c["text"].lower()), c["kind"]) for c in mine]
    best = max(scored, default=(0, "other"))
    return best[1] if best[0] >= 80 else "other"


def per_property(items: list[dict], tidx: dict, mapping: dict) -> dict:
    """Per property: precision (items mapped to it whose label is the checker's), and recall
    (of the (response, property) pairs with at least one *salient* remark -- an annotator
    remark with the true polarity -- the share that has an item mapped to it with that label)."""
    from rlbff_lib.synthetic.world import PROPERTIES

    mapped: dict[str, Counter] = defaultdict(Counter)
    found: set[tuple] = set()
    for it in items:
        prop = (mapping.get(it["principle"]) or {}).get("property")
        row = tidx.get((it["record_id"], it["response_index"]))
        if prop is None or row is None or prop not in row["properties"]:
            continue
        ok = it["label"] == ("Yes" if row["properties"][prop] else "No")
        mapped[prop]["items"] += 1
        mapped[prop]["correct"] += ok
        if ok:
            found.add((it["record_id"], it["response_index"], prop))
    salient: dict[str, set] = defaultdict(set)
    for (rid, resp), row in tidx.items():
        for c in row["comments"]:
            if c["kind"] == "salient" and c["property"]:
                salient[c["property"]].add((rid, resp, c["property"]))
    out = {}
    for prop in PROPERTIES:
        n, s = mapped[prop]["items"], salient[prop]
        out[prop] = {"items": n, "precision": round(mapped[prop]["correct"] / n, 4) if n else None,
                     "precision_ci": rate_ci(mapped[prop]["correct"], n),
                     "salient": len(s), "recall": round(len(s & found) / len(s), 4) if s else None,
                     "recall_ci": rate_ci(len(s & found), len(s))}
    return out


# ---------------------------------------------------------------- per filter and ablations

def funnel_accuracy(cands: list[dict], items: list[dict], string_items: list[dict], tidx: dict,
                    mapping: dict) -> dict:
    """Per step (keys in step order): annotator-level principles entering and leaving it, removed, and
    the accuracy of each; then the merge: kept principles -> items by meaning, beside items by string."""
    def acc(name: str, its: list[dict]) -> dict:  # {accuracy_<name>, accuracy_<name>_ci}
        a = accuracy(its, tidx, mapping)
        return {f"accuracy_{name}": a["accuracy"], f"accuracy_{name}_ci": a["ci"]}

    out, entering = {}, [c for c in cands]
    for i, step in enumerate(FUNNEL, 1):
        leaving = [c for c in entering if c["fate"] != step]
        removed = [c for c in entering if c["fate"] == step]
        out[f"{i}_{step}"] = {"in": len(entering), "out": len(leaving), "removed": len(removed),
                              **acc("in", as_items(entering)), **acc("out", as_items(leaving)),
                              **acc("removed", as_items(removed))}
        entering = leaving
    string = accuracy(string_items, tidx, mapping)
    out[f"{len(FUNNEL) + 1}_merge"] = {
        "in": len(entering), "out": len(items), **acc("in", as_items(entering)), **acc("out", items),
        "string_merge": {"items": len(string_items), "accuracy": string["accuracy"], "ci": string["ci"]},
        "note": "in: annotator-level principles kept by consensus; out: items (one per response and principle "
                "meaning, majority label); string_merge: the same principles merged only when identical"}
    return out


def ablation(cands: list[dict], participants: dict, emb: Embeddings, consensus: ConsensusConfig,
             merge: MergeConfig, tidx: dict, mapping: dict) -> dict:
    """Items and their accuracy from the whole pipeline as configured and with one step switched off
    (the consensus scores recomputed on that step's survivors)."""
    valid = [c for c in cands if c["fate"] != "valid"]
    emb.add([c["principle"] for c in valid])
    other = MergeConfig(method="string" if merge.method == "meaning" else "meaning", threshold=merge.threshold)
    mergers = {merge.method: Merger(valid, emb, merge), other.method: Merger(valid, emb, other)}

    def run(off: tuple[str, ...] = (), use_consensus: bool = True, method: str = merge.method) -> dict:
        surv = [c for c in valid if not set(c.get("fails", ())) - set(off)]
        if use_consensus:
            scores, _ = score_survivors(surv, participants, emb, consensus.min_annotators)
            surv = [c for c in surv if scores[c["cand_id"]] is not None and scores[c["cand_id"]] > consensus.threshold]
        ids = {c["cand_id"] for c in surv}
        items, stats = mergers[method].groups(lambda c: c["cand_id"] in ids)
        a = accuracy(items, tidx, mapping)
        return {"principles": len(surv), "items": len(items), "accuracy": a["accuracy"], "ci": a["ci"],
                "label_ties": stats["label_ties"]}

    return {"as_configured": run(), "without_evidence_filter": run(("evidence",)),
            "without_helpfulness_filter": run(("helpfulness",)), "without_partially_filter": run(("partially",)),
            "without_consensus": run(use_consensus=False), f"{other.method}_merge": run(method=other.method)}


def evaluate_synthetic(cands: list[dict], items: list[dict], participants: dict, tidx: dict,
                       emb: Embeddings, model, cfg: EvaluationConfig, consensus: ConsensusConfig,
                       merge: MergeConfig, batch_size: int = 128) -> tuple[dict, dict]:
    """Score the principles against the ground truth: sets each item's ``property`` (when the mapped
    property applies to its response); returns (metrics["synthetic"], the principle -> property mapping)."""
    valid = [c for c in cands if c["fate"] != "valid"]
    survivors = [c for c in valid if c["fate"] in ("consensus", "kept")]
    kept = [c for c in survivors if c["fate"] == "kept"]
    removed = [c for c in survivors if c["fate"] == "consensus"]
    mapping = map_principles([c["principle"] for c in valid], model, cfg, batch_size)
    for it in items:
        prop = mapping.get(it["principle"], {}).get("property")
        row = tidx.get((it["record_id"], it["response_index"]))
        it["property"] = prop if row is not None and prop in row["properties"] else None
    items_before, _ = merge_groups(survivors, emb, merge)
    string_items, _ = merge_groups(kept, None, MergeConfig(method="string"))
    before, after = accuracy(items_before, tidx, mapping), accuracy(items, tidx, mapping)
    kinds: dict[str, Counter] = defaultdict(Counter)
    for c in survivors:
        k = comment_kind(c, tidx.get((c["record_id"], c["response"])))
        kinds[k]["after_partially"] += 1
        kinds[k]["kept"] += c["fate"] == "kept"
    p_before, p_after = accuracy(as_items(survivors), tidx, mapping), accuracy(as_items(kept), tidx, mapping)
    metrics = {
        "accuracy_before_consensus": before["accuracy"], "accuracy_after_consensus": after["accuracy"],
        "accuracy_before_consensus_ci": before["ci"], "accuracy_after_consensus_ci": after["ci"],
        "items_before_consensus": before["items"], "items_after_consensus": after["items"],
        "verdicts_before_consensus": before["verdicts"], "verdicts_after_consensus": after["verdicts"],
        "principle_accuracy_before_consensus": p_before["accuracy"],
        "principle_accuracy_after_consensus": p_after["accuracy"],
        "principle_accuracy_before_consensus_ci": p_before["ci"], "principle_accuracy_after_consensus_ci": p_after["ci"],
        "removed_by_consensus": accuracy(as_items(removed), tidx, mapping),
        "funnel": funnel_accuracy(cands, items, string_items, tidx, mapping),
        "ablation": ablation(cands, participants, emb, consensus, merge, tidx, mapping),
        "remark_kinds": {k: {"after_partially": v["after_partially"], "kept": v["kept"],
                             "kept_share": round(v["kept"] / v["after_partially"], 4) if v["after_partially"] else None,
                             "kept_share_ci": rate_ci(v["kept"], v["after_partially"])}
                         for k, v in sorted(kinds.items())},
        "per_property_before_consensus": per_property(items_before, tidx, mapping),
        "per_property_after_consensus": per_property(items, tidx, mapping),
        "mapping": dict(sorted(mapping.items())),
        "mapping_methods": {str(k): v for k, v in Counter(v["how"] for v in mapping.values()).items()},
        "definition": (
            "accuracy: share of items whose principle maps (map_principles: a world phrasing or extractor name, "
            "else a property the principle names, else the nearest property by cosine >= evaluation.map_threshold) "
            "to a ground-truth property of the response AND whose label equals that property's checker value "
            "(Partially is never correct). 'before' = the items the same merge gives without the consensus step. "
            "principle_accuracy: the same on annotator-level principles. funnel: per filter, the annotator-level "
            "principles entering and leaving it and their accuracy. ablation: the whole pipeline with one step "
            "switched off. recall (per property): share of (response, property) pairs with a salient remark (an "
            "annotator remark stating the true polarity) that have a correct item. remark_kinds: which world "
            "remark each principle came from (its evidence holds or closely matches the remark). ci / <key>_ci: "
            "the 95% Wilson interval of the share beside it, over the items (or principles) it counts."),
    }
    return metrics, mapping
