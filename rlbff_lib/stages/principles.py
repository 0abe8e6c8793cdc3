"""The ``principles`` stage: feedback -> principles -> filters -> consensus -> items -> datasets (paper §2-§3).

The back-end of ``notebooks/principles.ipynb``: :func:`run_principles` computes, :func:`write_outputs` writes.
The steps live in :mod:`rlbff_lib.principles` (extraction, filters, consensus, datasets, synthetic_eval).

Input is ``data/source/``: ``feedback.jsonl`` (HelpSteer3-Feedback records; principles are extracted from
each feedback text), or ``principle.jsonl`` (the released ``principle`` config; then extraction and filters
are skipped and its items are used directly). ``truth.jsonl`` (the synthetic world's ground truth) is read
ONLY by :func:`rlbff_lib.principles.synthetic_eval.evaluate_synthetic`.

Extraction goes through the LLM code path (``extraction.backend: openai``) or the offline rules lexicon
(``rules``). With ``serve.kind: synthetic`` the stage starts the simulated extraction LLM of
:mod:`rlbff_lib.synthetic.extraction_server` on a free local port for the extraction and stops it after,
so nothing has to be running beforehand. Every answer is cached (``data/cache/extraction.jsonl``).

Then, counted step by step in ``outputs/details/principles.json`` (``funnel``): filters 0-3
(:mod:`~rlbff_lib.principles.filters`), consensus (:mod:`~rlbff_lib.principles.consensus`, also measured
at every threshold of ``consensus.sweep``), the merge into one item per (response, principle meaning) and
the datasets (:mod:`~rlbff_lib.principles.datasets`). In the synthetic world, every step is also scored
against the ground truth (``synthetic``: accuracy entering and leaving each filter, and the pipeline with
one step switched off). ``candidates.jsonl`` lists every extracted principle with its fate.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Literal

from rlbff_lib.core.io import DataError
from rlbff_lib.core.paper import PAPER
from rlbff_lib.core.paper import sweep_items as paper_sweep_items
from rlbff_lib.models.embed import EmbedderConfig
from rlbff_lib.principles.consensus import (ConsensusConfig, Embeddings, apply_consensus, consensus_kept,
                                            consensus_scores, participants_by_response)
from rlbff_lib.principles.datasets import (SPLITS, BenchConfig, MergeConfig, SplitConfig, build_datasets,
                                           Merger, label_balance, merge_candidates, released_items)
from rlbff_lib.principles.extraction import ExtractionConfig
from rlbff_lib.principles.filters import FILTER_STEPS, FilterConfig, apply_filters, candidates_from_rows
from rlbff_lib.principles.synthetic_eval import EvaluationConfig, accuracy, as_items
from rlbff_lib.synthetic.extraction_server import ServeConfig

CURVE = [round(0.05 * i, 2) for i in range(20)]  # 0.0 .. 0.95: the fine threshold grid of the figure


@dataclass
class PrinciplesConfig:
    """The ``principles`` stage.

    source: ``auto`` (the released principle config when ``principle.jsonl`` has records, else
      extraction from ``feedback.jsonl``), ``feedback`` or ``released``.
    extraction: the extractor (:class:`~rlbff_lib.principles.extraction.ExtractionConfig`).
    serve: an extraction server the stage starts itself (:class:`~rlbff_lib.synthetic.extraction_server.ServeConfig`;
      with ``kind: synthetic`` and ``extraction.backend: openai`` it replaces ``extraction.base_url``,
      ``model`` and ``api_key_env``).
    filters, consensus, merge: the filters, consensus and the merge into items. embedder: the sentence
      embedder of consensus and merge (paper: Qwen3-Embedding-8B). split, bench: datasets.
    evaluation: the synthetic world's principle -> property mapping. top_k: principles listed.
    """

    source: Literal["auto", "feedback", "released"] = "auto"
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(backend="openai"))
    serve: ServeConfig = field(default_factory=ServeConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    top_k: int = 20

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k: must be >= 1, got {self.top_k}")

    def preflight(self) -> None:
        """Before any work: an extraction endpoint the stage does not start itself (``serve.kind: none``)
        must be reachable and serve ``extraction.model`` (:meth:`ExtractionConfig.preflight`; seconds).
        A server the stage starts is checked once started, before its first request."""
        if self.serve.kind == "none":
            self.extraction.preflight()


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
    from rlbff_lib.core.io import read_jsonl
    from rlbff_lib.data.sources import read_principle_files
    from rlbff_lib.principles.extraction import read_feedback_jsonl

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


# ---------------------------------------------------------------- extraction

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


@contextmanager
def serving(cfg: PrinciplesConfig) -> Iterator[ExtractionConfig]:
    """Yields the extraction config to use: with the simulated server started (and stopped on exit)
    when ``serve.kind`` is ``synthetic`` and the backend is ``openai``."""
    from rlbff_lib.synthetic.extraction_server import serve_subprocess

    if cfg.serve.kind == "none" or cfg.extraction.backend != "openai":
        yield cfg.extraction
        return
    with serve_subprocess(cfg.serve) as base_url:
        yield replace(cfg.extraction, base_url=base_url, model=cfg.serve.served_model(), api_key_env="")


def feedback_language(text: str) -> str | None:
    """``en``/``es``/``fr``/``de`` by stopwords, ``other`` when mostly non-Latin letters, else None."""
    from rlbff_lib.synthetic.world import lang_id

    letters = [c for c in text if c.isalpha()]
    if letters and sum(not c.isascii() for c in letters) / len(letters) > 0.3:
        return "other" if lang_id(text) in (None, "en") else lang_id(text)
    return lang_id(text)


def extract(feedback: list[dict], cfg: PrinciplesConfig, cache_path, metrics: dict,
            log: Callable[[str], None] = print, progress=None) -> list[dict]:
    """Run the extractor on every feedback text (cached; the server started when ``serve`` says so);
    fail loudly past the failure threshold."""
    from rlbff_lib.principles.extraction import feedback_items, run_extraction

    fitems = feedback_items(feedback)
    start = time.time()
    with serving(cfg) as ecfg:
        if ecfg is not cfg.extraction:
            log(f"extraction: serving the simulated extraction LLM at {ecfg.base_url} ({ecfg.model})")
            ecfg.preflight()  # the started server answers and serves the model
        log(f"extraction ({ecfg.backend}, {ecfg.cache_model}): {len(fitems)} feedback texts")
        rows, summary = run_extraction(fitems, ecfg, cache_path, progress=progress)
    check = check_extraction(rows, ecfg.failure_threshold)
    log(f"extraction: {check['ok']} ok, {check['failed']} failed, {check['skipped']} skipped, "
        f"{summary['cache_hits']} from the cache ({time.time() - start:.0f}s)")
    langs = Counter(feedback_language(t["text"]) for t in fitems if isinstance(t["text"], str) and t["text"].strip())
    metrics["extraction"] = {k: v for k, v in summary.items() if k not in ("elapsed_s", "passed")} | check
    if ecfg is not cfg.extraction:
        metrics["extraction"]["served"] = {"kind": cfg.serve.kind, "model": ecfg.model, **cfg.serve.noise()}
    metrics["feedback"] = {"texts": len(fitems), "non_english": sum(v for k, v in langs.items() if k not in ("en", None)),
                           "languages": {str(k): v for k, v in langs.most_common()}}
    return rows


# ---------------------------------------------------------------- filters, consensus, merge

def filter_and_merge(rows: list[dict], records: dict, cfg: PrinciplesConfig, model, metrics: dict,
                     log: Callable[[str], None] = print) -> tuple[list[dict], list[dict], list[dict], Embeddings, dict]:
    """Filters 0-4 and the merge; returns (all candidates, items, survivors of filters 0-3, the
    embeddings, participants per response)."""
    cands, sanitize = candidates_from_rows(rows, cfg.extraction.max_principle_chars)
    apply_filters(cands, {r["item_id"]: r["text"] for r in rows}, cfg.filters)
    survivors = [c for c in cands if c["fate"] is None]
    log(f"filters: {len(cands)} principles extracted, {len(survivors)} left after evidence, helpfulness, Partially")
    emb = Embeddings([c["principle"] for c in survivors], model, cfg.embedder.batch_size)
    log(f"embedded {len(emb.strings)} distinct principles ({cfg.embedder.name_or_path})")
    participants = participants_by_response(rows)
    edge = consensus_scores(cands, participants, emb, cfg.consensus.min_annotators)
    apply_consensus(cands, cfg.consensus.threshold)
    kept = [c for c in cands if c["fate"] == "kept"]
    items, merge = merge_candidates(kept, records, emb, cfg.merge)
    log(f"consensus > {cfg.consensus.threshold}: {len(kept)} principles kept -> {len(items)} items "
        f"({merge['merged_principles']} principles merged into another by meaning, {merge['label_ties']} label ties)")
    metrics["funnel"] = funnel(cands)
    n = metrics["funnel"]["0_extracted"]["count"]
    metrics["funnel"]["6_items"] = {
        "count": len(items), "label_ties_dropped": merge["label_ties"],
        "share_of_extracted": round(len(items) / n, 4) if n else None,
        "paper_count": PAPER["items_after_consensus"],
        "paper_share_of_extracted": round(PAPER["items_after_consensus"] / PAPER["principles_extracted"], 4),
        "note": "one item per (response, principle meaning), majority label over annotators; paper: ~33k items of "
                "~1.2M principles"}
    metrics["merge"] = merge
    metrics["drops"] = {**{k: sanitize.get(k, 0) for k in ("malformed", "empty_principle", "overlong_principle",
                                                           "duplicate_in_feedback")},
                        "evidence_not_found": sum(c["fate"] == "evidence" for c in cands),
                        "helpfulness": sum(c["fate"] == "helpfulness" for c in cands),
                        "partially": sum(c["fate"] == "partially" for c in cands),
                        "no_consensus": sum(c["reason"] == "no_consensus" for c in cands),
                        "too_few_annotators": sum(c["reason"] == "too_few_annotators" for c in cands),
                        "label_ties": merge["label_ties"]}
    metrics["sanitizing"] = {"unicode_normalized": sanitize.get("unicode_normalized", 0)}
    metrics["filters"] = {"evidence_threshold": cfg.filters.evidence_threshold,
                          "evidence_match": cfg.filters.evidence_match}
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
    metrics["items_per_response"] = items_per_response(items)
    metrics["top_principles"] = {"after_partially": dict(Counter(c["principle"] for c in survivors)
                                                         .most_common(cfg.top_k))}
    return cands, items, survivors, emb, participants


def sweep(survivors: list[dict], thresholds, emb: Embeddings, merge: MergeConfig,
          tidx: dict | None = None, mapping: dict | None = None) -> dict[str, dict]:
    """Per consensus threshold: principles kept, merged items and (synthetic world) accuracy with its 95% Wilson
    ``ci`` (``principle_accuracy`` likewise, ``principle_accuracy_ci``).

    ``survivors`` are the candidates that passed filters 0-3 with their consensus scores, so each
    threshold costs one comparison per principle and one merge.
    """
    out, merger = {}, Merger(survivors, emb, merge)
    for t in thresholds:
        kept = [c for c in survivors if consensus_kept(c, t)]
        its, stats = merger.groups(lambda c: consensus_kept(c, t))
        row = {"principles": len(kept), "items": len(its), "label_ties": stats["label_ties"]}
        if tidx is not None and mapping is not None:
            a, pa = accuracy(its, tidx, mapping), accuracy(as_items(kept), tidx, mapping)
            row |= {"accuracy": a["accuracy"], "ci": a["ci"],
                    "principle_accuracy": pa["accuracy"], "principle_accuracy_ci": pa["ci"]}
        out[f"{t:g}"] = row
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


def run_principles(cfg: PrinciplesConfig, inputs: Inputs, model, cache_path: str | Path | None,
                   log: Callable[[str], None] = print, extraction_progress=None) -> Result:
    """The stage without writing: extraction (or the released items), filters, consensus, merge,
    datasets and, in the synthetic world, the evaluation. ``model``: the sentence embedder
    (unused for the released config)."""
    from rlbff_lib.principles.synthetic_eval import evaluate_synthetic, truth_index

    metrics: dict = {"source": inputs.source}
    records = {r.get("id", i): r for i, r in enumerate(inputs.feedback)}
    rows: list[dict] = []
    cands: list[dict] = []
    mapping: dict = {}
    curve: dict = {}
    emb = None
    if inputs.source == "released":
        items, ties = released_items(inputs.principle)
        log(f"released principle config: {len(inputs.principle)} records -> {len(items)} items")
        metrics["released"] = {"records": len(inputs.principle), "items": len(items), "label_ties": ties,
                               "paper_items": PAPER["released_items"]}
        metrics["labels"] = {"items": label_balance([i["label"] for i in items])}
    else:
        rows = extract(inputs.feedback, cfg, cache_path, metrics, log, extraction_progress)
        cands, items, survivors, emb, participants = filter_and_merge(rows, records, cfg, model, metrics, log)
        tidx = truth_index(inputs.truth) if inputs.truth else None
        if tidx is not None:
            metrics["synthetic"], mapping = evaluate_synthetic(
                cands, items, participants, tidx, emb, model, cfg.evaluation, cfg.consensus, cfg.merge,
                cfg.embedder.batch_size)
        metrics["consensus"]["sweep"] = sweep(survivors, cfg.consensus.sweep, emb, cfg.merge, tidx, mapping or None)
        for t, row in metrics["consensus"]["sweep"].items():
            row["paper_items"] = paper_sweep_items(t)
        curve = sweep(survivors, CURVE, emb, cfg.merge, tidx, mapping or None)
    metrics.setdefault("top_principles", {})["after_consensus"] = top_principles(items, cfg.top_k)
    ds, ds_metrics = build_datasets(items, inputs.feedback, cfg.split, cfg.bench, emb, cfg.merge.threshold)
    metrics.update(ds_metrics)
    return Result(inputs.source, rows, cands, items, ds["splits"], ds["bench"], ds["bench_pairs"], ds["pairs"],
                  mapping, curve, metrics)


def headline_metrics(metrics: dict) -> dict:
    """``metrics/principles.json`` from :func:`run_principles`'s metrics (all of them in
    ``outputs/details/principles.json``): principles extracted, left after the filters and after consensus; items
    and their splits; preference pairs; the extraction's failure share; in the synthetic world the share of items
    whose principle names a true property of the response with the right label, before and after consensus (items
    merged the same way), with 95% Wilson intervals."""
    from rlbff_lib.core.stage import with_ci

    steps = {k.split("_", 1)[1]: v.get("count") for k, v in (metrics.get("funnel") or {}).items()}
    ds, syn = metrics.get("datasets") or {}, metrics.get("synthetic") or {}
    return {"extracted": steps.get("extracted"), "after_filters": steps.get("partially"),
            "after_consensus": steps.get("consensus"),
            "items": ds.get("items", (metrics.get("released") or {}).get("items")),
            "train_items": ds.get("train"), "validation_items": ds.get("validation"),
            "principlebench_items": ds.get("principlebench"), "principlebench_pairs": ds.get("principlebench_pairs"),
            "preference_pairs": (metrics.get("pairs") or {}).get("pairs"),
            "extraction_failure_share": (metrics.get("extraction") or {}).get("failure_share"),
            "accuracy_vs_truth": {
                when: with_ci(syn.get(f"accuracy_{when}"), syn.get(f"accuracy_{when}_ci"), "accuracy")
                for when in ("before_consensus", "after_consensus")}}


def write_outputs(result: Result, folder: str | Path) -> dict[str, int]:
    """Write every dataset file atomically into ``folder``; returns rows per file."""
    from rlbff_lib.core.io import write_jsonl

    folder = Path(folder)
    files = {
        "train.jsonl": result.splits["train"], "validation.jsonl": result.splits["validation"],
        "principlebench.jsonl": result.bench, "principlebench_pairs.jsonl": result.bench_pairs,
        **{f"pairs_{s}.jsonl": result.pairs[s] for s in SPLITS},
        "candidates.jsonl": [{k: c.get(k) for k in ("cand_id", "record_id", "response", "annotator", "principle",
                                                    "fulfillment", "evidence", "evidence_score", "fails", "fate",
                                                    "reason", "consensus_score")} for c in result.cands],
    }
    return {name: write_jsonl(folder / name, rows) for name, rows in files.items()}


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


def items_per_response(items: list[dict]) -> dict:
    """Items per response that has any, and the share of those responses whose items carry both labels."""
    by: dict[tuple, Counter] = {}
    for it in items:
        by.setdefault((it["record_id"], it["response_index"]), Counter())[it["label"]] += 1
    return {**_mean_std([sum(c.values()) for c in by.values()]),
            "mixed_label_share": round(sum(len(c) > 1 for c in by.values()) / len(by), 4) if by else None}


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
    for i, step in enumerate(("valid", *FILTER_STEPS, "consensus"), 1):
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
