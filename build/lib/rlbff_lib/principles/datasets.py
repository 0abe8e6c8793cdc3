"""From kept principles to datasets: items merged by meaning, splits by prompt, PrincipleBench, pairs.

1. merge (:func:`merge_candidates`): the kept principles of one response become one item per
   principle *meaning*: principles whose embeddings have cosine > ``merge.threshold`` are one item
   (the connected components; identical strings always are), labelled by the majority of the
   annotators' labels (each annotator one vote); a tie drops the item (``label_ties``).
   ``merge.method: string`` merges identical strings only (case/space-insensitive).
2. splits, always BY PROMPT (``prompt_id = data.prompt_key(context)``; no prompt in two splits): with
   ``split.official`` the split stored on each record (HelpSteer3's published train / validation) is
   kept: a prompt with a record in validation is ``validation``, else ``train``; PrincipleBench
   (``bench``) is held out of the official TRAIN prompts: ``split.bench_share`` of them, chosen by a hash
   of (``split.seed``, prompt), never trained on. Records without a stored split fall back to a hash
   split of all prompts (``bench_share`` bench, ``validation_share`` validation, the rest train). A
   prompt's split never changes when other prompts are added.
3. datasets (``data/principles/``):

- ``train.jsonl``, ``validation.jsonl``: reward-model items ``{"item_id", "prompt_id", "domain",
  "context", "response", "principle", "label": "Yes"|"No", "property"}`` plus ``record_id``,
  ``response_index``, ``language``, ``official_split``, ``votes`` (annotators' labels) and
  ``variants`` (the principle strings merged). ``property`` is the synthetic world's property the
  principle names (set by the synthetic evaluation), else null.
- ``principlebench.jsonl``: PrincipleBench, the items of the held-out prompts; per domain the majority
  label is subsampled (deterministically, by hash) so that the Yes share equals ``bench.yes_share``;
  a domain that lacks one of the labels is kept as is (``balanced: false``);
  ``bench.max_items_per_domain`` caps a domain keeping the ratio. Scored pointwise.
- ``principlebench_pairs.jsonl``: the pairwise view of the same prompts: a record and a principle
  (same meaning) with an item for BOTH responses with opposite labels, ``{"pair_id", "prompt_id",
  "domain", "context", "principle", "chosen" (the Yes response), "rejected", "property"}``.
- ``pairs_{train,validation,bench}.jsonl``: Bradley-Terry preference pairs from
  ``overall_preference`` (ties 0 and unlabelled records dropped; ``annotator_spread`` = population
  std of the individual scores), split like the items.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from rlbff_lib.core.io import stable_hash
from rlbff_lib.principles.filters import clean_text, principle_key

SPLITS = ("train", "validation", "bench")


# ---------------------------------------------------------------- configuration

@dataclass
class MergeConfig:
    """method: ``meaning`` (cosine > threshold, module doc) or ``string`` (identical strings only).
    threshold: cosine above which two principles of one response are one item."""

    method: Literal["meaning", "string"] = "meaning"
    threshold: float = 0.8

    def __post_init__(self):
        if self.method not in ("meaning", "string"):
            raise ValueError(f"method: must be 'meaning' or 'string', got {self.method!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold: must be in [0, 1), got {self.threshold}")


@dataclass
class SplitConfig:
    """official: keep each record's stored split (module doc). bench_share: share of the (official
    train, else all) prompts held out as PrincipleBench. validation_share: share of all prompts in
    validation when records carry no split."""

    seed: int = 0
    validation_share: float = 0.1
    bench_share: float = 0.15
    official: bool = True

    def __post_init__(self):
        for name in ("validation_share", "bench_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.validation_share + self.bench_share >= 1.0:
            raise ValueError(f"validation_share: validation_share + bench_share must be < 1, got "
                             f"{self.validation_share} + {self.bench_share}")


@dataclass
class BenchConfig:
    """yes_share: target Yes share per domain of PrincipleBench. max_items_per_domain: cap (null: none)."""

    yes_share: float = 0.5
    max_items_per_domain: int | None = None

    def __post_init__(self):
        if not 0.0 < self.yes_share < 1.0:
            raise ValueError(f"yes_share: must be in (0, 1), got {self.yes_share}")
        if self.max_items_per_domain is not None and self.max_items_per_domain < 2:
            raise ValueError(f"max_items_per_domain: must be >= 2 or null, got {self.max_items_per_domain}")


# ---------------------------------------------------------------- 1. merge into items

def majority(group: list[dict]) -> tuple[str | None, dict]:
    """The majority label over annotators (each annotator's own majority is one vote; an annotator
    split evenly abstains); None on a tie. Returns (label, votes)."""
    per_annot: dict[Any, dict[str, int]] = {}
    for c in group:
        counts = per_annot.setdefault(c["annotator"], {})
        counts[c["fulfillment"]] = counts.get(c["fulfillment"], 0) + 1
    votes: dict[str, int] = {}
    for counts in per_annot.values():
        top = _unique_max(counts)
        if top is not None:
            votes[top] = votes.get(top, 0) + 1
    return _unique_max(votes), votes


def _unique_max(counts: dict[str, int]) -> str | None:
    if len(counts) == 1:
        return next(iter(counts))
    best = max(counts.values(), default=0)
    tops = [k for k, v in counts.items() if v == best]
    return tops[0] if len(tops) == 1 else None


class Merger:
    """The merge of a set of candidates, and of any subset of it (threshold sweeps, ablations): each
    response's links (same key, or cosine > ``threshold`` for ``method: meaning``) computed once.

    ``emb`` (:class:`rlbff_lib.principles.consensus.Embeddings` holding every candidate's principle)
    is needed for ``method: meaning``; without it identical strings only are merged.
    """

    def __init__(self, cands: list[dict], emb=None, cfg: MergeConfig | None = None):
        import numpy as np

        self.cfg = cfg or MergeConfig()
        by_response: dict[tuple, list[dict]] = defaultdict(list)
        for c in cands:
            by_response[(c["record_id"], c["response"])].append(c)
        self.responses = []  # (record_id, response, candidates, key ids, neighbours of each)
        for (rid, resp), group in by_response.items():
            key_ids = {k: i for i, k in enumerate(dict.fromkeys(c["key"] for c in group))}
            kid = [key_ids[c["key"]] for c in group]
            linked = np.equal.outer(kid, kid)
            if self.cfg.method == "meaning" and emb is not None and len(key_ids) > 1:
                names = [c["principle"] for c in group]
                linked |= emb.similarity(names, names) > self.cfg.threshold
            neighbours = [set(np.flatnonzero(row).tolist()) for row in linked]
            self.responses.append((rid, resp, group, kid, neighbours))

    def groups(self, keep=None) -> tuple[list[dict], dict]:
        """Per (record, response), the groups of the candidates with ``keep(c)`` (all by default) that
        are one item: the connected components of the links, each ``{"record_id", "response_index",
        "principle" (its most frequent string), "key", "label", "votes", "members"}``; ties dropped.
        Returns (groups, stats: candidates, groups, items, label_ties, merged_groups (groups of several
        distinct principles), merged_principles (distinct principles folded into another))."""
        out, stats = [], Counter()
        for rid, resp, group, kid, neighbours in self.responses:
            alive = {i for i, c in enumerate(group) if keep is None or keep(c)}
            stats["candidates"] += len(alive)
            for comp in _components(alive, neighbours):
                members = [group[i] for i in comp]
                distinct = len({kid[i] for i in comp})
                stats["groups"] += 1
                stats["merged_groups"] += distinct > 1
                stats["merged_principles"] += distinct - 1
                label, votes = majority(members)
                if label is None:
                    stats["label_ties"] += 1
                    continue
                counts: dict[str, int] = {}
                for c in members:
                    counts[c["principle"]] = counts.get(c["principle"], 0) + 1
                surface = min(counts, key=lambda p: (-counts[p], p))
                out.append({"record_id": rid, "response_index": resp, "principle": surface,
                            "key": next(c["key"] for c in members if c["principle"] == surface), "label": label,
                            "votes": votes, "members": members})
        stats["items"] = len(out)
        cfg = self.cfg
        return out, {"method": cfg.method, "threshold": cfg.threshold if cfg.method == "meaning" else None,
                     **{k: stats.get(k, 0) for k in ("candidates", "groups", "items", "label_ties", "merged_groups",
                                                     "merged_principles")}}


def _components(alive: set[int], neighbours: list[set[int]]) -> list[list[int]]:
    """Connected components among ``alive`` nodes, each sorted, in order of first member."""
    seen, out = set(), []
    for i in sorted(alive):
        if i in seen:
            continue
        seen.add(i)
        comp, stack = [], [i]
        while stack:
            j = stack.pop()
            comp.append(j)
            for k in neighbours[j]:
                if k in alive and k not in seen:
                    seen.add(k)
                    stack.append(k)
        out.append(sorted(comp))
    return out


def merge_groups(cands: list[dict], emb=None, cfg: MergeConfig | None = None) -> tuple[list[dict], dict]:
    """The merge without building items: :meth:`Merger.groups` of ``cands``."""
    return Merger(cands, emb, cfg).groups()


def merge_candidates(cands: list[dict], records: dict[Any, dict], emb=None,
                     cfg: MergeConfig | None = None) -> tuple[list[dict], dict]:
    """One item per (record, response, principle meaning) with the majority label (:func:`merge_groups`);
    items carry the record's prompt and the response text. Returns (items, stats)."""
    from rlbff_lib.data.sources import prompt_key

    groups, stats = merge_groups(cands, emb, cfg)
    prompt_ids: dict[Any, str] = {}
    items = []
    for g in groups:
        rid, resp = g["record_id"], g["response_index"]
        rec = records[rid]
        if rid not in prompt_ids:
            prompt_ids[rid] = prompt_key(rec["context"])
        items.append({
            "item_id": "pr-" + stable_hash(rid, resp, g["key"])[:16], "prompt_id": prompt_ids[rid],
            "domain": rec["domain"], "context": rec["context"], "response": rec[f"response{resp}"],
            "principle": g["principle"], "label": g["label"], "property": None, "record_id": rid,
            "response_index": resp, "language": rec.get("language"), "official_split": rec.get("split"),
            "votes": g["votes"], "variants": sorted({c["principle"] for c in g["members"]}),
        })
    return items, stats


def released_items(records: list[dict]) -> tuple[list[dict], int]:
    """Items from the released ``principle`` config (already filtered by NVIDIA); duplicates of
    (context, response, principle) merged by majority, ties dropped. Returns (items, ties)."""
    from rlbff_lib.data.sources import prompt_key

    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        key = principle_key(rec["principle"])
        groups[stable_hash(rec["context"], rec["response"], key)].append(rec)
    items, ties = [], 0
    for h, group in groups.items():
        votes = Counter(r["fulfilment"] for r in group)
        if votes["Yes"] == votes["No"]:
            ties += 1
            continue
        rec = group[0]
        items.append({
            "item_id": "pr-" + h[:16], "prompt_id": prompt_key(rec["context"]), "domain": rec["domain"],
            "context": rec["context"], "response": rec["response"], "principle": clean_text(rec["principle"]),
            "label": "Yes" if votes["Yes"] > votes["No"] else "No", "property": None,
            "record_id": "hs3p-" + stable_hash(rec["context"], rec["response"])[:16], "response_index": None,
            "language": rec.get("language"), "official_split": rec.get("split"),
            "votes": {"Yes": votes["Yes"], "No": votes["No"]}, "variants": [clean_text(rec["principle"])],
        })
    return items, ties


# ---------------------------------------------------------------- 2. splits

def _unit(seed: int, prompt_id: str) -> float:
    return int(stable_hash("rlbff-prompt-split", seed, prompt_id)[:13], 16) / 16 ** 13


def prompt_split(prompt_id: str, cfg: SplitConfig, official: set | frozenset = frozenset()) -> str:
    """``train`` | ``validation`` | ``bench`` of a prompt whose records carry the ``official`` splits."""
    u = _unit(cfg.seed, prompt_id)
    official = set(official) - {None}
    if cfg.official and official:
        if official != {"train"}:
            return "validation"
        return "bench" if u < cfg.bench_share else "train"
    if u < cfg.bench_share:
        return "bench"
    if u < cfg.bench_share + cfg.validation_share:
        return "validation"
    return "train"


def split_of(prompt_id: str, cfg: SplitConfig) -> str:
    """The hash split of a prompt whose records carry no official split."""
    return prompt_split(prompt_id, cfg)


def official_splits(rows: list[dict]) -> dict[str, set]:
    """prompt_id -> the official splits its rows carry (``official_split``)."""
    out: dict[str, set] = defaultdict(set)
    for r in rows:
        out[r["prompt_id"]].add(r.get("official_split"))
    return out


def split_rows(rows: list[dict], cfg: SplitConfig, official: dict[str, set] | None = None) -> dict[str, list[dict]]:
    """Rows per split by prompt; ``official``: prompt -> official splits (default: from ``rows``)."""
    official = official_splits(rows) if official is None else official
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in rows:
        out[prompt_split(r["prompt_id"], cfg, official.get(r["prompt_id"], set()))].append(r)
    return out


# ---------------------------------------------------------------- 3. PrincipleBench and pairs

def _hash_order(rows: list[dict], seed: int, key: str) -> list[dict]:
    return sorted(rows, key=lambda r: stable_hash("rlbff-bench", seed, r[key]))


def build_principlebench(items: list[dict], cfg: BenchConfig, seed: int = 0) -> tuple[list[dict], dict]:
    """Balance held-out items per domain to ``cfg.yes_share`` (module doc); returns (bench, per-domain stats)."""
    by_domain: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_domain[it["domain"]].append(it)
    bench, stats = [], {}
    for domain in sorted(by_domain):
        yes = _hash_order([i for i in by_domain[domain] if i["label"] == "Yes"], seed, "item_id")
        no = _hash_order([i for i in by_domain[domain] if i["label"] == "No"], seed, "item_id")
        balanced = bool(yes and no)
        if balanced:
            y = cfg.yes_share
            n_yes = min(len(yes), math.floor(len(no) * y / (1 - y) + 1e-9))
            n_no = min(len(no), math.floor(len(yes) * (1 - y) / y + 1e-9))
            if n_yes == len(yes) or n_no == len(no):  # keep all of the minority label
                n_yes, n_no = (len(yes), n_no) if n_yes == len(yes) else (n_yes, len(no))
            if cfg.max_items_per_domain and n_yes + n_no > cfg.max_items_per_domain:
                n_yes = round(cfg.max_items_per_domain * y)
                n_no = cfg.max_items_per_domain - n_yes
                n_yes, n_no = min(n_yes, len(yes)), min(n_no, len(no))
            chosen = yes[:n_yes] + no[:n_no]
        else:
            chosen = (yes + no)[: cfg.max_items_per_domain or None]
        chosen = _hash_order(chosen, seed, "item_id")
        bench += chosen
        n_y = sum(i["label"] == "Yes" for i in chosen)
        stats[domain] = {"items": len(chosen), "yes": n_y, "no": len(chosen) - n_y,
                         "yes_share": round(n_y / len(chosen), 4) if chosen else None, "balanced": balanced,
                         "available": {"yes": len(yes), "no": len(no)}}
    return bench, stats


def principlebench_pairs(bench_items: list[dict], emb=None, threshold: float = 0.8) -> list[dict]:
    """Pairs from held-out items: same record, same principle (identical, or cosine > ``threshold``
    with ``emb``; the closest first, each item in one pair), Yes for one response and No for the other."""
    by_record: dict[Any, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for it in bench_items:
        if it.get("response_index") in (1, 2):
            by_record[it["record_id"]][it["response_index"]].append(it)
    pairs = []
    for rid in sorted(by_record, key=str):
        ones, twos = by_record[rid][1], by_record[rid][2]
        if not ones or not twos:
            continue
        sims = emb.similarity([a["principle"] for a in ones], [b["principle"] for b in twos]) if emb else None
        candidates = []
        for i, a in enumerate(ones):
            for j, b in enumerate(twos):
                same = principle_key(a["principle"]) == principle_key(b["principle"])
                sim = 1.0 if same else (float(sims[i, j]) if sims is not None else -1.0)
                if same or sim > threshold:
                    candidates.append((-sim, i, j))
        used1, used2 = set(), set()
        for _, i, j in sorted(candidates):
            if i in used1 or j in used2:
                continue
            used1.add(i)
            used2.add(j)
            a, b = ones[i], twos[j]
            if a["label"] == b["label"]:
                continue
            chosen, rejected = (a, b) if a["label"] == "Yes" else (b, a)
            pairs.append({"pair_id": "pb-" + stable_hash(rid, principle_key(a["principle"]))[:16],
                          "prompt_id": a["prompt_id"], "domain": a["domain"], "context": a["context"],
                          "principle": a["principle"], "chosen": chosen["response"], "rejected": rejected["response"],
                          "property": a.get("property") or b.get("property"), "record_id": rid})
    return pairs


def preference_pairs(records: list[dict]) -> tuple[list[dict], dict]:
    """Bradley-Terry pairs from ``overall_preference`` (negative: response1 better); ties and
    unlabelled records dropped. Returns (pairs, counts)."""
    from rlbff_lib.data.sources import prompt_key

    pairs, counts = [], Counter()
    for rec in records:
        op = rec.get("overall_preference")
        if op is None:
            counts["unlabelled"] += 1
            continue
        if op == 0:
            counts["ties"] += 1
            continue
        scores = [p["score"] for p in rec.get("individual_preference") or []
                  if isinstance(p, dict) and isinstance(p.get("score"), (int, float))]
        chosen, rejected = ("response1", "response2") if op < 0 else ("response2", "response1")
        pairs.append({"pair_id": f"pair-{rec['id']}", "prompt_id": prompt_key(rec["context"]),
                      "domain": rec["domain"], "context": rec["context"], "chosen": rec[chosen],
                      "rejected": rec[rejected], "overall_preference": op,
                      "annotator_spread": round(statistics.pstdev(scores), 6) if scores else None,
                      "record_id": rec["id"], "official_split": rec.get("split")})
        counts["pairs"] += 1
    return pairs, {"pairs": counts["pairs"], "ties_dropped": counts["ties"], "unlabelled_dropped": counts["unlabelled"]}


def label_balance(labels: list[str]) -> dict:
    c = Counter(labels)
    n = sum(c.values())
    return {"n": n, **{f"{k.lower()}_share": round(c[k] / n, 4) if n else None for k in ("Yes", "No", "Partially")
                       if k != "Partially" or c[k]}}


def build_datasets(items: list[dict], records: list[dict], split: SplitConfig, bench: BenchConfig,
                   emb=None, pair_threshold: float = 0.8) -> tuple[dict, dict]:
    """Split items and preference pairs by prompt; PrincipleBench from the held-out prompts.

    Returns (datasets: splits, bench, bench_pairs, pairs; metrics: datasets, pairs, principlebench).
    """
    pairs, pair_counts = preference_pairs(records)
    official = official_splits(items + pairs)
    splits = split_rows(items, split, official)
    pb, bench_stats = build_principlebench(splits["bench"], bench, split.seed)
    pb_pairs = principlebench_pairs(splits["bench"], emb, pair_threshold)
    pair_splits = split_rows(pairs, split, official)
    prompts = {s: len({r["prompt_id"] for r in splits[s]} | {p["prompt_id"] for p in pair_splits[s]})
               for s in SPLITS}
    uses_official = split.official and any(v - {None} for v in official.values())
    ybench = sum(i["label"] == "Yes" for i in pb)
    metrics = {
        "datasets": {
            "items": len(items), "train": len(splits["train"]), "validation": len(splits["validation"]),
            "bench_pool": len(splits["bench"]), "principlebench": len(pb), "principlebench_pairs": len(pb_pairs),
            "pairs_train": len(pair_splits["train"]), "pairs_validation": len(pair_splits["validation"]),
            "pairs_bench": len(pair_splits["bench"]), "prompts_per_split": prompts,
            "split_method": "official" if uses_official else "hash",
            "prompts_in_both_official_splits": sum(len(v - {None}) > 1 for v in official.values()),
            "label_balance": {s: label_balance([i["label"] for i in splits[s]]) for s in ("train", "validation")},
        },
        "pairs": pair_counts,
        "principlebench": {
            "size": len(pb), "yes_share": round(ybench / len(pb), 4) if pb else None,
            "yes_share_target": bench.yes_share, "per_domain": bench_stats, "pairs": len(pb_pairs),
            "description": (
                (f"Held-out prompts: {split.bench_share:.0%} of the official train "
                 "prompts (by a hash of the prompt), never trained on; validation is the official validation split"
                 if uses_official else
                 f"Held-out prompts (split 'bench': {split.bench_share:.0%} of prompts, chosen by a hash of the "
                 "prompt, never in train/validation)")
                + "; their principle items after all filters, consensus and the merge; per "
                f"domain the majority label subsampled to a Yes share of {bench.yes_share} (a domain lacking one "
                "label is kept as is, 'balanced: false'); scored pointwise (sign of the reward vs the label). "
                "principlebench_pairs.jsonl: principles of those prompts judged Yes for one response and No for the "
                "other, scored pairwise."),
        },
    }
    return {"splits": splits, "bench": pb, "bench_pairs": pb_pairs, "pairs": pair_splits}, metrics
