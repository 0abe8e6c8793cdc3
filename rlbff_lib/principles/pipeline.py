"""The ``principles`` stage: extracted principles -> filters -> consensus -> datasets (paper §2-§3).

Input is ``data/source/``: ``feedback.jsonl`` (HelpSteer3-Feedback records; principles are
extracted from each feedback text by :mod:`rlbff_lib.principles.extraction`), or ``principle.jsonl``
(the released ``principle`` config; then extraction and filters are skipped and its items
are used directly). ``truth.jsonl`` (the synthetic world's ground truth) is read ONLY by
:func:`evaluate_synthetic`, never by extraction, filtering or dataset building.

Filters, in the paper's order, each counted (the funnel in ``metrics/principles.json``):

0. sanitising (not a paper step): a principle that is malformed, empty, longer than
   ``extraction.max_principle_chars``, or a repeat of an earlier principle of the same
   feedback text (case/space/unicode-insensitive; the first one is kept) is dropped;
   principle and evidence strings are NFKC-normalised, invisible characters removed,
   whitespace collapsed (counted as ``unicode_normalized``, not dropped).
1. evidence: RapidFuzz ``fuzz.partial_ratio(evidence, feedback) > filters.evidence_threshold``
   (both through ``rapidfuzz.utils.default_process``: lowercase, punctuation to spaces).
2. helpfulness: the generic helpfulness principle (``extraction.HELPFULNESS_PRINCIPLE``) and
   close variants ("helpfulness", "overall helpfulness", "the response is helpful",
   "unhelpful", "usefulness", ...; see :func:`is_helpfulness`) are dropped.
3. Partially: principles judged ``Partially`` are dropped.
4. consensus (cross-annotator): every principle string is embedded once
   (:func:`rlbff_lib.models.embed.embed_unique`). The *participants* of a response are its
   annotators whose feedback text was extracted (status ``ok``); annotators whose text was
   skipped (empty, too long) or whose extraction failed are NOT participants: nothing is
   known of their opinion, so they neither support nor veto. A principle of participant
   ``a`` is kept iff every other participant ``b`` has at least one principle (among those
   that passed filters 0-3) with cosine similarity ``> consensus.threshold``. The
   principle's *consensus score* is ``min over b of max over b's principles of cosine``;
   it is kept iff score > threshold, so the threshold sweep is one comparison per score.
   Edge cases: a participant left with no principle after filters 0-3 (e.g. one who only
   judged helpfulness, or only said "Partially") supports nothing, so it vetoes every
   principle of the others (score -1); a response with fewer than
   ``consensus.min_annotators`` participants keeps nothing (default 2: a single annotator
   cannot agree with anyone; ``min_annotators: 1`` gives the literal reading, where
   "every other annotator" is vacuously true and a lone annotator keeps everything).
   Labels are not compared: annotators agree on *which* principle matters; step 5
   settles the label.
5. merge: one item per (response, principle) where principle is the case/space-insensitive
   string; the label is the majority of the kept annotators' labels; a tie (e.g. one Yes,
   one No) drops the item (counted as ``label_ties``).

Datasets (``data/principles/``), split BY PROMPT (``prompt_id = data.prompt_key(context)``;
a prompt's split is a hash of (``split.seed``, prompt_id), so it never changes when
other prompts are added and no prompt is in two splits):

- ``train.jsonl``, ``validation.jsonl``: reward-model items ``{"item_id", "prompt_id",
  "domain", "context", "response", "principle", "label": "Yes"|"No", "property"}`` plus
  ``record_id``, ``response_index``, ``language`` and ``votes`` (kept annotators' labels).
  ``property`` is the synthetic world's property the principle names (see
  :func:`map_principles`; only when it applies to the response's domain), else null.
- ``principlebench.jsonl``: PrincipleBench, from the items of the held-out prompts (the
  ``bench`` split, ``split.bench_share`` of prompts, disjoint from train/validation). Per
  domain, the majority label is subsampled (deterministically, by hash) so that the Yes
  share equals ``bench.yes_share``; a domain that lacks one of the labels is kept as is
  and marked ``balanced: false`` in the metrics; ``bench.max_items_per_domain`` caps a
  domain's size keeping the ratio. Scored pointwise: an item is right when the reward's
  sign matches its label. Size and per-domain balance are in ``metrics``.
- ``principlebench_pairs.jsonl``: the pairwise view of the same held-out prompts: for a
  record and a principle that has an item for BOTH responses with opposite labels,
  ``{"pair_id", "prompt_id", "domain", "context", "principle", "chosen" (the Yes
  response), "rejected", "property"}``; each response scored alone, right when the chosen
  one scores higher (a principle-blind Bradley-Terry model can be scored on it too).
- ``pairs_{train,validation,bench}.jsonl``: Bradley-Terry preference pairs
  ``{"pair_id", "prompt_id", "domain", "context", "chosen", "rejected",
  "overall_preference", "annotator_spread"}`` from ``overall_preference`` (ties 0 and
  unlabelled records dropped; ``annotator_spread`` = population std of the individual
  scores), split by the same prompt split.
- ``candidates.jsonl``: every extracted principle with its fate (the step that dropped it,
  or ``kept``) and its consensus score, for inspection.

Synthetic evaluation (:func:`evaluate_synthetic`, evaluation only): a principle is mapped
to a world property by :func:`map_principles`; an item is *accurate* when its property
applies to the response (it is one of the response's ground-truth properties) AND its
label equals that property's checker truth. Accuracy is measured on the dataset items
(after merging) built with and without the consensus step, and on annotator-level
candidates, at every threshold of ``consensus.sweep``.
"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from rlbff_lib.core.paper import PAPER
from rlbff_lib.core.paper import sweep_items as paper_sweep_items
from rlbff_lib.models.embed import EmbedderConfig
from rlbff_lib.principles.extraction import HELPFULNESS_PRINCIPLE, ExtractionConfig
from rlbff_lib.core.io import DataError, stable_hash

SPLITS = ("train", "validation", "bench")
FUNNEL_STEPS = ("extracted", "valid", "evidence", "helpfulness", "partially", "consensus")
# ---------------------------------------------------------------- configuration

@dataclass
class FilterConfig:
    """evidence_threshold: keep a principle when ``partial_ratio(evidence, feedback)`` is above
    this (0-100; paper 60). The stage fails when the share of feedback texts whose extraction
    failed is above ``extraction.failure_threshold`` (naming the failed items and why)."""

    evidence_threshold: float = 60.0

    def __post_init__(self):
        if not 0.0 <= self.evidence_threshold < 100.0:
            raise ValueError(f"evidence_threshold: must be in [0, 100), got {self.evidence_threshold}")


@dataclass
class ConsensusConfig:
    """threshold: cosine similarity a principle needs with some principle of EVERY other
    annotator (paper 0.8). sweep: thresholds also measured in the stage (items kept,
    synthetic accuracy). min_annotators: participants a response needs (see the module doc)."""

    threshold: float = 0.8
    sweep: list[float] = field(default_factory=lambda: [0.7, 0.8, 0.9])
    min_annotators: int = 2

    def __post_init__(self):
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold: must be in [0, 1), got {self.threshold}")
        bad = [t for t in self.sweep if not 0.0 <= t < 1.0]
        if bad:
            raise ValueError(f"sweep: thresholds must be in [0, 1), got {bad[0]}")
        if self.min_annotators < 1:
            raise ValueError(f"min_annotators: must be >= 1, got {self.min_annotators}")


@dataclass
class SplitConfig:
    """Shares of PROMPTS in validation and in the held-out PrincipleBench split (the rest is train)."""

    seed: int = 0
    validation_share: float = 0.1
    bench_share: float = 0.15

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


@dataclass
class EvaluationConfig:
    """Principle -> world property mapping (synthetic evaluation only; see :func:`map_principles`).

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


