"""Filter 4 of the principles stage: cross-annotator consensus by embedding similarity (paper §3).

Every principle string is embedded once (:class:`Embeddings`). The *participants* of a response are
its annotators whose feedback text was extracted (status ``ok``); annotators whose text was skipped
(empty, too long) or whose extraction failed are NOT participants: nothing is known of their
opinion, so they neither support nor veto. A principle of participant ``a`` is kept iff every other
participant ``b`` has at least one principle (among those that passed filters 0-3) with cosine
similarity ``> threshold``. Its *consensus score* is ``min over b of max over b's principles of
cosine``, so a threshold sweep is one comparison per principle.

Edge cases: a participant left with no principle after filters 0-3 (one who only judged helpfulness,
or only said "Partially") supports nothing, so it vetoes every principle of the others (score -1);
a response with fewer than ``min_annotators`` participants keeps nothing (default 2: a single
annotator cannot agree with anyone; ``min_annotators: 1`` gives the literal reading, where "every
other annotator" is vacuously true). Labels are not compared: annotators agree on *which* principle
matters; the merge into items settles the label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConsensusConfig:
    """threshold: cosine similarity a principle needs with some principle of EVERY other annotator
    (paper 0.8). sweep: thresholds also measured by the stage (items kept, synthetic accuracy).
    min_annotators: participants a response needs (module doc)."""

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


class Embeddings:
    """Each distinct string embedded once (L2-normalised rows; dot product = cosine)."""

    def __init__(self, strings, model, batch_size: int = 128):
        from rlbff_lib.models.embed import embed_unique

        self.model, self.batch_size = model, batch_size
        self.strings, self.matrix = embed_unique(strings, model, batch_size)
        self.index = {s: i for i, s in enumerate(self.strings)}

    def add(self, strings) -> None:
        """Embed the strings not embedded yet."""
        import numpy as np

        from rlbff_lib.models.embed import embed_unique

        new, matrix = embed_unique([s for s in strings if s not in self.index], self.model, self.batch_size)
        if new:
            self.index.update({s: len(self.strings) + i for i, s in enumerate(new)})
            self.strings += new
            self.matrix = np.concatenate([self.matrix, matrix]) if len(self.matrix) else matrix

    def rows(self, strings: list[str]):
        return self.matrix[[self.index[s] for s in strings]]

    def similarity(self, a: list[str], b: list[str]):
        """Cosine matrix [len(a), len(b)]."""
        return self.rows(a) @ self.rows(b).T


def participants_by_response(rows: list[dict]) -> dict[tuple, set]:
    """(record_id, response) -> annotators whose feedback was extracted (status ok)."""
    out: dict[tuple, set] = defaultdict(set)
    for r in rows:
        if r.get("status") == "ok":
            out[(r["record_id"], r["response"])].add(r["annotator"])
    return out


def score_survivors(survivors: list[dict], participants: dict[tuple, set], emb: Embeddings,
                    min_annotators: int = 2) -> tuple[dict[str, float | None], dict]:
    """``cand_id -> consensus score`` of the given survivors of filters 0-3 (module doc), and counts of
    the edge cases. -1.0: some other participant has no principle left; 1.0: no other participant
    and ``min_annotators`` is 1; ``None`` (never kept): fewer than ``min_annotators`` participants."""

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in survivors:
        groups[(c["record_id"], c["response"])].append(c)
    scores: dict[str, float | None] = {}
    stats = Counter()
    for key, group in groups.items():
        people = participants.get(key, set()) | {c["annotator"] for c in group}
        if len(people) < min_annotators:
            scores.update({c["cand_id"]: None for c in group})
            stats["responses_too_few_annotators"] += 1
            continue
        by_annot: dict[Any, list[int]] = defaultdict(list)
        for i, c in enumerate(group):
            by_annot[c["annotator"]].append(i)
        silent = [a for a in people if a not in by_annot]
        stats["responses_with_silent_participant"] += bool(silent)
        names = [c["principle"] for c in group]
        sims = emb.similarity(names, names)
        best = {b: sims[:, idx].max(axis=1) for b, idx in by_annot.items()}  # best match in b's principles
        for i, c in enumerate(group):
            others = [b for b in people if b != c["annotator"]]
            if not others:
                scores[c["cand_id"]] = 1.0
            elif any(b in silent for b in others):
                scores[c["cand_id"]] = -1.0
            else:  # cosine of float32 unit vectors: clipped to [-1, 1], rounded (stable across BLAS builds)
                score = float(min(best[b][i] for b in others))
                scores[c["cand_id"]] = round(min(1.0, max(-1.0, score)), 6)
    return scores, dict(stats)


def consensus_scores(cands: list[dict], participants: dict[tuple, set], emb: Embeddings,
                     min_annotators: int = 2) -> dict:
    """Set ``consensus_score`` on every candidate that passed filters 0-3; returns edge-case counts."""
    survivors = [c for c in cands if c["fate"] is None]
    scores, stats = score_survivors(survivors, participants, emb, min_annotators)
    for c in survivors:
        c["consensus_score"] = scores[c["cand_id"]]
    return stats


def consensus_kept(c: dict, threshold: float) -> bool:
    """Does a candidate with a consensus score pass consensus at ``threshold``?"""
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
            c.update(fate="consensus", reason="too_few_annotators" if c.get("consensus_score") is None
                     else "no_consensus")
    return kept
