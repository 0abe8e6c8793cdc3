"""Filters 0-3 of the principles stage: sanitising, evidence match, helpfulness, Partially (paper §3).

Each extracted principle becomes a *candidate* dict; a filter that drops it sets its ``fate`` (the
step's name) and ``reason``; ``fate`` stays ``None`` while it survives. In order:

0. sanitising (not a paper step): a principle that is malformed, empty, longer than
   ``extraction.max_principle_chars``, or a repeat of an earlier principle of the same feedback text
   (case/space/unicode-insensitive; the first one is kept) is dropped (``fate="valid"``); principle
   and evidence strings are NFKC-normalised, invisible characters removed, whitespace collapsed
   (counted as ``unicode_normalized``, not dropped).
1. evidence: RapidFuzz ``fuzz.partial_ratio(evidence, feedback) > evidence_threshold`` on the
   sanitised strings, as the paper states (``evidence_match: strict``); ``lenient`` passes both through
   ``rapidfuzz.utils.default_process`` first (lowercase, punctuation to spaces).
2. helpfulness: the generic helpfulness principle and close variants (:func:`is_helpfulness`).
3. Partially: principles judged ``Partially``.

Every valid candidate also gets ``fails``: each of the steps 1-3 it fails on its own, so the
synthetic evaluation can measure the pipeline with one filter switched off.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from rlbff_lib.principles.extraction import HELPFULNESS_PRINCIPLE

FILTER_STEPS = ("evidence", "helpfulness", "partially")


@dataclass
class FilterConfig:
    """evidence_threshold: keep a principle when ``partial_ratio(evidence, feedback)`` is above this
    (0-100; paper 60). evidence_match: ``strict`` (the paper: plain ``partial_ratio``) or ``lenient``
    (both strings lowercased, punctuation to spaces first)."""

    evidence_threshold: float = 60.0
    evidence_match: Literal["strict", "lenient"] = "strict"

    def __post_init__(self):
        if not 0.0 <= self.evidence_threshold < 100.0:
            raise ValueError(f"evidence_threshold: must be in [0, 100), got {self.evidence_threshold}")
        if self.evidence_match not in ("strict", "lenient"):
            raise ValueError(f"evidence_match: must be 'strict' or 'lenient', got {self.evidence_match!r}")


# ---------------------------------------------------------------- text helpers

_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufeff]")


def clean_text(text: str) -> str:
    """NFKC, invisible/format characters removed, control characters to spaces, whitespace collapsed."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    if not text.isprintable():  # the per-character pass only where needed (str.isprintable is fast)
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


def evidence_score(evidence: str, feedback: str, lenient: bool = False, cleaned: bool = False) -> float:
    """RapidFuzz ``partial_ratio`` (0-100) of the evidence within the feedback text, both sanitised
    (``cleaned``: they already are); ``lenient``: both also lowercased with punctuation to spaces
    (``default_process``)."""
    from rapidfuzz import fuzz, utils

    if not cleaned:
        evidence, feedback = clean_text(evidence), clean_text(feedback)
    return float(fuzz.partial_ratio(evidence, feedback, processor=utils.default_process if lenient else None))


# ---------------------------------------------------------------- filter 0: sanitising

def candidates_from_rows(rows: list[dict], max_principle_chars: int = 100) -> tuple[list[dict], dict]:
    """Flatten extraction rows into principle candidates, sanitising (filter 0).

    Each candidate: ``cand_id, item_id, record_id, response, annotator, principle, key,
    evidence, fulfillment, fate, reason``. Returns (candidates incl. dropped, counts).
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


# ---------------------------------------------------------------- filters 1-3

def apply_filters(cands: list[dict], texts: dict[str, str], cfg: FilterConfig | None = None) -> dict:
    """Filters 1-3 in order (evidence, helpfulness, Partially) on the candidates that passed filter 0.

    ``texts`` maps a feedback ``item_id`` to its text. Sets ``evidence_score``, ``fails`` (every
    step 1-3 the candidate fails on its own) and ``fate``/``reason`` (the first); returns the count
    of drops per step.
    """
    cfg = cfg or FilterConfig()
    lenient = cfg.evidence_match == "lenient"
    drops = Counter()
    cleaned: dict[str, str] = {}
    for c in cands:
        if c["fate"] is not None:
            continue
        if c["item_id"] not in cleaned:
            cleaned[c["item_id"]] = clean_text(texts.get(c["item_id"], ""))
        c["evidence_score"] = round(evidence_score(c["evidence"], cleaned[c["item_id"]], lenient, cleaned=True), 2)
        fails = {"evidence": not c["evidence_score"] > cfg.evidence_threshold,
                 "helpfulness": is_helpfulness(c["principle"]), "partially": c["fulfillment"] == "Partially"}
        c["fails"] = [step for step in FILTER_STEPS if fails[step]]
        if c["fails"]:
            step = c["fails"][0]
            c.update(fate=step, reason="evidence_not_found" if step == "evidence" else step)
            drops[step] += 1
    return {step: drops.get(step, 0) for step in FILTER_STEPS}