@dataclass
class PrinciplesConfig:
    """The ``principles`` stage.

    source: ``auto`` (the released principle config when ``principle.jsonl`` has records,
      else extraction from ``feedback.jsonl``), ``feedback`` or ``released``.
    extraction: the extractor (:class:`rlbff_lib.principles.extraction.ExtractionConfig`; its cache is
      ``data/cache/extraction.jsonl``, kept across runs).
    filters, consensus: the filters (module doc). embedder: the sentence embedder of the
      consensus filter (paper: Qwen3-Embedding-8B). split, bench: datasets.
    evaluation: the synthetic world's principle -> property mapping. top_k: principles listed.
    """

    source: Literal["auto", "feedback", "released"] = "auto"
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    top_k: int = 20

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k: must be >= 1, got {self.top_k}")


# ---------------------------------------------------------------- text helpers

_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufeff]")


def clean_text(text: str) -> str:
    """NFKC, invisible/format characters removed, control characters to spaces, whitespace collapsed."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def principle_key(text: str) -> str:
    """The identity of a principle string: cleaned, casefolded, outer punctuation stripped."""
    return clean_text(text).casefold().strip(" \t.,;:!?\"'`()[]")


_HELPFUL_RE = re.compile(
    r"^(?:(?:the )?(?:response|answer|model|assistant)(?:'s| is| being)? )?(?:is |being |be )?"
    r"(?:(?:overall|general|generic|total) )?"
    r"(?:(?:not|slightly|partially|somewhat|mostly|perfectly|very|highly|extremely|fully|completely) )?"
    r"(?:un)?(?:helpful(?:ness)?|useful(?:ness)?)"
    r"(?: (?:overall|in general|response|answer|to the user|level|rating|score))?$")


def is_helpfulness(principle: str) -> bool:
    """The generic helpfulness principle or a close variant ("overall helpfulness", "is helpful",
    "the response is mostly helpful", "unhelpful", "usefulness"); NOT "helpful code comments"."""
    key = re.sub(r"[^\w' ]+", " ", principle_key(principle))
    key = " ".join(key.split())
    return key == HELPFULNESS_PRINCIPLE or bool(_HELPFUL_RE.match(key))


def evidence_score(evidence: str, feedback: str) -> float:
    """RapidFuzz ``partial_ratio`` (0-100) of the evidence within the feedback text."""
    from rapidfuzz import fuzz, utils

    return float(fuzz.partial_ratio(clean_text(evidence), clean_text(feedback), processor=utils.default_process))


def feedback_language(text: str) -> str | None:
    """``en``/``es``/``fr``/``de`` by stopwords, ``other`` when mostly non-Latin letters, else None."""
    from rlbff_lib.synthetic.world import lang_id

    letters = [c for c in text if c.isalpha()]
    if letters and sum(not c.isascii() for c in letters) / len(letters) > 0.3:
        return "other" if lang_id(text) in (None, "en") else lang_id(text)
    return lang_id(text)


# ---------------------------------------------------------------- inputs

@dataclass
class Inputs:
    """What the stage reads: feedback records, released principle records, and the truth rows."""

    feedback: list[dict]
    principle: list[dict]
    truth: list[dict]
    source: str  # "feedback" | "released"


def load_inputs(folder: str | Path, source: str = "auto") -> Inputs:
    """Read and validate ``folder/{feedback,principle,truth}.jsonl`` (a missing file is empty).

    A bad record raises :class:`DataError` naming the file, line and field, before any work.
    """
    from rlbff_lib.data.sources import read_principle_files
    from rlbff_lib.principles.extraction import read_feedback_jsonl
    from rlbff_lib.core.io import read_jsonl

    folder = Path(folder)
    fb_path, pr_path, tr_path = folder / "feedback.jsonl", folder / "principle.jsonl", folder / "truth.jsonl"
    feedback = read_feedback_jsonl(fb_path) if fb_path.exists() else []
    principle = read_principle_files(pr_path) if pr_path.exists() and pr_path.stat().st_size else []
    truth = read_jsonl(tr_path) if tr_path.exists() else []
    if source == "auto":
        source = "released" if principle else "feedback"
    if source == "released" and not principle:
        raise DataError(pr_path, "source is 'released' but there are no principle records")
    if source == "feedback" and not feedback:
        raise DataError(fb_path, "no feedback records (and no released principle records)")
    return Inputs(feedback, principle, truth, source)


class ExtractionFailed(RuntimeError):
    """The share of failed extractions is above the threshold; the message names the items."""


def check_extraction(rows: list[dict], max_failure_share: float, show: int = 10) -> dict:
    """Counts of ``ok``/``failed``/``skipped`` rows; raises :class:`ExtractionFailed` naming the
    failed items and their reasons when failed / (ok + failed) > ``max_failure_share``."""
    counts = Counter(r["status"] for r in rows)
    asked = counts["ok"] + counts["failed"]
    share = counts["failed"] / asked if asked else 0.0
    failed = [r for r in rows if r["status"] == "failed"]
    out = {"ok": counts["ok"], "failed": counts["failed"], "skipped": counts["skipped"],
           "failure_share": round(share, 6), "failure_threshold": max_failure_share,
           "failed_examples": [{"item_id": r["item_id"], "reason": r.get("reason", "")} for r in failed[:show]],
           "skip_reasons": dict(Counter(r.get("reason", "") for r in rows if r["status"] == "skipped"))}
    if share > max_failure_share:
        listing = "; ".join(f"{r['item_id']}: {r.get('reason') or 'no reason'}" for r in failed[:show])
        more = f" (and {len(failed) - show} more)" if len(failed) > show else ""
        raise ExtractionFailed(f"extraction failed for {counts['failed']} of {asked} feedback texts "
                               f"(share {share:.4f} > extraction.failure_threshold {max_failure_share}): "
                               f"{listing}{more}")
    return out


# ---------------------------------------------------------------- filters 0-3

def candidates_from_rows(rows: list[dict], max_principle_chars: int = 100) -> tuple[list[dict], dict]:
    """Flatten extraction rows into principle candidates, sanitising (filter 0).

    Each candidate: ``cand_id, item_id, record_id, response, annotator, principle, key,
    evidence, fulfillment, fate`` where ``fate`` is ``None`` while it survives and else the
    step that dropped it, with ``reason``. Returns (candidates incl. dropped, counts).
    """
    cands: list[dict] = []
    counts = Counter()
    for row in rows:
        if row.get("status") != "ok":
            continue
        seen: set[str] = set()
        for k, p in enumerate(row.get("principles") or []):
            cand = {"cand_id": f"{row['item_id']}#{k}", "item_id": row["item_id"], "record_id": row["record_id"],
                    "response": row["response"], "annotator": row["annotator"], "principle": "", "key": "",
                    "evidence": "", "fulfillment": None, "fate": None, "reason": ""}
            cands.append(cand)
            if not isinstance(p, dict) or not all(isinstance(p.get(f), str) for f in
                                                  ("principle", "evidence", "fulfillment")):
                cand.update(fate="valid", reason="malformed")
                continue
            raw_principle = p["principle"]
            principle, evidence = clean_text(raw_principle), clean_text(p["evidence"])
            if principle != " ".join(raw_principle.split()) or evidence != " ".join(p["evidence"].split()):
                counts["unicode_normalized"] += 1
            fulfillment = {"yes": "Yes", "no": "No", "partially": "Partially"}.get(p["fulfillment"].strip().lower())
            cand.update(principle=principle, key=principle_key(principle), evidence=evidence, fulfillment=fulfillment)
            if fulfillment is None:
                cand.update(fate="valid", reason="malformed")
            elif not cand["key"]:
                cand.update(fate="valid", reason="empty_principle")
            elif len(principle) > max_principle_chars:
                cand.update(fate="valid", reason="overlong_principle")
            elif cand["key"] in seen:
                cand.update(fate="valid", reason="duplicate_in_feedback")
            else:
                seen.add(cand["key"])
    counts.update(c["reason"] for c in cands if c["fate"] == "valid")
    return cands, dict(counts)


def apply_filters(cands: list[dict], texts: dict[str, str], evidence_threshold: float = 60.0) -> dict:
    """Filters 1-3 in order (evidence, helpfulness, Partially) on the surviving candidates.

    ``texts`` maps a feedback ``item_id`` to its text. Sets ``fate``/``reason`` and the
    candidate's ``evidence_score``; returns the count of drops per step.
    """
    drops = Counter()
    for c in cands:
        if c["fate"] is not None:
            continue
        c["evidence_score"] = round(evidence_score(c["evidence"], texts.get(c["item_id"], "")), 2)
        if not c["evidence_score"] > evidence_threshold:
            c.update(fate="evidence", reason="evidence_not_found")
        elif is_helpfulness(c["principle"]):
            c.update(fate="helpfulness", reason="helpfulness")
        elif c["fulfillment"] == "Partially":
            c.update(fate="partially", reason="partially")
        drops[c["fate"]] += c["fate"] is not None
    return {k: drops.get(k, 0) for k in ("evidence", "helpfulness", "partially")}


# ---------------------------------------------------------------- filter 4: consensus

def participants_by_response(rows: list[dict]) -> dict[tuple, set]:
    """(record_id, response) -> annotators whose feedback was extracted (status ok)."""
    out: dict[tuple, set] = defaultdict(set)
    for r in rows:
        if r.get("status") == "ok":
            out[(r["record_id"], r["response"])].add(r["annotator"])
    return out


class Embeddings:
    """Each distinct string embedded once (L2-normalised rows; dot product = cosine)."""

    def __init__(self, strings, model, batch_size: int = 128):
        from rlbff_lib.models.embed import embed_unique

        self.strings, self.matrix = embed_unique(strings, model, batch_size)
        self.index = {s: i for i, s in enumerate(self.strings)}

    def rows(self, strings: list[str]):
        return self.matrix[[self.index[s] for s in strings]]


def consensus_scores(cands: list[dict], participants: dict[tuple, set], emb: Embeddings,
                     min_annotators: int = 2) -> dict:
    """Set ``consensus_score`` on every candidate that passed filters 0-3 (see the module doc).

    score = min over the other participants b of (max cosine to b's principles); -1.0 when
    some participant has no principle left; 1.0 when there is no other participant and
    ``min_annotators`` is 1; ``None`` (never kept) when the response has fewer than
    ``min_annotators`` participants. Returns counts of the edge cases.
    """
    import numpy as np

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cands:
        if c["fate"] is None:
            groups[(c["record_id"], c["response"])].append(c)
    stats = Counter()
    for key, group in groups.items():
        people = participants.get(key, set()) | {c["annotator"] for c in group}
        if len(people) < min_annotators:
            for c in group:
                c["consensus_score"] = None
            stats["responses_too_few_annotators"] += 1
            continue
        by_annot: dict[Any, list[int]] = defaultdict(list)
        for i, c in enumerate(group):
            by_annot[c["annotator"]].append(i)
        silent = [a for a in people if a not in by_annot]
        stats["responses_with_silent_participant"] += bool(silent)
        sims = emb.rows([c["principle"] for c in group]) @ emb.rows([c["principle"] for c in group]).T
        for i, c in enumerate(group):
            others = [b for b in people if b != c["annotator"]]
            if not others:
                c["consensus_score"] = 1.0
            elif any(b in silent for b in others):
                c["consensus_score"] = -1.0
            else:  # cosine of float32 unit vectors: clipped to [-1, 1], rounded (stable across BLAS builds)
                score = float(min(np.max(sims[i, by_annot[b]]) for b in others))
                c["consensus_score"] = round(min(1.0, max(-1.0, score)), 6)
    return dict(stats)


def consensus_kept(c: dict, threshold: float) -> bool:
    """Does a candidate that passed filters 0-3 pass consensus at ``threshold``?"""
    score = c.get("consensus_score")
    return score is not None and score > threshold


def apply_consensus(cands: list[dict], threshold: float) -> int:
    """Set the final fate of the survivors: ``kept`` or dropped at ``consensus``; returns kept."""
    kept = 0
    for c in cands:
        if c["fate"] is not None:
            continue
        if consensus_kept(c, threshold):
            c["fate"] = "kept"
            kept += 1
        else:
            c["fate_pending"] = True
    for c in cands:
        if c.pop("fate_pending", False):
            c.update(fate="consensus", reason="too_few_annotators" if c.get("consensus_score") is None
                     else "no_consensus")
    return kept


# ---------------------------------------------------------------- step 5: merge into items

def merge_candidates(cands: list[dict], records: dict[Any, dict]) -> tuple[list[dict], int]:
    """One item per (record, response, principle key) with the majority label; ties dropped.

    Returns (items, ties). Items carry the record's prompt and the response text.
    """
    from rlbff_lib.data.sources import prompt_key

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cands:
        groups[(c["record_id"], c["response"], c["key"])].append(c)
    items, ties = [], 0
    for (rid, resp, key), group in groups.items():
        votes = Counter(c["fulfillment"] for c in group)
        if votes["Yes"] == votes["No"]:
            ties += 1
            continue
        rec = records[rid]
        surface = Counter(c["principle"] for c in group).most_common(1)[0][0]
        items.append({
            "item_id": "pr-" + stable_hash(rid, resp, key)[:16], "prompt_id": prompt_key(rec["context"]),
            "domain": rec["domain"], "context": rec["context"], "response": rec[f"response{resp}"],
            "principle": surface, "label": "Yes" if votes["Yes"] > votes["No"] else "No", "property": None,
            "record_id": rid, "response_index": resp, "language": rec.get("language"),
            "votes": {"Yes": votes["Yes"], "No": votes["No"]},
        })
    return items, ties


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
            "language": rec.get("language"), "votes": {"Yes": votes["Yes"], "No": votes["No"]},
        })
    return items, ties


# ---------------------------------------------------------------- splits and datasets

def split_of(prompt_id: str, cfg: SplitConfig) -> str:
    """``train`` | ``validation`` | ``bench`` for a prompt: a hash of (seed, prompt_id)."""
    u = int(stable_hash("rlbff-prompt-split", cfg.seed, prompt_id)[:13], 16) / 16 ** 13
    if u < cfg.bench_share:
        return "bench"
    if u < cfg.bench_share + cfg.validation_share:
        return "validation"
    return "train"


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


def principlebench_pairs(bench_items: list[dict]) -> list[dict]:
    """Pairs from held-out items: same record and principle, Yes for one response, No for the other."""
    by_key: dict[tuple, dict] = {}
    for it in bench_items:
        if it.get("response_index") is not None:
            by_key[(it["record_id"], principle_key(it["principle"]), it["response_index"])] = it
    pairs = []
    for (rid, key, resp), a in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        if resp != 1 or (rid, key, 2) not in by_key:
            continue
        b = by_key[(rid, key, 2)]
        if a["label"] == b["label"]:
            continue
        chosen, rejected = (a, b) if a["label"] == "Yes" else (b, a)
        pairs.append({"pair_id": "pb-" + stable_hash(rid, key)[:16], "prompt_id": a["prompt_id"],
                      "domain": a["domain"], "context": a["context"], "principle": a["principle"],
                      "chosen": chosen["response"], "rejected": rejected["response"],
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
                      "record_id": rec["id"]})
        counts["pairs"] += 1
    return pairs, {"pairs": counts["pairs"], "ties_dropped": counts["ties"], "unlabelled_dropped": counts["unlabelled"]}


def split_rows(rows: list[dict], cfg: SplitConfig) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in rows:
        out[split_of(r["prompt_id"], cfg)].append(r)
    return out


# ---------------------------------------------------------------- synthetic evaluation

# Words by which a principle names a world property (evaluation only; regexes matched at word starts,
# case-insensitive). A principle that names one or more properties maps to the most similar of them.
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
    """principle -> ``{"property", "how", "similarity"}`` (synthetic world; evaluation only).

    In order: (1) ``world.match_property`` (an exact world phrasing) -> ``how="exact"``;
    (2) properties the principle names by one of their :data:`PROPERTY_TERMS` (e.g.
    "conciseness" -> ``concise``, "uses code blocks" -> ``fenced_code``, "correctness" ->
    ``arithmetic_correct``): the most similar of them (max cosine to its phrasings) if that
    similarity is >= ``mention_min_similarity`` -> ``"mention"``; (3) the most similar
    property if >= ``map_threshold`` -> ``"similarity"``; else ``None``. The rules extractor
    names principles generically ("provides examples"), which (1) alone never maps.
    """
    from rlbff_lib.synthetic import world

    cfg = cfg or EvaluationConfig()
    phrasings = world.all_phrasings()
    uniq = list(dict.fromkeys(principles))
    emb = Embeddings([p for _, p in phrasings] + uniq, model, batch_size)
    names = list(world.PROPERTIES)
    ph_rows = emb.rows([p for _, p in phrasings])
    out = {}
    sims_all = emb.rows(uniq) @ ph_rows.T if uniq else None
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


def truth_index(truth: list[dict]) -> dict[tuple, dict]:
    """(record_id, response index) -> truth row."""
    return {(t["id"], t["response"]): t for t in truth}


def judge(principle: str, label: str, truth_row: dict | None, mapping: dict[str, dict]) -> str:
    """``correct`` | ``wrong_label`` | ``not_applicable`` (property not of this response) |
    ``unmapped`` (names no property) | ``no_truth``."""
    if truth_row is None:
        return "no_truth"
    prop = (mapping.get(principle) or {}).get("property")
    if prop is None:
        return "unmapped"
    if prop not in truth_row["properties"]:
        return "not_applicable"
    return "correct" if label == ("Yes" if truth_row["properties"][prop] else "No") else "wrong_label"


def comment_kind(cand: dict, truth_row: dict | None) -> str:
    """The kind of the world remark a candidate came from (its evidence holds the remark text):
    ``salient`` | ``mistake`` | ``partial`` | ``offtopic`` | ``other`` (neutral sentence, helpfulness)."""
    if truth_row is None:
        return "other"
    ev = cand.get("evidence", "")
    for c in truth_row["comments"]:
        if c["annotator"] == cand["annotator"] and c["text"] and c["text"] in ev:
            return c["kind"]
    return "other"


def accuracy(items: list[dict], tidx: dict, mapping: dict) -> dict:
    """Share of items whose principle maps to a property of the response with the checker's label."""
    verdicts = Counter(judge(i["principle"], i["label"], tidx.get((i["record_id"], i["response_index"])), mapping)
                       for i in items)
    n = sum(verdicts.values())
    return {"items": n, "accuracy": round(verdicts["correct"] / n, 4) if n else None,
            "verdicts": dict(sorted(verdicts.items()))}


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
                     "salient": len(s), "recall": round(len(s & found) / len(s), 4) if s else None}
    return out


# ---------------------------------------------------------------- summaries

def _mean_std(xs: list[float]) -> dict:
    return {"mean": round(statistics.fmean(xs), 4) if xs else None,
            "std": round(statistics.pstdev(xs), 4) if len(xs) > 1 else (0.0 if xs else None), "n": len(xs)}


def per_feedback(cands: list[dict], rows: list[dict], fates: tuple[str, ...]) -> dict:
    """Principles per feedback text (ok texts) among candidates whose fate is in ``fates``:
    over all ok texts, and over the texts that keep at least one."""
    n = Counter(c["item_id"] for c in cands if c["fate"] in fates)
    all_ok = [n.get(r["item_id"], 0) for r in rows if r["status"] == "ok"]
    return {"all_texts": _mean_std(all_ok), "texts_with_one_or_more": _mean_std([x for x in all_ok if x > 0])}


def label_balance(labels: list[str]) -> dict:
    c = Counter(labels)
    n = sum(c.values())
    return {"n": n, **{f"{k.lower()}_share": round(c[k] / n, 4) if n else None for k in ("Yes", "No", "Partially")
                       if k != "Partially" or c[k]}}


def top_principles(items: list[dict], k: int) -> dict:
    c = Counter(i["principle"] for i in items)
    yes = Counter(i["principle"] for i in items if i["label"] == "Yes")
    return {p: {"items": n, "yes_share": round(yes[p] / n, 4)} for p, n in c.most_common(k)}


def funnel(cands: list[dict]) -> dict:
    """Counts after each step (keys sort in step order), removal shares of the step's input
    and of all extracted, with the paper's removal shares beside (our reading: of the step's input)."""
    total = len(cands)
    fate_counts = Counter(c["fate"] for c in cands)
    out, remaining = {}, total
    out["0_extracted"] = {"count": total}
    for i, step in enumerate(("valid", "evidence", "helpfulness", "partially", "consensus"), 1):
        removed = fate_counts.get(step, 0)
        entering = remaining
        remaining -= removed
        row = {"count": remaining, "removed": removed,
               "removed_share_of_step": round(removed / entering, 4) if entering else None,
               "removed_share_of_extracted": round(removed / total, 4) if total else None}
        if step in PAPER["funnel_removed"]:
            row["paper_removed_share"] = PAPER["funnel_removed"][step]
        out[f"{i}_{step}"] = row
    return out


# ---------------------------------------------------------------- the whole stage

@dataclass
class Result:
    """Everything the stage produced; :func:`write_outputs` writes it, the notebook shows it."""

    source: str
    rows: list[dict]           # extraction rows, one per feedback text
    cands: list[dict]          # every extracted principle with its fate and consensus score
    items: list[dict]          # the merged dataset items (all splits)
    splits: dict[str, list[dict]]
    bench: list[dict]
    bench_pairs: list[dict]
    pairs: dict[str, list[dict]]
    mapping: dict[str, dict]   # principle -> world property (synthetic world only)
    curve: dict[str, dict]     # a fine threshold grid (figure)
    metrics: dict


def sweep(survivors: list[dict], records: dict, thresholds, tidx: dict | None = None,
          mapping: dict | None = None) -> dict[str, dict]:
    """Per consensus threshold: principles kept, merged items and (synthetic world) accuracy.

    ``survivors`` are the candidates that passed filters 0-3 with their consensus scores,
    so each threshold costs one comparison per principle and one merge.
    """
    out = {}
    for t in thresholds:
        kept = [c for c in survivors if consensus_kept(c, t)]
        its, ties = merge_candidates(kept, records)
        row = {"principles": len(kept), "items": len(its), "label_ties": ties}
        if tidx is not None and mapping is not None:
            row["accuracy"] = accuracy(its, tidx, mapping)["accuracy"]
            row["principle_accuracy"] = accuracy(_as_items(kept), tidx, mapping)["accuracy"]
        out[f"{t:g}"] = row
    return out


def _as_items(cands: list[dict]) -> list[dict]:
    """Annotator-level candidates in the item shape :func:`accuracy` reads."""
    return [{"principle": c["principle"], "label": c["fulfillment"], "record_id": c["record_id"],
             "response_index": c["response"]} for c in cands]


CURVE = [round(0.05 * i, 2) for i in range(20)]  # 0.0 .. 0.95


def build_datasets(items: list[dict], records: list[dict], cfg: PrinciplesConfig, metrics: dict) -> dict:
    """Split items and preference pairs by prompt; PrincipleBench from the held-out prompts."""
    splits = split_rows(items, cfg.split)
    bench, bench_stats = build_principlebench(splits["bench"], cfg.bench, cfg.split.seed)
    bench_pairs = principlebench_pairs(splits["bench"])
    pairs, pair_counts = preference_pairs(records)
    pair_splits = split_rows(pairs, cfg.split)
    prompts = {s: len({r["prompt_id"] for r in splits[s]} | {p["prompt_id"] for p in pair_splits[s]})
               for s in SPLITS}
    ybench = sum(i["label"] == "Yes" for i in bench)
    metrics["datasets"] = {
        "items": len(items), "train": len(splits["train"]), "validation": len(splits["validation"]),
        "bench_pool": len(splits["bench"]), "principlebench": len(bench), "principlebench_pairs": len(bench_pairs),
        "pairs_train": len(pair_splits["train"]), "pairs_validation": len(pair_splits["validation"]),
        "pairs_bench": len(pair_splits["bench"]), "prompts_per_split": prompts,
        "label_balance": {s: label_balance([i["label"] for i in splits[s]]) for s in ("train", "validation")},
    }
    metrics["pairs"] = pair_counts
    metrics["principlebench"] = {
        "size": len(bench), "yes_share": round(ybench / len(bench), 4) if bench else None,
        "yes_share_target": cfg.bench.yes_share, "per_domain": bench_stats, "pairs": len(bench_pairs),
        "description": (
            f"Held-out prompts (split 'bench': {cfg.split.bench_share:.0%} of prompts, chosen by a hash of the "
            "prompt, never in train/validation); their principle items after all filters and consensus; per "
            f"domain the majority label subsampled to a Yes share of {cfg.bench.yes_share} (a domain lacking one "
            "label is kept as is, 'balanced: false'); scored pointwise (sign of the reward vs the label). "
            "principlebench_pairs.jsonl: principles of those prompts judged Yes for one response and No for the "
            "other, scored pairwise."),
    }
    return {"splits": splits, "bench": bench, "bench_pairs": bench_pairs, "pairs": pair_splits}


def run_principles(cfg: PrinciplesConfig, inputs: Inputs, model, cache_path: str | Path | None,
                   log: Callable[[str], None] = print, extraction_progress=None) -> Result:
    """The stage without writing: extraction (or the released items), filters, consensus, merge,
    datasets and, in the synthetic world, the evaluation. ``model``: the sentence embedder
    (unused for the released config)."""
    metrics: dict = {"source": inputs.source}
    records = {r.get("id", i): r for i, r in enumerate(inputs.feedback)}
    rows: list[dict] = []
    cands: list[dict] = []
    mapping: dict = {}
    curve: dict = {}
    if inputs.source == "released":
        items, ties = released_items(inputs.principle)
        log(f"released principle config: {len(inputs.principle)} records -> {len(items)} items")
        metrics["released"] = {"records": len(inputs.principle), "items": len(items), "label_ties": ties,
                               "paper_items": PAPER["released_items"]}
        metrics["labels"] = {"items": label_balance([i["label"] for i in items])}
    else:
        rows = extract(inputs.feedback, cfg, cache_path, metrics, log, extraction_progress)
        cands, items, survivors = filter_and_merge(rows, records, cfg, model, metrics, log)
        tidx = truth_index(inputs.truth) if inputs.truth else None
        if tidx is not None:
            mapping = evaluate_synthetic(cands, items, records, tidx, model, cfg, metrics)
        metrics["consensus"]["sweep"] = sweep(survivors, records, cfg.consensus.sweep, tidx, mapping or None)
        for t, row in metrics["consensus"]["sweep"].items():
            row["paper_items"] = paper_sweep_items(t)
        curve = sweep(survivors, records, CURVE, tidx, mapping or None)
    metrics.setdefault("top_principles", {})["after_consensus"] = top_principles(items, cfg.top_k)
    ds = build_datasets(items, inputs.feedback, cfg, metrics)
    return Result(inputs.source, rows, cands, items, ds["splits"], ds["bench"], ds["bench_pairs"], ds["pairs"],
                  mapping, curve, metrics)


def extract(feedback: list[dict], cfg: PrinciplesConfig, cache_path, metrics: dict,
            log: Callable[[str], None] = print, progress=None) -> list[dict]:
    """Run the extractor on every feedback text (cached); fail loudly past the failure threshold."""
    from rlbff_lib.principles.extraction import feedback_items, run_extraction

    fitems = feedback_items(feedback)
    log(f"extraction ({cfg.extraction.backend}, {cfg.extraction.cache_model}): {len(fitems)} feedback texts")
    rows, summary = run_extraction(fitems, cfg.extraction, cache_path, progress=progress)
    check = check_extraction(rows, cfg.extraction.failure_threshold)
    log(f"extraction: {check['ok']} ok, {check['failed']} failed, {check['skipped']} skipped, "
        f"{summary['cache_hits']} from the cache")
    langs = Counter(feedback_language(t["text"]) for t in fitems if isinstance(t["text"], str) and t["text"].strip())
    metrics["extraction"] = {k: v for k, v in summary.items() if k not in ("elapsed_s", "passed")} | check
    metrics["feedback"] = {"texts": len(fitems), "non_english": sum(v for k, v in langs.items() if k not in ("en", None)),
                           "languages": {str(k): v for k, v in langs.most_common()}}
    return rows


def filter_and_merge(rows: list[dict], records: dict, cfg: PrinciplesConfig, model, metrics: dict,
                     log: Callable[[str], None] = print) -> tuple[list[dict], list[dict], list[dict]]:
    """Filters 0-4 and the merge; returns (all candidates, items, survivors of filters 0-3)."""
    cands, sanitize = candidates_from_rows(rows, cfg.extraction.max_principle_chars)
    apply_filters(cands, {r["item_id"]: r["text"] for r in rows}, cfg.filters.evidence_threshold)
    survivors = [c for c in cands if c["fate"] is None]
    log(f"filters: {len(cands)} principles extracted, {len(survivors)} left after evidence, helpfulness, Partially")
    emb = Embeddings([c["principle"] for c in survivors], model, cfg.embedder.batch_size)
    log(f"embedded {len(emb.strings)} distinct principles ({cfg.embedder.name_or_path})")
    edge = consensus_scores(cands, participants_by_response(rows), emb, cfg.consensus.min_annotators)
    apply_consensus(cands, cfg.consensus.threshold)
    kept = [c for c in cands if c["fate"] == "kept"]
    items, ties = merge_candidates(kept, records)
    log(f"consensus > {cfg.consensus.threshold}: {len(kept)} principles kept -> {len(items)} items")
    metrics["funnel"] = funnel(cands)
    n = metrics["funnel"]["0_extracted"]["count"]
    metrics["funnel"]["6_items"] = {
        "count": len(items), "label_ties_dropped": ties, "share_of_extracted": round(len(items) / n, 4) if n else None,
        "paper_count": PAPER["items_after_consensus"],
        "paper_share_of_extracted": round(PAPER["items_after_consensus"] / PAPER["principles_extracted"], 4),
        "note": "one item per (response, principle), majority label; paper: ~33k items of ~1.2M principles"}
    metrics["drops"] = {**{k: sanitize.get(k, 0) for k in ("malformed", "empty_principle", "overlong_principle",
                                                           "duplicate_in_feedback")},
                        "evidence_not_found": sum(c["fate"] == "evidence" for c in cands),
                        "helpfulness": sum(c["fate"] == "helpfulness" for c in cands),
                        "partially": sum(c["fate"] == "partially" for c in cands),
                        "no_consensus": sum(c["reason"] == "no_consensus" for c in cands),
                        "too_few_annotators": sum(c["reason"] == "too_few_annotators" for c in cands),
                        "label_ties": ties}
    metrics["sanitizing"] = {"unicode_normalized": sanitize.get("unicode_normalized", 0)}
    metrics["consensus"] = {"threshold": cfg.consensus.threshold, "min_annotators": cfg.consensus.min_annotators,
                            "embedder": cfg.embedder.name_or_path, "distinct_principles": len(emb.strings), **edge}
    metrics["labels"] = {
        "after_partially": {**label_balance([c["fulfillment"] for c in survivors]),
                            "paper_yes_share": PAPER["labels_after_partially"]["yes"],
                            "paper_no_share": PAPER["labels_after_partially"]["no"]},
        "after_consensus": label_balance([c["fulfillment"] for c in kept]),
        "items": label_balance([i["label"] for i in items])}
    metrics["principles_per_feedback"] = {
        "after_filters": per_feedback(cands, rows, ("consensus", "kept")),
        "after_consensus": per_feedback(cands, rows, ("kept",)),
        "paper": PAPER["principles_per_feedback"],
        "note": "per extracted feedback text; the paper's base is not stated"}
    metrics["top_principles"] = {"after_partially": dict(Counter(c["principle"] for c in survivors)
                                                         .most_common(cfg.top_k))}
    return cands, items, survivors


def evaluate_synthetic(cands: list[dict], items: list[dict], records: dict, tidx: dict, model,
                       cfg: PrinciplesConfig, metrics: dict) -> dict:
    """Score the principles against the world's ground truth (evaluation only): sets each item's
    ``property`` (when the mapped property applies to its response) and ``metrics["synthetic"]``;
    returns the principle -> property mapping."""
    survivors = [c for c in cands if c["fate"] in ("consensus", "kept")]
    kept = [c for c in survivors if c["fate"] == "kept"]
    removed = [c for c in survivors if c["fate"] == "consensus"]
    mapping = map_principles([c["principle"] for c in survivors], model, cfg.evaluation, cfg.embedder.batch_size)
    for it in items:
        prop = mapping.get(it["principle"], {}).get("property")
        row = tidx.get((it["record_id"], it["response_index"]))
        it["property"] = prop if row is not None and prop in row["properties"] else None
    items_before, _ = merge_candidates(survivors, records)
    before, after = accuracy(items_before, tidx, mapping), accuracy(items, tidx, mapping)
    kinds: dict[str, Counter] = defaultdict(Counter)
    for c in survivors:
        k = comment_kind(c, tidx.get((c["record_id"], c["response"])))
        kinds[k]["after_partially"] += 1
        kinds[k]["kept"] += c["fate"] == "kept"
    metrics["synthetic"] = {
        "accuracy_before_consensus": before["accuracy"], "accuracy_after_consensus": after["accuracy"],
        "items_before_consensus": before["items"], "items_after_consensus": after["items"],
        "verdicts_before_consensus": before["verdicts"], "verdicts_after_consensus": after["verdicts"],
        "principle_accuracy_before_consensus": accuracy(_as_items(survivors), tidx, mapping)["accuracy"],
        "principle_accuracy_after_consensus": accuracy(_as_items(kept), tidx, mapping)["accuracy"],
        "removed_by_consensus": accuracy(_as_items(removed), tidx, mapping),
        "remark_kinds": {k: {"after_partially": v["after_partially"], "kept": v["kept"],
                             "kept_share": round(v["kept"] / v["after_partially"], 4) if v["after_partially"] else None}
                         for k, v in sorted(kinds.items())},
        "per_property_before_consensus": per_property(items_before, tidx, mapping),
        "per_property_after_consensus": per_property(items, tidx, mapping),
        "mapping": dict(sorted(mapping.items())),
        "mapping_methods": {str(k): v for k, v in Counter(v["how"] for v in mapping.values()).items()},
        "definition": (
            "accuracy: share of items whose principle maps (map_principles: exact world phrasing, else a property "
            "the principle names, else the nearest property by cosine >= evaluation.map_threshold) to a "
            "ground-truth property of the response AND whose label equals that property's checker value. "
            "'before' = the items the same merge gives without the consensus step. principle_accuracy: the same "
            "on annotator-level principles. recall (per property): share of (response, property) pairs with a "
            "salient remark (an annotator remark stating the true polarity) that have a correct item. "
            "remark_kinds: which world remark each principle came from (its evidence holds the remark)."),
    }
    return mapping


def write_outputs(result: Result, folder: str | Path) -> dict[str, int]:
    """Write every dataset file atomically into ``folder``; returns rows per file."""
    from rlbff_lib.core.io import write_jsonl

    folder = Path(folder)
    files = {
        "train.jsonl": result.splits["train"], "validation.jsonl": result.splits["validation"],
        "principlebench.jsonl": result.bench, "principlebench_pairs.jsonl": result.bench_pairs,
        **{f"pairs_{s}.jsonl": result.pairs[s] for s in SPLITS},
        "candidates.jsonl": [{k: c.get(k) for k in ("cand_id", "record_id", "response", "annotator", "principle",
                                                    "fulfillment", "evidence", "evidence_score", "fate", "reason",
                                                    "consensus_score")} for c in result.cands],
    }
    return {name: write_jsonl(folder / name, rows) for name, rows in files.items()}
